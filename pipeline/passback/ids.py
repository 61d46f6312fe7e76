"""Deterministic, consumer-allocated sourcedIds for the gradebook objects this pipeline writes.

OneRoster 1.1 has no POST: the consumer chooses each object's sourcedId and PUTs it. Deriving the id
from stable facts (UUIDv5 over a namespace and the Canvas/SIS ids) makes every PUT idempotent: a rerun,
a crash half-way or a second machine writes the same ids, so the SIS never holds a duplicate.

`assets/sql/passback_macros.sql` computes the same ids in DuckDB (`passback_uuid5`); the tests keep
the two in step.
"""

from __future__ import annotations

import re
import uuid

# Fixed forever: changing it would re-key every object already written to a SIS.
PASSBACK_ROOT = uuid.UUID("6f2b7a4e-8d0c-5e1a-9b3f-2c4d5e6f7a8b")
_SPACES = re.compile(r"[ \t\n\r\f\v]+")


def namespace(district_namespace: str) -> uuid.UUID:
    """The UUIDv5 namespace of one deployment (`PASSBACK_ID_NAMESPACE`)."""
    if not district_namespace.strip():
        raise ValueError("PASSBACK_ID_NAMESPACE must not be empty")
    return uuid.uuid5(PASSBACK_ROOT, district_namespace.strip())


def title_key(title: str) -> str:
    """Titles compared case- and spacing-insensitively (as `passback_title_key` in SQL)."""
    return _SPACES.sub(" ", title).strip(" ").lower()


def category_key(title: str) -> str:
    """Categories are global in OneRoster 1.1, so one category per distinct (normalised) title."""
    return "category:" + title_key(title)


def line_item_key(class_sourced_id: str, canvas_assignment_id: int | str) -> str:
    return f"lineItem:{class_sourced_id}:{canvas_assignment_id}"


def course_grade_key(class_sourced_id: str, grading_period_sourced_id: str) -> str:
    return f"courseGrade:{class_sourced_id}:{grading_period_sourced_id}"


def result_key(line_item_sourced_id: str, student_sourced_id: str) -> str:
    return f"result:{line_item_sourced_id}:{student_sourced_id}"


def sourced_id(ns: uuid.UUID, key: str) -> str:
    return str(uuid.uuid5(ns, key))
