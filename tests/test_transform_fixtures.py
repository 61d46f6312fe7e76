"""Tiny hand-made OneRoster snapshots for the transform tests: Parquet files in the schema.py schemas.

Helpers only (no tests here); named test_transform_* to sit with the tests that use them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.datadir import DataDir
from pipeline.oneroster.schema import ENTITIES

SNAPSHOT = "2026-09-15"


def write_snapshot(data_dir: DataDir, snapshot: str = SNAPSHOT, **entities: Sequence[Mapping]) -> None:
    """Write each entity's rows (dicts; missing fields are null) as `<snapshot>/<entity>.parquet`."""
    for name, rows in entities.items():
        schema = ENTITIES[name].schema
        table = pa.Table.from_pylist([{f.name: row.get(f.name) for f in schema} for row in rows], schema=schema)
        path = data_dir.entity_path(snapshot, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)


def read_csv(path: Path | str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"), newline="")))


def org(sourced_id: str, name: str, type_: str = "school", parent: str | None = None, **extra) -> dict:
    return {"sourcedId": sourced_id, "status": "active", "name": name, "type": type_, "parentSourcedId": parent, **extra}


def session(sourced_id: str, title: str, type_: str, start: str, end: str, parent: str | None = None, **extra) -> dict:
    return {
        "sourcedId": sourced_id, "status": "active", "title": title, "type": type_,
        "startDate": dt.date.fromisoformat(start), "endDate": dt.date.fromisoformat(end),
        "parentSourcedId": parent, "schoolYear": start[:4], **extra,
    }


def klass(sourced_id: str, title: str, terms: list[str], course: str = "crs-1", school: str = "sch-1", **extra) -> dict:
    return {
        "sourcedId": sourced_id, "status": "active", "title": title, "classCode": extra.pop("classCode", None),
        "courseSourcedId": course, "schoolSourcedId": school, "termSourcedIds": terms, **extra,
    }


def user(sourced_id: str, role: str, given: str, family: str, **extra) -> dict:
    username = extra.pop("username", f"{given}.{family}".lower())
    return {
        "sourcedId": sourced_id, "status": "active", "enabledUser": True, "role": role, "username": username,
        "givenName": given, "familyName": family, "email": extra.pop("email", f"{username}@example.org"),
        "identifier": extra.pop("identifier", sourced_id.upper()), **extra,
    }


def enrollment(sourced_id: str, user_id: str, class_id: str, role: str, **extra) -> dict:
    return {"sourcedId": sourced_id, "status": "active", "userSourcedId": user_id, "classSourcedId": class_id, "role": role, **extra}


def small_district() -> dict[str, list[dict]]:
    """Two schools, a year with two semesters and a grading period, hostile values, guardians, a
    teacher with no email, a disabled and a deleted user, a class in two terms."""
    return {
        "orgs": [
            org("dist-1", "Springfield District", "district"),
            org("sch-1", "Évergreen High, \"North\"", "school", "dist-1", identifier="EHS"),
            org("sch-2", "O'Brien Middle", "school", "dist-1", identifier="OMS"),
        ],
        "academicSessions": [
            session("sy-2026", "2026-27", "schoolYear", "2026-08-20", "2027-06-10"),
            session("fall-2026", "Fall 2026", "semester", "2026-08-20", "2027-01-15", "sy-2026"),
            session("spring-2027", "Spring 2027", "semester", "2027-01-16", "2027-06-10", "sy-2026"),
            session("q1-2026", "Q1", "gradingPeriod", "2026-08-20", "2026-10-30", "fall-2026"),
        ],
        "courses": [
            {"sourcedId": "crs-1", "status": "active", "title": "Algebra I", "courseCode": "ALG1", "orgSourcedId": "sch-1"},
            {"sourcedId": "crs-2", "status": "active", "title": "History, World", "courseCode": "HIST", "orgSourcedId": "sch-2"},
        ],
        "classes": [
            klass("cls-alg-1", "Algebra I - P1", ["fall-2026"], "crs-1", "sch-1", classCode="ALG1-1"),
            klass("cls-alg-2", "Algebra I - P2", ["fall-2026"], "crs-1", "sch-1", classCode="ALG1-2"),
            klass("cls-hist", 'History "World",\nyear-long', ["fall-2026", "spring-2027"], "crs-2", "sch-2"),
            klass("cls-q1", "=Quarter club", ["q1-2026"], "crs-2", "sch-2"),
            klass("cls-sp", "Spring Elective", ["spring-2027"], "crs-2", "sch-2", status="tobedeleted"),
        ],
        "users": [
            user("u-t1", "teacher", "Zoë", "O'Brien", email=None),
            user("u-t2", "teacher", "Ann", "Smith, Jr."),
            user("u-aide", "aide", "Al", "Aide"),
            user("u-admin", "administrator", "Pat", "Principal"),
            user("u-s1", "student", "=cmd", "Évora", agentSourcedIds=["u-g1"]),
            user("u-s2", "student", "Bo", "Line\nBreak"),
            user("u-s3", "student", "Cy", "Disabled", enabledUser=False),
            user("u-s4", "student", "Di", "Deleted", status="tobedeleted"),
            user("u-g1", "guardian", "Gia", "Évora", agentSourcedIds=["u-s1"]),
            user("u-p1", "parent", "Pa", "Rent", agentSourcedIds=["u-s2"]),
        ],
        "enrollments": [
            enrollment("e1", "u-t1", "cls-alg-1", "teacher"),
            enrollment("e2", "u-s1", "cls-alg-1", "student"),
            enrollment("e3", "u-s2", "cls-alg-1", "student"),
            enrollment("e4", "u-aide", "cls-alg-1", "aide"),
            enrollment("e5", "u-admin", "cls-alg-1", "administrator"),
            enrollment("e6", "u-t2", "cls-hist", "teacher"),
            enrollment("e7", "u-s3", "cls-hist", "student"),
            enrollment("e8", "u-s4", "cls-hist", "student"),
            enrollment("e9", "u-s1", "cls-q1", "student"),
            enrollment("e10", "u-s2", "cls-alg-2", "student", status="tobedeleted"),
            enrollment("e11", "u-s2", "cls-alg-2", "student"),  # re-enrolled: the duplicate stays active
            enrollment("e12", "u-s1", "cls-sp", "student"),
            enrollment("e13", "u-ghost", "cls-alg-2", "student"),  # user rejected by the extract
            enrollment("e14", "u-aide", "cls-alg-2", "teacher"),  # OneRoster 1.1: an aide enrolls as teacher
        ],
    }
