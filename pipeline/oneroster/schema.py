"""The fixed Parquet schema of each extracted OneRoster 1.1 entity.

Column names follow the OneRoster 1.1 CSV binding (`parentSourcedId`, `termSourcedIds`, ...): GUIDRefs
are flattened to the sourcedId they point at, multi-valued fields are list columns, dates are typed.
This module is the contract between the extract step (which writes these files) and the transform
SQL (which reads them). Passwords are never extracted.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TIMESTAMP = pa.timestamp("ms", tz="UTC")
STRINGS = pa.list_(pa.string())

_BASE = [
    pa.field("sourcedId", pa.string(), nullable=False),
    pa.field("status", pa.string()),
    pa.field("dateLastModified", TIMESTAMP),
    # The provider's free-form extension bag, kept verbatim as JSON text.
    pa.field("metadata", pa.string()),
]


def _schema(*fields: pa.Field) -> pa.Schema:
    return pa.schema([*_BASE, *fields])


ORGS = _schema(
    pa.field("name", pa.string()),
    pa.field("type", pa.string()),
    pa.field("identifier", pa.string()),
    pa.field("parentSourcedId", pa.string()),
    pa.field("childSourcedIds", STRINGS),
)

ACADEMIC_SESSIONS = _schema(
    pa.field("title", pa.string()),
    pa.field("type", pa.string()),
    pa.field("startDate", pa.date32()),
    pa.field("endDate", pa.date32()),
    pa.field("parentSourcedId", pa.string()),
    pa.field("childSourcedIds", STRINGS),
    pa.field("schoolYear", pa.string()),
)

COURSES = _schema(
    pa.field("title", pa.string()),
    pa.field("schoolYearSourcedId", pa.string()),
    pa.field("courseCode", pa.string()),
    pa.field("grades", STRINGS),
    pa.field("subjects", STRINGS),
    pa.field("orgSourcedId", pa.string()),
    pa.field("subjectCodes", STRINGS),
)

CLASSES = _schema(
    pa.field("title", pa.string()),
    pa.field("classCode", pa.string()),
    pa.field("classType", pa.string()),
    pa.field("location", pa.string()),
    pa.field("grades", STRINGS),
    pa.field("subjects", STRINGS),
    pa.field("courseSourcedId", pa.string()),
    pa.field("schoolSourcedId", pa.string()),
    pa.field("termSourcedIds", STRINGS),
    pa.field("subjectCodes", STRINGS),
    pa.field("periods", STRINGS),
)

USER_ID = pa.struct([pa.field("type", pa.string()), pa.field("identifier", pa.string())])

USERS = _schema(
    pa.field("username", pa.string()),
    pa.field("userIds", pa.list_(USER_ID)),
    pa.field("enabledUser", pa.bool_()),
    pa.field("givenName", pa.string()),
    pa.field("familyName", pa.string()),
    pa.field("middleName", pa.string()),
    pa.field("role", pa.string()),
    pa.field("identifier", pa.string()),
    pa.field("email", pa.string()),
    pa.field("sms", pa.string()),
    pa.field("phone", pa.string()),
    pa.field("agentSourcedIds", STRINGS),
    pa.field("orgSourcedIds", STRINGS),
    pa.field("grades", STRINGS),
)

ENROLLMENTS = _schema(
    pa.field("userSourcedId", pa.string()),
    pa.field("classSourcedId", pa.string()),
    pa.field("schoolSourcedId", pa.string()),
    pa.field("role", pa.string()),
    pa.field("primary", pa.bool_()),
    pa.field("beginDate", pa.date32()),
    pa.field("endDate", pa.date32()),
)

_RACE_FLAGS = (
    "americanIndianOrAlaskaNative",
    "asian",
    "blackOrAfricanAmerican",
    "nativeHawaiianOrOtherPacificIslander",
    "white",
    "demographicRaceTwoOrMoreRaces",
    "hispanicOrLatinoEthnicity",
)

DEMOGRAPHICS = _schema(
    pa.field("birthDate", pa.date32()),
    pa.field("sex", pa.string()),
    *(pa.field(flag, pa.bool_()) for flag in _RACE_FLAGS),
    pa.field("countryOfBirthCode", pa.string()),
    pa.field("stateOfBirthAbbreviation", pa.string()),
    pa.field("cityOfBirth", pa.string()),
    pa.field("publicSchoolResidenceStatus", pa.string()),
)

# Rejected records: one row per (record, broken rule), whatever the entity.
REJECTS = pa.schema(
    [
        pa.field("entity", pa.string(), nullable=False),
        pa.field("sourcedId", pa.string()),
        pa.field("rule", pa.string(), nullable=False),
        pa.field("field", pa.string()),
        pa.field("message", pa.string(), nullable=False),
        # The offending record as JSON, with personal fields left out.
        pa.field("record", pa.string()),
    ]
)


@dataclass(frozen=True)
class Entity:
    """One OneRoster collection the pipeline extracts."""

    name: str  # asset name and file stem
    path: str  # REST collection path under the base URL
    envelope_keys: tuple[str, ...]  # JSON keys the collection may arrive under, preferred first
    schema: pa.Schema


ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        Entity("orgs", "/orgs", ("orgs", "schools"), ORGS),
        Entity("academicSessions", "/academicSessions", ("academicSessions", "terms"), ACADEMIC_SESSIONS),
        Entity("courses", "/courses", ("courses",), COURSES),
        Entity("classes", "/classes", ("classes",), CLASSES),
        Entity("users", "/users", ("users", "students", "teachers"), USERS),
        Entity("enrollments", "/enrollments", ("enrollments",), ENROLLMENTS),
        Entity("demographics", "/demographics", ("demographics",), DEMOGRAPHICS),
    )
}

# Extracted every night; demographics only when explicitly enabled (sensitive, Canvas does not need it).
DEFAULT_ENTITIES = ("orgs", "academicSessions", "courses", "classes", "users", "enrollments")
