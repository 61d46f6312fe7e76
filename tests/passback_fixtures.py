"""Hand-made Canvas exports and OneRoster snapshots for the passback unit tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.oneroster import schema
from pipeline.passback.export import export_writers
from pipeline.passback.objects import SnapshotPaths

UTC = dt.timezone.utc


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def write_rows(path: Path, rows: list[dict], schema_: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    full = [{name: row.get(name) for name in schema_.names} for row in rows]
    pq.write_table(pa.Table.from_pylist(full, schema=schema_), path)


def write_snapshot(root: Path, *, classes: list[dict], sessions: list[dict], users: list[str]) -> SnapshotPaths:
    paths = SnapshotPaths(root / "classes.parquet", root / "academicSessions.parquet", root / "users.parquet")
    write_rows(paths.classes, [{"status": "active", **c} for c in classes], schema.CLASSES)
    write_rows(paths.academic_sessions, [{"status": "active", **s} for s in sessions], schema.ACADEMIC_SESSIONS)
    write_rows(paths.users, [{"sourcedId": u, "status": "active", "role": "student"} for u in users], schema.USERS)
    return paths


SESSIONS = [
    {"sourcedId": "fall", "title": "Fall", "type": "semester", "startDate": dt.date(2026, 8, 17), "endDate": dt.date(2027, 1, 15), "parentSourcedId": "year"},
    {"sourcedId": "year", "title": "Year", "type": "schoolYear", "startDate": dt.date(2026, 8, 17), "endDate": dt.date(2027, 6, 4)},
    {"sourcedId": "q1", "title": "Quarter 1", "type": "gradingPeriod", "startDate": dt.date(2026, 8, 17), "endDate": dt.date(2026, 10, 23), "parentSourcedId": "fall"},
    {"sourcedId": "q2", "title": "Quarter 2", "type": "gradingPeriod", "startDate": dt.date(2026, 10, 26), "endDate": dt.date(2027, 1, 15), "parentSourcedId": "fall"},
]


def write_export(export_dir: Path, **tables: list[dict]) -> None:
    with export_writers(export_dir) as writers:
        for name, rows in tables.items():
            writers[name].add(rows)


def standard_export(export_dir: Path, **overrides: list[dict]) -> None:
    """One course (SIS id `cls-1`, 1:1 mode) with one section, two students and three assignments."""
    tables = {
        "courses": [{"course_id": 10, "sis_course_id": "cls-1", "name": "Algebra", "gathered_at": ts("2026-09-20T00:00:00")}],
        "sections": [{"course_id": 10, "section_id": 100, "sis_section_id": "cls-1", "name": "Algebra"}],
        "assignment_groups": [
            {"course_id": 10, "group_id": 1, "name": "Homework", "position": 1},
            {"course_id": 10, "group_id": 2, "name": "Tests", "position": 2},
        ],
        "assignments": [
            {"course_id": 10, "assignment_id": 501, "name": "HW 1", "description": "<p>Do <b>it</b></p>", "kind": "assignment",
             "points_possible": 10.0, "grading_type": "points", "due_at": ts("2026-09-10T04:59:00"),
             "created_at": ts("2026-09-01T12:00:00"), "assignment_group_id": 1, "published": True, "post_to_sis": True,
             "only_visible_to_overrides": False},
            {"course_id": 10, "assignment_id": 502, "name": "Unit test", "kind": "quiz", "points_possible": 50.0,
             "grading_type": "points", "due_at": ts("2026-11-02T15:00:00"), "created_at": ts("2026-09-01T12:00:00"),
             "assignment_group_id": 2, "published": True, "post_to_sis": True, "only_visible_to_overrides": False},
            {"course_id": 10, "assignment_id": 503, "name": "Not for SIS", "kind": "discussion", "points_possible": 5.0,
             "grading_type": "points", "due_at": ts("2026-09-12T12:00:00"), "created_at": ts("2026-09-01T12:00:00"),
             "assignment_group_id": 1, "published": True, "post_to_sis": False, "only_visible_to_overrides": False},
        ],
        "enrollments": [
            {"course_id": 10, "section_id": 100, "user_id": 1, "sis_user_id": "stu-1", "current_score": 91.5, "final_score": 40.0},
            {"course_id": 10, "section_id": 100, "user_id": 2, "sis_user_id": "stu-2", "current_score": None, "final_score": 0.0},
        ],
        "submissions": [
            {"course_id": 10, "assignment_id": 501, "user_id": 1, "score": 9.0, "excused": False, "missing": False,
             "workflow_state": "graded", "graded_at": ts("2026-09-11T10:00:00"), "posted_at": ts("2026-09-11T10:00:00")},
            {"course_id": 10, "assignment_id": 501, "user_id": 2, "score": None, "excused": True, "missing": False,
             "workflow_state": "graded", "graded_at": ts("2026-09-11T10:00:00"), "posted_at": ts("2026-09-11T10:00:00")},
            {"course_id": 10, "assignment_id": 502, "user_id": 2, "score": None, "excused": False, "missing": True,
             "workflow_state": "unsubmitted"},
            {"course_id": 10, "assignment_id": 503, "user_id": 1, "score": 5.0, "excused": False, "missing": False,
             "workflow_state": "graded", "graded_at": ts("2026-09-13T10:00:00"), "posted_at": ts("2026-09-13T10:00:00")},
        ],
    }
    tables.update(overrides)
    write_export(export_dir, **tables)


def standard_snapshot(root: Path) -> SnapshotPaths:
    return write_snapshot(
        root,
        classes=[{"sourcedId": "cls-1", "termSourcedIds": ["fall"]}, {"sourcedId": "cls-2", "termSourcedIds": ["year"]}],
        sessions=SESSIONS,
        users=["stu-1", "stu-2"],
    )


def demo_snapshot(root: Path, store) -> SnapshotPaths:
    """The demo provider's classes, sessions and students as a OneRoster snapshot."""
    from pipeline.demo.source import Selection, ref_id

    classes = [{"sourcedId": c["sourcedId"], "termSourcedIds": [t["sourcedId"] for t in c.get("terms", [])]}
               for c in store.iter_all(Selection("classes"))]
    sessions = [{"sourcedId": s["sourcedId"], "title": s["title"], "type": s["type"],
                 "startDate": dt.date.fromisoformat(s["startDate"]), "endDate": dt.date.fromisoformat(s["endDate"]),
                 "parentSourcedId": ref_id(s, "parent")} for s in store.iter_all(Selection("academicSessions"))]
    users = [u["sourcedId"] for u in store.iter_all(Selection("users")) if u.get("role") == "student"]
    return write_snapshot(root, classes=classes, sessions=sessions, users=users)


def demo_class_students(store, class_id: str) -> list[str]:
    from pipeline.demo.source import ref_id

    return sorted(ref_id(e, "user") for e in store.class_enrollments(class_id)
                  if e.get("role") == "student" and e.get("status") == "active")


def class_export(export_dir: Path, class_id: str, students: list[str], *, assignments: int = 2,
                 score=lambda assignment, student: 7.0, course_id: int = 10) -> None:
    """A 1:1 course for `class_id`: `assignments` posted assignments, every student graded."""
    graded = ts("2026-09-15T12:00:00")
    write_export(
        export_dir,
        courses=[{"course_id": course_id, "sis_course_id": class_id, "gathered_at": ts("2026-09-20T00:00:00")}],
        sections=[{"course_id": course_id, "section_id": course_id * 10, "sis_section_id": class_id}],
        assignment_groups=[{"course_id": course_id, "group_id": 1, "name": "Homework", "position": 1}],
        assignments=[
            {"course_id": course_id, "assignment_id": 500 + a, "name": f"HW {a}", "kind": "assignment",
             "points_possible": 10.0, "grading_type": "points", "due_at": ts("2026-09-10T12:00:00"),
             "assignment_group_id": 1, "published": True, "post_to_sis": True, "only_visible_to_overrides": False}
            for a in range(assignments)
        ],
        enrollments=[{"course_id": course_id, "section_id": course_id * 10, "user_id": i + 1, "sis_user_id": s,
                      "current_score": 70.0, "final_score": 70.0} for i, s in enumerate(students)],
        submissions=[
            {"course_id": course_id, "assignment_id": 500 + a, "user_id": i + 1, "score": score(a, s),
             "excused": False, "missing": False, "workflow_state": "graded", "graded_at": graded, "posted_at": graded}
            for a in range(assignments) for i, s in enumerate(students)
        ],
    )
