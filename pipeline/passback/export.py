"""Gathering Canvas gradebooks into Parquet: the contract between the export and the transform SQL.

Per requested course (by SIS id): its sections, assignment groups, assignments (with section
overrides), student enrollments (with course scores) and submissions. Only what may reach the SIS is
kept: submissions whose grade is posted (hidden grades never leave Canvas), plus ungraded submissions
Canvas flags missing. Rows stream to Parquet in batches; one course is in memory at a time per worker.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import datetime as dt
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.canvas_data_set import DataSet
from pipeline.datadir import atomic_path
from pipeline.resources.canvas import CanvasError

TIMESTAMP = pa.timestamp("ms", tz="UTC")
BATCH_ROWS = 5_000

SCHEMAS: dict[str, pa.Schema] = {
    "courses": pa.schema([
        ("course_id", pa.int64()), ("sis_course_id", pa.string()), ("name", pa.string()),
        ("gathered_at", TIMESTAMP),
        # The latest graded_at among the course's submissions (hidden ones included) when the export began
        # reading it: the course's watermark for the sensor's graded_since (Canvas's clock, so no skew
        # with ours). A grade entered while the export reads the course is after it, so it counts as new.
        ("graded_through", TIMESTAMP),
    ]),
    "sections": pa.schema([
        ("course_id", pa.int64()), ("section_id", pa.int64()), ("sis_section_id", pa.string()), ("name", pa.string()),
    ]),
    "assignment_groups": pa.schema([
        ("course_id", pa.int64()), ("group_id", pa.int64()), ("name", pa.string()), ("position", pa.int32()),
    ]),
    "assignments": pa.schema([
        ("course_id", pa.int64()), ("assignment_id", pa.int64()), ("name", pa.string()), ("description", pa.string()),
        ("kind", pa.string()), ("points_possible", pa.float64()), ("grading_type", pa.string()),
        ("due_at", TIMESTAMP), ("unlock_at", TIMESTAMP), ("created_at", TIMESTAMP),
        ("assignment_group_id", pa.int64()), ("published", pa.bool_()), ("post_to_sis", pa.bool_()),
        ("only_visible_to_overrides", pa.bool_()),
    ]),
    "overrides": pa.schema([
        ("course_id", pa.int64()), ("assignment_id", pa.int64()), ("section_id", pa.int64()), ("due_at", TIMESTAMP),
    ]),
    "enrollments": pa.schema([
        ("course_id", pa.int64()), ("section_id", pa.int64()), ("user_id", pa.int64()), ("sis_user_id", pa.string()),
        ("current_score", pa.float64()), ("final_score", pa.float64()),
    ]),
    "submissions": pa.schema([
        ("course_id", pa.int64()), ("assignment_id", pa.int64()), ("user_id", pa.int64()), ("score", pa.float64()),
        ("excused", pa.bool_()), ("missing", pa.bool_()), ("late", pa.bool_()), ("workflow_state", pa.string()),
        ("graded_at", TIMESTAMP), ("posted_at", TIMESTAMP), ("comment", pa.string()),
    ]),
}


def export_path(export_dir: Path, name: str) -> Path:
    return export_dir / f"{name}.parquet"


class _BatchedWriter:
    def __init__(self, writer: pq.ParquetWriter, schema: pa.Schema):
        self.writer, self.schema, self.rows, self.count = writer, schema, [], 0

    def add(self, rows: list[dict]) -> None:
        self.rows.extend(rows)
        self.count += len(rows)
        if len(self.rows) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []


@contextlib.contextmanager
def export_writers(export_dir: Path) -> Iterator[dict[str, _BatchedWriter]]:
    """One batched Parquet writer per export file; every file appears (atomically) only on success."""
    with contextlib.ExitStack() as stack:
        writers = {}
        for name, schema in SCHEMAS.items():
            tmp = stack.enter_context(atomic_path(export_path(export_dir, name)))
            parquet = pq.ParquetWriter(tmp, schema)
            stack.callback(parquet.close)  # on a failed export too, before its temporary file goes
            writers[name] = _BatchedWriter(parquet, schema)
        yield writers
        for batched in writers.values():
            batched.flush()
            batched.writer.close()


def parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(dt.timezone.utc)


def assignment_kind(assignment: dict) -> str:
    types = assignment.get("submission_types") or []
    if assignment.get("is_quiz_assignment") or assignment.get("quiz_id") or "online_quiz" in types:
        return "quiz"
    if "discussion_topic" in types or assignment.get("discussion_topic"):
        return "discussion"
    return "assignment"


def teacher_comment(submission: dict, graders: frozenset[int]) -> str | None:
    """The latest submission comment (Canvas include[]=submission_comments) written by one of the course's
    `graders` (users with a teacher or TA enrollment): a classmate's comment (peer review, a group
    assignment) is never sent as the teacher's."""
    comments = [c for c in submission.get("submission_comments") or []
                if c.get("author_id") in graders and (c.get("comment") or "").strip()]
    if not comments:
        return None
    return max(comments, key=lambda c: c.get("created_at") or "")["comment"].strip()


def newest_graded_at(canvas, course_path: str, since: dt.datetime | None = None) -> dt.datetime | None:
    """One call: the latest graded_at of the course's submissions (graded after `since`), as Canvas shows
    it (whole seconds). `course_path` is /api/v1/courses/<id or sis_course_id:...>."""
    params = [("student_ids[]", "all"), ("order", "graded_at"), ("order_direction", "descending"), ("per_page", "1")]
    if since is not None:
        params.append(("graded_since", since.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")))
    return max((t for t in (parse_time(s.get("graded_at")) for s in canvas.get(f"{course_path}/students/submissions", params) or [])
                if t is not None), default=None)


def is_sendable(submission: dict) -> bool:
    """Posted grades and excused marks, or an ungraded submission flagged missing (no hidden grade)."""
    graded = submission.get("score") is not None or bool(submission.get("excused"))
    if graded:
        return submission.get("posted_at") is not None
    return bool(submission.get("missing"))


@dataclass
class CourseExport:
    sis_course_id: str
    rows: dict[str, list[dict]] = field(default_factory=lambda: {name: [] for name in SCHEMAS})
    error: str | None = None
    failed: bool = False  # Canvas failed (not merely: the course is gone)


def gather_course(canvas, sis_course_id: str, *, comments: bool = False) -> CourseExport:
    """Everything the transform needs from one Canvas course (identified by its SIS id).

    A course Canvas fails on is reported and left out (it is not marked synced, so a later run takes it
    again); the other courses go on.
    """
    try:
        return _read_course(canvas, sis_course_id, comments)
    except CanvasError as exc:
        export = CourseExport(sis_course_id)
        if exc.status_code == 404:
            export.error = f"course {sis_course_id} is not in Canvas"
        else:
            export.error, export.failed = f"course {sis_course_id}: {exc}", True
        return export


def _read_course(canvas, sis_course_id: str, comments: bool) -> CourseExport:
    export = CourseExport(sis_course_id)
    gathered_at = dt.datetime.now(dt.timezone.utc)
    course = canvas.get(f"/api/v1/courses/sis_course_id:{sis_course_id}")
    cid = int(course["id"])
    base = f"/api/v1/courses/{cid}"
    course_row = {"course_id": cid, "sis_course_id": sis_course_id, "name": course.get("name"),
                  "gathered_at": gathered_at, "graded_through": None}
    export.rows["courses"].append(course_row)
    for s in canvas.get_paginated(f"{base}/sections"):
        export.rows["sections"].append(
            {"course_id": cid, "section_id": int(s["id"]), "sis_section_id": s.get("sis_section_id"), "name": s.get("name")}
        )
    for g in canvas.get_paginated(f"{base}/assignment_groups"):
        export.rows["assignment_groups"].append(
            {"course_id": cid, "group_id": int(g["id"]), "name": g.get("name"), "position": g.get("position")}
        )
    for a in canvas.get_paginated(f"{base}/assignments", [("include[]", "overrides")]):
        aid = int(a["id"])
        export.rows["assignments"].append({
            "course_id": cid, "assignment_id": aid, "name": a.get("name"), "description": a.get("description"),
            "kind": assignment_kind(a), "points_possible": a.get("points_possible"),
            "grading_type": a.get("grading_type") or "points", "due_at": parse_time(a.get("due_at")),
            "unlock_at": parse_time(a.get("unlock_at")), "created_at": parse_time(a.get("created_at")),
            "assignment_group_id": a.get("assignment_group_id"), "published": bool(a.get("published", True)),
            "post_to_sis": bool(a.get("post_to_sis")),
            "only_visible_to_overrides": bool(a.get("only_visible_to_overrides")),
        })
        # Per-student overrides are ignored on purpose: the SIS has one due date per class.
        for o in a.get("overrides") or []:
            if o.get("course_section_id") is not None:
                export.rows["overrides"].append({
                    "course_id": cid, "assignment_id": aid, "section_id": int(o["course_section_id"]),
                    "due_at": parse_time(o.get("due_at")),
                })
    enrollment_params = [("type[]", "StudentEnrollment"), ("state[]", "active"), ("state[]", "completed")]
    for e in canvas.get_paginated(f"{base}/enrollments", enrollment_params):
        grades = e.get("grades") or {}
        export.rows["enrollments"].append({
            "course_id": cid, "section_id": e.get("course_section_id"), "user_id": int(e["user_id"]),
            "sis_user_id": e.get("sis_user_id") or (e.get("user") or {}).get("sis_user_id"),
            "current_score": grades.get("current_score"), "final_score": grades.get("final_score"),
        })
    graders: frozenset[int] = frozenset()
    if comments:
        grader_params = [("type[]", "TeacherEnrollment"), ("type[]", "TaEnrollment"),
                         ("state[]", "active"), ("state[]", "completed"), ("state[]", "inactive")]
        graders = frozenset(int(e["user_id"]) for e in canvas.get_paginated(f"{base}/enrollments", grader_params))
    # Asked before the submissions are read: a grade entered while they are read is after the watermark.
    course_row["graded_through"] = newest_graded_at(canvas, base)
    submission_params = [("student_ids[]", "all")] + ([("include[]", "submission_comments")] if comments else [])
    for s in canvas.get_paginated(f"{base}/students/submissions", submission_params):
        graded_at = parse_time(s.get("graded_at"))
        if not is_sendable(s):
            continue
        export.rows["submissions"].append({
            "course_id": cid, "assignment_id": int(s["assignment_id"]), "user_id": int(s["user_id"]),
            "score": s.get("score"), "excused": bool(s.get("excused")), "missing": bool(s.get("missing")),
            "late": bool(s.get("late")), "workflow_state": s.get("workflow_state"),
            "graded_at": graded_at, "posted_at": parse_time(s.get("posted_at")),
            "comment": teacher_comment(s, graders) if comments and s.get("posted_at") else None,  # hidden until posted
        })
    return export


def _in_order(pool: ThreadPoolExecutor, fn, items: list, window: int) -> Iterator:
    """fn(item) for each item, in order, with at most `window` courses in flight or waiting in memory."""
    pending: collections.deque = collections.deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def gather(canvas, sis_course_ids: list[str], export_dir: Path, *, comments: bool = False,
           concurrency: int = 4) -> tuple[dict[str, int], list[str]]:
    """Export the courses; returns rows per file and the courses that could not be gathered (reasons)."""
    problems: list[str] = []
    failures = 0
    with export_writers(export_dir) as writers, ThreadPoolExecutor(max_workers=concurrency) as pool:
        gather_one = lambda course: gather_course(canvas, course, comments=comments)  # noqa: E731
        for export in _in_order(pool, gather_one, sis_course_ids, concurrency * 2):
            if export.error:
                problems.append(export.error)
                failures += export.failed
                continue
            for name, rows in export.rows.items():
                writers[name].add(rows)
        counts = {name: w.count for name, w in writers.items()}
        if sis_course_ids and failures == len(sis_course_ids):
            raise CanvasError(None, "/api/v1/courses", f"Canvas failed on every requested course; first: {problems[0]}")
    return counts, problems


def provisioned_courses(data_dir, term: str) -> list[str]:
    """SIS ids of the term's Canvas courses in its last successful SIS import (not deleted)."""
    path = DataSet.for_name(data_dir, term).last_imported_path("courses")
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return sorted({row["course_id"] for row in csv.DictReader(handle) if row.get("status") != "deleted"})
