"""The Canvas gradebook export over real HTTP against the demo Canvas: what is kept, the course
watermark, and a course Canvas fails on not stopping the others."""

from __future__ import annotations

import datetime as dt

import httpx2
import pyarrow.parquet as pq
import pytest

from pipeline.demo.canvas_server import DEMO_CANVAS_TOKEN, CanvasFaultPlan, DemoCanvasServer
from pipeline.passback.export import export_path, gather
from pipeline.resources.canvas import CanvasClient, CanvasError
from tests.test_demo_canvas import imported
from tests.test_demo_canvas_grades import ROSTER


def canvas_client(srv: DemoCanvasServer) -> CanvasClient:
    return CanvasClient(base_url=srv.base_url, access_token=DEMO_CANVAS_TOKEN, max_retries=1,
                        backoff_base_seconds=0.01, backoff_max_seconds=0.02)


@pytest.fixture
def canvas():
    faults = CanvasFaultPlan(server_error_rate=1.0, path_pattern="sis_course_id:C2$")
    with DemoCanvasServer(polls_to_finish=1, faults=faults) as srv:
        with httpx2.Client(base_url=srv.base_url, headers={"Authorization": f"Bearer {DEMO_CANVAS_TOKEN}"}) as client:
            assert imported(client, ROSTER)["workflow_state"] == "imported"
        srv.seed_grades(seed=1)
        yield srv


def read(export_dir, name) -> list[dict]:
    return pq.read_table(export_path(export_dir, name)).to_pylist()


def test_export_keeps_what_may_reach_the_sis_and_reports_failed_courses(tmp_path, canvas):
    with canvas_client(canvas).open() as session:
        counts, problems = gather(session, ["C1", "C2", "NOPE"], tmp_path)
    assert problems[0].startswith("course C2: Canvas") and "503" in problems[0]  # the others went on
    assert problems[1] == "course NOPE is not in Canvas"
    (course,) = read(tmp_path, "courses")
    assert course["sis_course_id"] == "C1" and counts["courses"] == 1

    assignments = read(tmp_path, "assignments")
    assert {a["kind"] for a in assignments} == {"assignment", "discussion", "quiz"}
    assert any(not a["post_to_sis"] for a in assignments) and any(not a["published"] for a in assignments)
    assert {s["sis_section_id"] for s in read(tmp_path, "sections")} == {"SEC1", "SEC2"}
    assert read(tmp_path, "overrides")  # Homework 2 has a section override
    enrollments = read(tmp_path, "enrollments")
    assert len(enrollments) == 20 and any(e["current_score"] is not None for e in enrollments)

    submissions = read(tmp_path, "submissions")
    assert submissions and all(
        s["posted_at"] is not None or (s["missing"] and s["score"] is None and not s["excused"]) for s in submissions
    )
    hidden = canvas.db.query(
        "SELECT MAX(s.graded_at) AS latest FROM submissions s JOIN assignments a ON a.id = s.assignment_id "
        "JOIN courses c ON c.id = a.course_id WHERE c.sis_id = 'C1'")[0]["latest"]
    # The watermark is Canvas's latest graded_at, hidden grades included (they are not in the export).
    assert course["graded_through"] == dt.datetime.fromisoformat(hidden.replace("Z", "+00:00"))
    assert max(s["graded_at"] for s in submissions if s["graded_at"]) <= course["graded_through"]


def test_export_fails_when_canvas_fails_on_every_course(tmp_path, canvas):
    with canvas_client(canvas).open() as session, pytest.raises(CanvasError, match="every requested course"):
        gather(session, ["C2"], tmp_path)
    assert not export_path(tmp_path, "courses").exists()  # no half export left behind


class CommentedCanvas:
    """The demo Canvas session, with submission comments added to the submissions it returns (the demo
    Canvas keeps none): one by the course's teacher, a later one by a classmate, the latest by the student."""

    def __init__(self, session, teacher: int, classmate: int):
        self.session, self.teacher, self.classmate = session, teacher, classmate

    def get(self, path, params=None):
        return self.session.get(path, params)

    def get_paginated(self, path, params=None):
        for item in self.session.get_paginated(path, params):
            if path.endswith("/students/submissions"):
                assert ("include[]", "submission_comments") in params
                item["submission_comments"] = [
                    {"author_id": self.teacher, "comment": "Teacher: see me", "created_at": "2026-09-01T00:00:00Z"},
                    {"author_id": self.classmate, "comment": "Classmate: lol", "created_at": "2026-09-02T00:00:00Z"},
                    {"author_id": item["user_id"], "comment": "Me: done", "created_at": "2026-09-03T00:00:00Z"},
                ]
            yield item


def test_only_a_teacher_or_ta_comment_is_exported(tmp_path, canvas):
    (teacher,) = [r["user_id"] for r in canvas.db.query(
        "SELECT e.user_id FROM enrollments e JOIN courses c ON c.id = e.course_id "
        "WHERE c.sis_id = 'C1' AND e.type = 'TeacherEnrollment'")]
    classmate = canvas.db.query(
        "SELECT MIN(e.user_id) AS u FROM enrollments e JOIN courses c ON c.id = e.course_id "
        "WHERE c.sis_id = 'C1' AND e.type = 'StudentEnrollment'")[0]["u"]
    with canvas_client(canvas).open() as session:
        gather(CommentedCanvas(session, teacher, classmate), ["C1"], tmp_path, comments=True)
    posted = [s for s in read(tmp_path, "submissions") if s["posted_at"] is not None]
    assert posted and {s["comment"] for s in posted} == {"Teacher: see me"}


class GradedDuringExport:
    """The demo Canvas session, its submissions read 5 a page; right after the first one is read, the
    teacher regrades it (the export has already read it) and then grades the course's last submission
    (which the export reads later, so its newer graded_at is seen)."""

    def __init__(self, session, canvas_server, course: str):
        self.session, self.canvas, self.course, self.graded = session, canvas_server, course, False

    def get(self, path, params=None):
        return self.session.get(path, params)

    def get_paginated(self, path, params=None):
        submissions = path.endswith("/students/submissions")
        for item in self.session.get_paginated(path, list(params or []) + ([("per_page", 5)] if submissions else [])):
            yield item
            if submissions and not self.graded:
                self.graded = True
                last = self.canvas.db.query(
                    "SELECT s.assignment_id, u.sis_id FROM submissions s JOIN users u ON u.id = s.user_id "
                    "JOIN assignments a ON a.id = s.assignment_id JOIN courses c ON c.id = a.course_id "
                    "WHERE c.sis_id = ? ORDER BY s.id DESC LIMIT 1", (self.course,))[0]
                first = self.canvas.db.query("SELECT sis_id FROM users WHERE id = ?", (item["user_id"],))[0]
                self.canvas.set_grade(self.course, item["assignment_id"], first["sis_id"], score=1.25)
                self.canvas.set_grade(self.course, last["assignment_id"], last["sis_id"], score=2.5)


def test_a_grade_entered_while_the_export_reads_the_course_counts_as_new(tmp_path, canvas):
    from pipeline.passback_sensor import canvas_graded_since

    with canvas_client(canvas).open() as session:
        export = GradedDuringExport(session, canvas, "C1")
        gather(export, ["C1"], tmp_path)
        assert export.graded
        (course,) = read(tmp_path, "courses")
        assert 1.25 not in {s["score"] for s in read(tmp_path, "submissions")}  # the regrade was missed...
        assert canvas_graded_since(session)("C1", course["graded_through"])  # ...so the sensor requests it again
