"""Public OneRoster 1.1 sample data as a roster source for the demo provider.

Two inputs, read by path and read-only (never copied into the project):
- a OneRoster 1.1 CSV-binding zip (manifest.csv + orgs.csv, users.csv, ...), e.g. Moodle's fixtures;
- the SQLite seed database of Microsoft's OneRoster 1.1 provider sample (`ms_provider_demo_seed.db`).

Rows become OneRoster REST JSON records (GUIDRefs, lists, `userIds` objects) but values are *not*
repaired: an `inactive` status, a `Scheduled` class type, a blank status, a date without a time, an
`enabledUser` of `TRUE` reach the client exactly as the sample has them, so the extract step's record
checks meet realistic bad data. The Microsoft seed is rendered the way Microsoft's provider serialises
it (lineItem dates without time, numbers as strings). Blank optional CSV fields are left out.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sqlite3
import struct
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.demo.source import ENTITIES, Selection, guid_ref, ref_id

_BASE = ("sourcedId", "status", "dateLastModified")


@dataclass(frozen=True)
class _Ref:
    """A GUIDRef whose href is only known when served (it contains the provider's base URL)."""

    entity: str
    sourced_id: str


def _render(value: Any, href_base: str) -> Any:
    if isinstance(value, _Ref):
        return guid_ref(href_base, value.entity, value.sourced_id)
    if isinstance(value, list):
        return [_render(v, href_base) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, href_base) for k, v in value.items()}
    return value


class SampleSource:
    """A small, fully loaded `RosterSource` (see `pipeline.demo.source`)."""

    def __init__(self, records: dict[str, list[dict[str, Any]]], fingerprint: str):
        self._records = {entity: records.get(entity, []) for entity in ENTITIES}
        self._index = {
            entity: {r["sourcedId"]: i for i, r in enumerate(rows)} for entity, rows in self._records.items()
        }
        self.fingerprint = fingerprint

    def count(self, entity: str) -> int:
        return len(self._records.get(entity, ()))

    def record(self, entity: str, index: int, href_base: str) -> dict[str, Any]:
        return _render(self._records[entity][index], href_base)

    def index_of(self, entity: str, sourced_id: str) -> int | None:
        return self._index.get(entity, {}).get(sourced_id)

    def indexes(self, selection: Selection) -> Sequence[int] | None:
        if selection.kinds is None and not selection.refs:
            return range(self.count(selection.entity))
        return None

    def enrollment_indexes_for_class(self, class_id: str) -> Sequence[int]:
        return [i for i, r in enumerate(self._records["enrollments"]) if ref_id(_render(r, ""), "class") == class_id]


def load_samples(path: Path) -> SampleSource:
    """A CSV-binding zip or the Microsoft seed DB (by file extension)."""
    path = Path(path)
    fingerprint = f"samples({path.name}, sha256={hashlib.sha256(path.read_bytes()).hexdigest()[:16]})"
    if path.suffix.lower() == ".zip":
        return SampleSource(_load_csv_zip(path), fingerprint)
    if path.suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        return SampleSource(_load_ms_seed(path), fingerprint)
    raise ValueError(f"{path}: expected a OneRoster CSV .zip or the Microsoft seed .db")


# --- CSV binding --------------------------------------------------------------------------------------
_CSV_FILES = ("orgs", "academicSessions", "courses", "classes", "users", "enrollments", "demographics",
              "categories", "lineItems", "results")
_USER_ID = re.compile(r"\{([^:{}]*):([^{}]*)\}")


def _load_csv_zip(path: Path) -> dict[str, list[dict[str, Any]]]:
    records: dict[str, list[dict[str, Any]]] = {}
    with zipfile.ZipFile(path) as archive:
        names = {Path(n).name: n for n in archive.namelist()}
        for entity in _CSV_FILES:
            member = names.get(f"{entity}.csv")
            if member is None:
                continue
            text = archive.read(member).decode("utf-8-sig")
            rows = list(csv.DictReader(io.StringIO(text)))
            records[entity] = [_CSV_CONVERTERS[entity](row) for row in rows]
    for entity in ("orgs", "academicSessions"):
        _add_children(records.get(entity, []), entity)
    return records


def _base(row: dict[str, str]) -> dict[str, Any]:
    record = {name: row.get(name) or "" for name in _BASE}
    metadata = {k[len("metadata."):]: v for k, v in row.items() if k and k.startswith("metadata.") and v}
    if metadata:
        record["metadata"] = metadata
    return record


def _put(record: dict[str, Any], name: str, value: Any) -> None:
    """Blank optional fields are left out, as a JSON provider would."""
    if value not in (None, "", []):
        record[name] = value


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _ref(entity: str, sourced_id: str | None) -> _Ref | None:
    return _Ref(entity, sourced_id) if sourced_id else None


def _csv_org(row):
    rec = _base(row)
    for name in ("name", "type", "identifier"):
        _put(rec, name, row.get(name))
    _put(rec, "parent", _ref("orgs", row.get("parentSourcedId")))
    return rec


def _csv_session(row):
    rec = _base(row)
    for name in ("title", "type", "startDate", "endDate"):
        _put(rec, name, row.get(name))
    _put(rec, "parent", _ref("academicSessions", row.get("parentSourcedId")))
    _put(rec, "schoolYear", row.get("schoolYear"))
    return rec


def _csv_course(row):
    rec = _base(row)
    _put(rec, "title", row.get("title"))
    _put(rec, "schoolYear", _ref("academicSessions", row.get("schoolYearSourcedId")))
    _put(rec, "courseCode", row.get("courseCode"))
    _put(rec, "grades", _split(row.get("grades")))
    _put(rec, "subjects", _split(row.get("subjects")))
    _put(rec, "org", _ref("orgs", row.get("orgSourcedId")))
    _put(rec, "subjectCodes", _split(row.get("subjectCodes")))
    return rec


def _csv_class(row):
    rec = _base(row)
    for name in ("title", "classCode", "classType", "location"):
        _put(rec, name, row.get(name))
    _put(rec, "grades", _split(row.get("grades")))
    _put(rec, "subjects", _split(row.get("subjects")))
    _put(rec, "course", _ref("courses", row.get("courseSourcedId")))
    _put(rec, "school", _ref("orgs", row.get("schoolSourcedId")))
    _put(rec, "terms", [_Ref("academicSessions", t) for t in _split(row.get("termSourcedIds"))])
    _put(rec, "subjectCodes", _split(row.get("subjectCodes")))
    _put(rec, "periods", _split(row.get("periods")))
    return rec


def _csv_user(row):
    rec = _base(row)
    _put(rec, "username", row.get("username"))
    user_ids = [{"type": t.strip(), "identifier": i.strip()} for t, i in _USER_ID.findall(row.get("userIds") or "")]
    _put(rec, "userIds", user_ids)
    for name in ("enabledUser", "givenName", "familyName", "middleName", "role", "identifier", "email", "sms", "phone"):
        _put(rec, name, row.get(name))
    _put(rec, "agents", [_Ref("users", a) for a in _split(row.get("agentSourcedIds"))])
    _put(rec, "orgs", [_Ref("orgs", o) for o in _split(row.get("orgSourcedIds"))])
    _put(rec, "grades", _split(row.get("grades")))
    _put(rec, "password", row.get("password"))
    return rec


def _csv_enrollment(row):
    rec = _base(row)
    _put(rec, "user", _ref("users", row.get("userSourcedId")))
    _put(rec, "class", _ref("classes", row.get("classSourcedId")))
    _put(rec, "school", _ref("orgs", row.get("schoolSourcedId")))
    for name in ("role", "primary", "beginDate", "endDate"):
        _put(rec, name, row.get(name))
    return rec


def _csv_plain(*names: str, refs: dict[str, tuple[str, str]] | None = None):
    """Converter for files whose columns map one to one (plus `xSourcedId` -> GUIDRef `x`)."""

    def convert(row):
        rec = _base(row)
        for name in names:
            if refs and name in refs:
                entity, column = refs[name]
                _put(rec, name, _ref(entity, row.get(column)))
            else:
                _put(rec, name, row.get(name))
        return rec

    return convert


_CSV_CONVERTERS = {
    "orgs": _csv_org,
    "academicSessions": _csv_session,
    "courses": _csv_course,
    "classes": _csv_class,
    "users": _csv_user,
    "enrollments": _csv_enrollment,
    "demographics": _csv_plain(
        "birthDate", "sex", "americanIndianOrAlaskaNative", "asian", "blackOrAfricanAmerican",
        "nativeHawaiianOrOtherPacificIslander", "white", "demographicRaceTwoOrMoreRaces", "hispanicOrLatinoEthnicity",
        "countryOfBirthCode", "stateOfBirthAbbreviation", "cityOfBirth", "publicSchoolResidenceStatus",
    ),
    "categories": _csv_plain("title"),
    "lineItems": _csv_plain(
        "title", "description", "assignDate", "dueDate", "class", "category", "gradingPeriod", "resultValueMin",
        "resultValueMax",
        refs={"class": ("classes", "classSourcedId"), "category": ("categories", "categorySourcedId"),
              "gradingPeriod": ("academicSessions", "gradingPeriodSourcedId")},
    ),
    "results": _csv_plain(
        "lineItem", "student", "scoreStatus", "score", "scoreDate", "comment",
        refs={"lineItem": ("lineItems", "lineItemSourcedId"), "student": ("users", "studentSourcedId")},
    ),
}


def _add_children(records: list[dict[str, Any]], entity: str) -> None:
    """REST providers list an org's / session's children; the CSV binding only has parents."""
    children: dict[str, list[_Ref]] = defaultdict(list)
    for rec in records:
        parent = rec.get("parent")
        if isinstance(parent, _Ref):
            children[parent.sourced_id].append(_Ref(entity, rec["sourcedId"]))
    for rec in records:
        _put(rec, "children", children.get(rec["sourcedId"], []))


# --- Microsoft OneRosterProviderDemo seed --------------------------------------------------------------
# Enum orders of the sample's Vocabulary.cs (the DB stores the integer).
_STATUS = ("active", "tobedeleted", "inactive")
_SESSION_TYPE = ("gradingPeriod", "semester", "schoolYear", "term")
_ORG_TYPE = ("department", "school", "district", "local", "state", "national")
_ROLE = ("administrator", "aide", "guardian", "parent", "proctor", "relative", "student", "teacher")
_CLASS_TYPE = ("homeroom", "scheduled")
_SCORE_STATUS = ("exempt", "fully graded", "not submitted", "partially graded", "submitted")
_GENDER = ("male", "female")


def _enum(values: tuple[str, ...], number: int | None) -> str | None:
    """The name for a stored enum number; an out-of-range number passes through as text."""
    if number is None:
        return None
    return values[number] if 0 <= number < len(values) else str(number)


def _ms_timestamp(value: str) -> str:
    # "2018-01-11 11:46:22.2863953" -> "2018-01-11T11:46:22.286Z" (milliseconds, as the sample serialises)
    date, _, clock = value.partition(" ")
    whole, _, fraction = clock.partition(".")
    return f"{date}T{whole}.{(fraction + '000')[:3]}Z"


def _ms_date(value: str | None) -> str | None:
    return value.partition(" ")[0] if value else None


def _ms_number(value: float) -> str:
    """The sample writes C# floats with ToString(): shortest single-precision text ("75.4", "100")."""
    single = struct.unpack("f", struct.pack("f", value))[0]
    return f"{single:.7g}"


def _ms_list(value: str | None) -> list:
    return json.loads(value) if value else []


def _load_ms_seed(path: Path) -> dict[str, list[dict[str, Any]]]:
    db = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return _ms_records(db)
    finally:
        db.close()


def _ms_records(db: sqlite3.Connection) -> dict[str, list[dict[str, Any]]]:
    def rows(table: str) -> list[sqlite3.Row]:
        return db.execute(f'SELECT * FROM "{table}" ORDER BY Id').fetchall()

    def base(row: sqlite3.Row) -> dict[str, Any]:
        rec = {"sourcedId": row["Id"], "status": _enum(_STATUS, row["Status"]),
               "dateLastModified": _ms_timestamp(row["UpdatedAt"])}
        if row["Metadata"]:
            rec["metadata"] = json.loads(row["Metadata"])
        return rec

    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows("Orgs"):
        rec = base(row)
        rec.update(name=row["Name"], type=_enum(_ORG_TYPE, row["Type"]))
        _put(rec, "identifier", row["Identifier"])
        _put(rec, "parent", _ref("orgs", row["ParentOrgId"] or row["ParentId"]))
        out["orgs"].append(rec)
    for row in rows("AcademicSessions"):
        rec = base(row)
        rec.update(title=row["Title"], startDate=_ms_date(row["StartDate"]), endDate=_ms_date(row["EndDate"]),
                   type=_enum(_SESSION_TYPE, row["Type"]))
        _put(rec, "parent", _ref("academicSessions", row["ParentAcademicSessionId"]))
        rec["schoolYear"] = row["SchoolYear"]
        out["academicSessions"].append(rec)
    for entity in ("orgs", "academicSessions"):
        _add_children(out[entity], entity)
    for row in rows("Courses"):
        rec = base(row)
        rec["title"] = row["Title"]
        _put(rec, "schoolYear", _ref("academicSessions", row["SchoolYearAcademicSessionId"]))
        _put(rec, "courseCode", row["CourseCode"])
        _put(rec, "grades", _ms_list(row["_grades"]))
        _put(rec, "subjectCodes", _ms_list(row["_subjectCodes"]))
        rec["org"] = _Ref("orgs", row["OrgId"])
        out["courses"].append(rec)
    def links(table: str, owner_column: str, entity: str, target_column: str) -> dict[str, list[_Ref]]:
        """A many-to-many table as {owner id: [GUIDRef, ...]}."""
        found: dict[str, list[_Ref]] = defaultdict(list)
        for row in rows(table):
            found[row[owner_column]].append(_Ref(entity, row[target_column]))
        return found

    class_terms = links("IMSClassAcademicSessions", "IMSClassId", "academicSessions", "AcademicSessionId")
    for row in rows("IMSClasses"):
        rec = base(row)
        rec["title"] = row["Title"]
        _put(rec, "classCode", row["IMSClassCode"])
        rec["classType"] = _enum(_CLASS_TYPE, row["IMSClassType"])
        _put(rec, "location", row["Location"])
        _put(rec, "grades", _ms_list(row["_grades"]))
        rec["course"] = _Ref("courses", row["CourseId"])
        rec["school"] = _Ref("orgs", row["SchoolOrgId"])
        rec["terms"] = class_terms.get(row["Id"], [])
        _put(rec, "subjectCodes", _ms_list(row["_subjectCodes"]))
        _put(rec, "periods", _ms_list(row["_periods"]))
        out["classes"].append(rec)
    agents = links("UserAgents", "SubjectUserId", "users", "AgentUserId")
    orgs = links("UserOrgs", "UserId", "orgs", "OrgId")
    for row in rows("Users"):
        rec = base(row)
        rec["username"] = row["Username"]
        user_ids = [{"type": u.get("Type"), "identifier": u.get("Identifier")} for u in _ms_list(row["_userIds"])]
        _put(rec, "userIds", user_ids)
        rec["enabledUser"] = "true" if row["EnabledUser"] else "false"
        rec.update(givenName=row["GivenName"], familyName=row["FamilyName"])
        _put(rec, "middleName", row["MiddleName"])
        rec["role"] = _enum(_ROLE, row["Role"])
        for name, column in (("identifier", "Identifier"), ("email", "Email"), ("sms", "SMS"), ("phone", "Phone")):
            _put(rec, name, row[column])
        _put(rec, "agents", agents.get(row["Id"], []))
        rec["orgs"] = orgs.get(row["Id"], [])
        _put(rec, "grades", _ms_list(row["_grades"]))
        _put(rec, "password", row["Password"])
        out["users"].append(rec)
    for row in rows("Enrollments"):
        rec = base(row)
        rec.update(user=_Ref("users", row["UserId"]), **{"class": _Ref("classes", row["IMSClassId"])},
                   school=_Ref("orgs", row["SchoolOrgId"]), role=_enum(_ROLE, row["Role"]))
        if row["Primary"] is not None:
            rec["primary"] = "true" if row["Primary"] else "false"
        rec.update(beginDate=_ms_date(row["BeginDate"]), endDate=_ms_date(row["EndDate"]))
        out["enrollments"].append(rec)
    for row in rows("Demographics"):
        rec = base(row)
        _put(rec, "birthDate", _ms_date(row["BirthDate"]))
        _put(rec, "sex", _enum(_GENDER, int(row["Sex"])) if row["Sex"] not in (None, "") else None)
        for name in ("AmericanIndianOrAlaskaNative", "Asian", "BlackOrAfricanAmerican", "NativeHawaiianOrOtherPacificIslander",
                     "White", "DemographicRaceTwoOrMoreRaces", "HispanicOrLatinoEthnicity"):
            if row[name] is not None:
                rec[name[0].lower() + name[1:]] = "true" if row[name] == "1" else "false"
        for name in ("CountryOfBirthCode", "StateOfBirthAbbreviation", "CityOfBirth", "PublicSchoolResidenceStatus"):
            _put(rec, name[0].lower() + name[1:], row[name])
        out["demographics"].append(rec)
    for row in rows("LineItemCategories"):
        rec = base(row)
        rec["title"] = row["Title"]
        out["categories"].append(rec)
    for row in rows("LineItems"):
        rec = base(row)
        rec["title"] = row["Title"]
        _put(rec, "description", row["Description"])
        rec.update(assignDate=_ms_date(row["AssignDate"]), dueDate=_ms_date(row["DueDate"]),
                   **{"class": _Ref("classes", row["IMSClassId"])}, category=_Ref("categories", row["LineItemCategoryId"]),
                   gradingPeriod=_Ref("academicSessions", row["AcademicSessionId"]),
                   resultValueMin=_ms_number(row["ResultValueMin"]), resultValueMax=_ms_number(row["ResultValueMax"]))
        out["lineItems"].append(rec)
    for row in rows("Results"):
        rec = base(row)
        rec.update(lineItem=_Ref("lineItems", row["LineItemId"]), student=_Ref("users", row["StudentUserId"]),
                   scoreStatus=_enum(_SCORE_STATUS, row["ScoreStatus"]), score=_ms_number(row["Score"]),
                   scoreDate=_ms_date(row["ScoreDate"]))
        _put(rec, "comment", row["Comment"])
        out["results"].append(rec)
    return dict(out)
