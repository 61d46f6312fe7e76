"""OneRoster 1.1 query parameters (paging, filter, sort) and the statusInfoSet error envelope."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pipeline.demo.source import ENTITIES

DEFAULT_LIMIT = 100
_BASE_FIELDS = ("sourcedId", "status", "dateLastModified", "metadata")
_RACE = (
    "americanIndianOrAlaskaNative", "asian", "blackOrAfricanAmerican", "nativeHawaiianOrOtherPacificIslander",
    "white", "demographicRaceTwoOrMoreRaces", "hispanicOrLatinoEthnicity",
)
# Top-level fields of each 1.1 REST object: what filter= and sort= may name.
FIELDS: dict[str, frozenset[str]] = {
    entity: frozenset(_BASE_FIELDS + fields)
    for entity, fields in {
        "orgs": ("name", "type", "identifier", "parent", "children"),
        "academicSessions": ("title", "startDate", "endDate", "type", "parent", "children", "schoolYear"),
        "courses": ("title", "schoolYear", "courseCode", "grades", "subjects", "org", "subjectCodes", "resources"),
        "classes": (
            "title", "classCode", "classType", "location", "grades", "subjects", "course", "school", "terms",
            "subjectCodes", "periods", "resources",
        ),
        "users": (
            "username", "userIds", "enabledUser", "givenName", "familyName", "middleName", "role", "identifier",
            "email", "sms", "phone", "agents", "orgs", "grades", "password",
        ),
        "enrollments": ("user", "class", "school", "role", "primary", "beginDate", "endDate"),
        "demographics": ("birthDate", "sex", *_RACE, "countryOfBirthCode", "stateOfBirthAbbreviation", "cityOfBirth",
                         "publicSchoolResidenceStatus"),
        "categories": ("title",),
        "lineItems": ("title", "description", "assignDate", "dueDate", "class", "category", "gradingPeriod",
                      "resultValueMin", "resultValueMax"),
        "results": ("lineItem", "student", "scoreStatus", "score", "scoreDate", "comment"),
    }.items()
}
assert set(FIELDS) == set(ENTITIES)


def status_info(code_major: str, severity: str, code_minor: str, description: str) -> dict[str, Any]:
    return {
        "imsx_codeMajor": code_major,
        "imsx_severity": severity,
        "imsx_messageRefIdentifier": code_minor,
        "imsx_description": description,
        "imsx_CodeMinor": {
            "imsx_codeMinorField": [{"imsx_codeMinorFieldName": "TargetEndSystem", "imsx_codeMinorFieldValue": code_minor}]
        },
    }


@dataclass
class ProviderError(Exception):
    """An HTTP error answer with a statusInfoSet body."""

    status: int
    code_minor: str
    description: str
    headers: dict[str, str] = field(default_factory=dict)
    code_major: str = "failure"

    def body(self) -> dict[str, Any]:
        return {"statusInfoSet": [status_info(self.code_major, "error", self.code_minor, self.description)]}


# --- paging -----------------------------------------------------------------------------------------
def parse_paging(params: dict[str, str]) -> tuple[int, int]:
    """(limit, offset) with the spec's defaults (100, 0); 400 on anything but a valid integer."""
    return _int_param(params, "limit", DEFAULT_LIMIT, 1), _int_param(params, "offset", 0, 0)


def _int_param(params: dict[str, str], name: str, default: int, minimum: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"\d{1,12}", raw) or int(raw) < minimum:
        raise ProviderError(400, "invaliddata", f"{name} must be an integer >= {minimum}, got {raw!r}")
    return int(raw)


# --- filter -----------------------------------------------------------------------------------------
_CLAUSE = r"([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)?)\s*(!=|>=|<=|=|>|<|~)\s*'((?:[^']|'')*)'"
_FILTER = re.compile(rf"^\s*{_CLAUSE}(?:\s+(AND|OR)\s+{_CLAUSE})?\s*$")


@dataclass(frozen=True)
class Clause:
    path: tuple[str, ...]
    op: str
    value: str

    def test(self, record: dict[str, Any]) -> bool:
        actual = record
        for part in self.path:
            actual = _member(actual, part)
        values = actual if isinstance(actual, list) else [actual]
        values = [_member(v, "sourcedId") if isinstance(v, dict) else v for v in values]
        hits = [_compare(v, self.op, self.value) for v in values if v is not None]
        if self.op == "!=":
            return all(hits)
        return any(hits)


def _member(value: Any, name: str) -> Any:
    if isinstance(value, list):
        return [_member(v, name) for v in value]
    return value.get(name) if isinstance(value, dict) else None


def _compare(actual: Any, op: str, expected: str) -> bool:
    if isinstance(actual, bool):
        actual = "true" if actual else "false"
    if isinstance(actual, (int, float)):
        try:
            left, right = float(actual), float(expected)
        except ValueError:
            left, right = str(actual), expected
    else:
        left, right = str(actual), expected
    if op == "~":
        return str(right).lower() in str(left).lower()
    return {
        "=": left == right, "!=": left != right, ">": left > right,
        ">=": left >= right, "<": left < right, "<=": left <= right,
    }[op]


@dataclass(frozen=True)
class Filter:
    """A parsed filter: call it on a record; `fields` are the top-level fields it reads."""

    clauses: tuple[Clause, ...]
    join: str

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(c.path[0] for c in self.clauses)

    def __call__(self, record: dict[str, Any]) -> bool:
        tests = (c.test(record) for c in self.clauses)
        return all(tests) if self.join == "AND" else any(tests)


def parse_filter(expression: str, entity: str) -> Filter:
    """`field op 'value'` with at most one ` AND ` / ` OR `; 400 invalid_filter_field on unknown fields."""
    match = _FILTER.match(expression)
    if not match:
        raise ProviderError(
            400, "invalid_filter_field",
            f"filter {expression!r} is not of the form field<op>'value' [AND|OR field<op>'value'] "
            "with op one of = != > >= < <= ~",
        )
    groups = match.groups()
    clauses = [_clause(groups[0:3], entity)]
    join = groups[3]
    if join:
        clauses.append(_clause(groups[4:7], entity))
    return Filter(tuple(clauses), join or "AND")


def _clause(groups: Iterable[str], entity: str) -> Clause:
    name, op, value = groups
    path = tuple(name.split("."))
    if path[0] not in FIELDS[entity]:
        raise ProviderError(400, "invalid_filter_field", f"{name!r} is not a field of {entity}")
    return Clause(path, op, value.replace("''", "'"))


# --- sort -------------------------------------------------------------------------------------------
def sort_key(entity: str, field_name: str) -> Callable[[dict[str, Any]], tuple] | None:
    """A sort key for `sort=field_name`, or None if the field is unknown (the caller warns)."""
    if field_name not in FIELDS[entity]:
        return None

    def key(record: dict[str, Any]) -> tuple:
        value = record.get(field_name)
        if isinstance(value, dict):
            value = value.get("sourcedId")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (0, value, "")
        return (1, 0, "" if value is None else str(value))

    return key
