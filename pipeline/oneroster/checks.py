"""Record rules for extracted OneRoster entities: which records go to the rejects file, and why.

Two kinds of rules, so that memory stays bounded for millions of enrollments:

* per-record rules (required fields, enum values, and the type/format problems found while
  normalising) are evaluated on each page as it streams in (`record_problems`);
* snapshot rules (duplicate sourcedIds, references to records that do not exist in the same snapshot)
  need the whole entity, so they run afterwards as anti-joins in one in-memory DuckDB over the written
  Parquet (`snapshot_problems`).

A record that breaks any rule is left out of the snapshot; the others flow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Rule names, as they appear in the rejects file's `rule` column.
REQUIRED = "required"
ENUM = "enum"
DATE_FORMAT = "date_format"
BOOLEAN_FORMAT = "boolean_format"
WRONG_TYPE = "wrong_type"
DUPLICATE_SOURCED_ID = "duplicate_sourcedId"
MISSING_REFERENCE = "missing_reference"

STATUSES = ("active", "tobedeleted")
USER_ROLES = ("administrator", "aide", "guardian", "parent", "proctor", "relative", "student", "teacher")

# Columns (schema names) that must hold a value; list columns need at least one element.
_BASE_REQUIRED = ("sourcedId", "status", "dateLastModified")
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "orgs": (*_BASE_REQUIRED, "name", "type"),
    "academicSessions": (*_BASE_REQUIRED, "title", "type", "startDate", "endDate", "schoolYear"),
    "courses": (*_BASE_REQUIRED, "title", "courseCode"),
    "classes": (*_BASE_REQUIRED, "title", "courseSourcedId", "schoolSourcedId", "termSourcedIds"),
    "users": (*_BASE_REQUIRED, "username", "enabledUser", "givenName", "familyName", "role", "orgSourcedIds"),
    "enrollments": (*_BASE_REQUIRED, "userSourcedId", "classSourcedId", "schoolSourcedId", "role"),
    "demographics": _BASE_REQUIRED,
}

# Closed vocabularies, compared case-sensitively as the spec spells them ("Scheduled" is not valid;
# neither is the OneRoster 1.0 status "inactive").
_STATUS = {"status": STATUSES}
ENUM_VALUES: dict[str, dict[str, tuple[str, ...]]] = {
    "orgs": {**_STATUS, "type": ("department", "school", "district", "local", "state", "national")},
    "academicSessions": {**_STATUS, "type": ("gradingPeriod", "semester", "schoolYear", "term")},
    "courses": _STATUS,
    "classes": {**_STATUS, "classType": ("homeroom", "scheduled")},
    "users": {**_STATUS, "role": USER_ROLES},
    "enrollments": {**_STATUS, "role": ("administrator", "proctor", "student", "teacher")},
    "demographics": {**_STATUS, "sex": ("male", "female")},
}

# References that must resolve to a record of another entity in the same snapshot:
# (column, referenced entity). Self-references (org/session parents, children, user agents) are not
# checked: a school whose district is not in the feed, or a student whose guardian is not, still
# belongs in Canvas, and rejecting it would cascade to all of its classes and enrollments.
REFERENCES: dict[str, tuple[tuple[str, str], ...]] = {
    "orgs": (),
    "academicSessions": (),
    "courses": (("orgSourcedId", "orgs"), ("schoolYearSourcedId", "academicSessions")),
    "classes": (("courseSourcedId", "courses"), ("schoolSourcedId", "orgs"), ("termSourcedIds", "academicSessions")),
    "users": (("orgSourcedIds", "orgs"),),
    "enrollments": (("userSourcedId", "users"), ("classSourcedId", "classes"), ("schoolSourcedId", "orgs")),
    "demographics": (),
}

# OneRoster field names that identify or describe a person. They never reach a rejects file, a
# message or Dagster metadata. Demographics are sensitive as a whole.
PERSONAL_FIELDS: dict[str, frozenset[str]] = {
    "users": frozenset(
        {"username", "userIds", "givenName", "familyName", "middleName", "identifier", "email", "sms", "phone", "password"}
    ),
    "demographics": frozenset(
        {
            "birthDate", "sex", "americanIndianOrAlaskaNative", "asian", "blackOrAfricanAmerican",
            "nativeHawaiianOrOtherPacificIslander", "white", "demographicRaceTwoOrMoreRaces",
            "hispanicOrLatinoEthnicity", "countryOfBirthCode", "stateOfBirthAbbreviation", "cityOfBirth",
            "publicSchoolResidenceStatus",
        }
    ),
}

# Schema column → the OneRoster JSON field it comes from, where the two differ (GUIDRefs).
REFERENCE_FIELDS: dict[str, str] = {
    "parentSourcedId": "parent",
    "childSourcedIds": "children",
    "schoolYearSourcedId": "schoolYear",
    "orgSourcedId": "org",
    "courseSourcedId": "course",
    "schoolSourcedId": "school",
    "termSourcedIds": "terms",
    "agentSourcedIds": "agents",
    "orgSourcedIds": "orgs",
    "userSourcedId": "user",
    "classSourcedId": "class",
}


def field_name(entity: str, column: str) -> str:
    """The OneRoster field a data engineer will look for in the provider's JSON."""
    return REFERENCE_FIELDS.get(column, column)


def is_personal(entity: str, field: str) -> bool:
    return field in PERSONAL_FIELDS.get(entity, ())


@dataclass(frozen=True)
class Problem:
    """One broken rule of one record. `row` is the record's position in its page or file."""

    row: int
    rule: str
    field: str
    message: str


def record_problems(entity: str, table: pa.Table, known: Sequence[Problem] = ()) -> list[Problem]:
    """Required-field and enum problems of a normalised page, plus the `known` normalisation ones.

    A field that already failed to normalise (e.g. a malformed date, now null) is not reported a
    second time as missing.
    """
    problems = list(known)
    already = {(p.row, p.field) for p in problems}
    for column in REQUIRED_COLUMNS[entity]:
        values = table.column(column)
        missing = pc.is_null(values)
        if pa.types.is_list(values.type):
            missing = pc.or_kleene(missing, pc.equal(pc.list_value_length(values), 0))
        elif pa.types.is_string(values.type):
            missing = pc.or_kleene(missing, pc.equal(values, ""))
        field = field_name(entity, column)
        for row in _true_rows(missing):
            if (row, field) not in already:
                problems.append(Problem(row, REQUIRED, field, f"{field} is required"))
    for column, allowed in ENUM_VALUES[entity].items():
        values = table.column(column)
        # Blank is "missing", which the required rule reports where it matters.
        invalid = pc.and_kleene(pc.is_valid(values), pc.invert(pc.is_in(values, pa.array(("", *allowed)))))
        field = field_name(entity, column)
        for row in _true_rows(invalid):
            shown = "" if is_personal(entity, field) else f" {values[row].as_py()!r}"
            problems.append(Problem(row, ENUM, field, f"{field}{shown} is not one of {'|'.join(allowed)}"))
    return problems


def _true_rows(mask: pa.ChunkedArray | pa.Array) -> list[int]:
    return pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()


# --- snapshot rules (DuckDB over the written Parquet) ----------------------------------------------

def _sql(name: str) -> str:
    return resources.files("assets").joinpath("sql", name).read_text(encoding="utf-8")


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class SnapshotProblems:
    rejects: pa.RecordBatchReader  # REJECTS rows, streamed; read before the connection closes
    rows_to_drop: np.ndarray  # sorted row numbers of the checked file
    counts: list[tuple[str, str, int]]  # (rule, field, reject rows)


def snapshot_problems(
    conn: duckdb.DuckDBPyConnection,
    entity: str,
    schema: pa.Schema,
    staging: Path,
    referenced: Mapping[str, Path],
) -> SnapshotProblems:
    """Duplicate and dangling-reference problems of a whole written entity file.

    `referenced` maps each entity named in REFERENCES[entity] to its file in the same snapshot.
    Problems are staged in a DuckDB temporary table, which spills to disk when large.
    """
    queries = [_sql("extract_duplicates.sql")]
    params: dict[str, str] = {"staging": str(staging)}
    for i, (column, target) in enumerate(REFERENCES[entity]):
        is_list = pa.types.is_list(schema.field(column).type)
        queries.append(
            _sql("extract_missing_references.sql").format(
                reference=f"unnest({_quoted(column)})" if is_list else _quoted(column),
                field=f"CAST($field_{i} AS VARCHAR)",
                target=f"CAST($target_{i} AS VARCHAR)",
                target_path=f"$target_path_{i}",
            )
        )
        params |= {f"field_{i}": field_name(entity, column), f"target_{i}": target, f"target_path_{i}": str(referenced[target])}
    conn.execute("CREATE OR REPLACE TEMP TABLE problems AS " + "\nUNION ALL\n".join(queries), params)

    rows = conn.execute("SELECT DISTINCT row_number FROM problems ORDER BY row_number").fetchnumpy()["row_number"]
    counts = conn.execute("SELECT rule, field, count(*) FROM problems GROUP BY rule, field ORDER BY rule, field").fetchall()
    kept_columns = [c for c in schema.names if not is_personal(entity, field_name(entity, c))]
    record = "to_json(struct_pack(" + ", ".join(f"{_quoted(c)} := s.{_quoted(c)}" for c in kept_columns) + "))"
    reader = conn.sql(
        _sql("extract_snapshot_rejects.sql").format(record=record),
        params={"entity": entity, "staging": str(staging)},
    ).to_arrow_reader()
    return SnapshotProblems(reader, np.asarray(rows, dtype=np.int64), [(r, f, int(n)) for r, f, n in counts])
