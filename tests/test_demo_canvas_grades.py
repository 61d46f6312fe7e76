"""Demo Canvas grade APIs over real HTTP: seeded gradebooks read back through the assignments, SIS
assignments, enrollments and submissions APIs, incremental reads with graded_since, set_grade."""

from __future__ import annotations

import datetime as dt

import httpx2
import pytest

from pipeline.demo.canvas_server import DEMO_CANVAS_TOKEN, DemoCanvasServer
from tests.test_demo_canvas import imported

NOW = dt.datetime.now(dt.timezone.utc)
TERM_START = (NOW - dt.timedelta(days=100)).strftime("%Y-%m-%dT00:00:00Z")
TERM_END = (NOW + dt.timedelta(days=30)).strftime("%Y-%m-%dT00:00:00Z")
STUDENTS = [f"S{i:02d}" for i in range(1, 21)]
ROSTER = {
    "accounts.csv": "account_id,parent_account_id,name,status\nA1,,District,active\n",
    "terms.csv": f"term_id,name,status,start_date,end_date\nT1,Year,active,{TERM_START},{TERM_END}\n",
    "courses.csv": "course_id,short_name,long_name,account_id,term_id,status\nC1,ALG,Algebra,A1,T1,published\n"
                   "C2,BIO,Biology,A1,T1,active\n",
    "sections.csv": "section_id,course_id,name,status\nSEC1,C1,Algebra period 1,active\nSEC2,C1,Algebra period 2,active\n"
                    "SEC3,C2,Biology,active\n",
    "users.csv": "user_id,login_id,status\nTEACH,teach,active\n" + "".join(f"{s},{s.lower()},active\n" for s in STUDENTS),
    "enrollments.csv": "course_id,section_id,user_id,role,status\nC1,SEC1,TEACH,teacher,active\n"
                       + "".join(f"C1,SEC{1 + i % 2},{s},student,active\nC2,SEC3,{s},student,active\n"
                                 for i, s in enumerate(STUDENTS)),
}


@pytest.fixture
def seeded():
    with DemoCanvasServer(polls_to_finish=1) as srv:
        with httpx2.Client(base_url=srv.base_url, headers={"Authorization": f"Bearer {DEMO_CANVAS_TOKEN}"}) as client:
            assert imported(client, ROSTER)["workflow_state"] == "imported"
            created = srv.seed_grades(seed=1)
            assert created["courses"] == 2 and created["assignments"] == 16
            yield srv, client


def all_pages(client: httpx2.Client, path: str, params: dict | None = None) -> list:
    items, response = [], client.get(path, params={**(params or {}), "per_page": 100})
    while True:
        assert response.status_code == 200, response.text
        items += response.json()
        if "next" not in response.links:
            return items
        response = client.get(response.links["next"]["url"])


def test_assignments_cover_the_kinds_passback_must_handle(seeded):
    _, client = seeded
    assignments = all_pages(client, "/api/v1/courses/sis_course_id:C1/assignments")
    kinds = {tuple(a["submission_types"]) for a in assignments}
    assert {("discussion_topic",), ("online_quiz",), ("online_text_entry",)} <= kinds
    assert any(not a["post_to_sis"] for a in assignments) and any(not a["published"] for a in assignments)
    assert all(TERM_START <= a["due_at"] <= TERM_END for a in assignments)
    groups = all_pages(client, "/api/v1/courses/sis_course_id:C1/assignment_groups", {"include[]": "assignments"})
    assert sum(len(g["assignments"]) for g in groups) == len(assignments)
    assert {g["name"] for g in groups} == {"Assignments", "Quizzes", "Discussions", "Tests"}


def test_sis_assignments_are_published_post_to_sis_only_with_sections(seeded):
    _, client = seeded
    sis = all_pages(client, "/api/sis/courses/sis_course_id:C1/assignments")
    v1 = {a["id"]: a for a in all_pages(client, "/api/v1/courses/sis_course_id:C1/assignments")}
    assert {a["id"] for a in sis} == {i for i, a in v1.items() if a["published"] and a["post_to_sis"]}
    assert all(a["assignment_group"]["name"] and len(a["sections"]) == 2 for a in sis)
    overridden = [s for a in sis for s in a["sections"] if "override" in s]
    assert [s["sis_id"] for s in overridden] == ["SEC1"]
    unpublished = client.get("/api/sis/courses/sis_course_id:C2/assignments")
    assert (unpublished.status_code, unpublished.json()) == (
        400, {"code": "unpublished_course", "error": "Grade data is not available for non-published courses"})


def test_submissions_include_hidden_excused_missing_and_late_grades(seeded):
    _, client = seeded
    flat = all_pages(client, "/api/v1/courses/sis_course_id:C1/students/submissions", {"student_ids[]": "all"})
    graded = [s for s in flat if s["workflow_state"] == "graded"]
    assert graded and any(s["posted_at"] is None for s in graded) and any(s["posted_at"] for s in graded)
    assert any(s["excused"] for s in flat) and any(s["missing"] for s in flat) and any(s["late"] for s in flat)
    published = {a["id"] for a in all_pages(client, "/api/v1/courses/sis_course_id:C1/assignments") if a["published"]}
    assert {s["assignment_id"] for s in flat} == published  # unpublished assignments never show up
    assert len({s["user_id"] for s in flat}) == len(STUDENTS)


def test_grouped_totals_match_the_enrollments_grades(seeded):
    _, client = seeded
    grouped = all_pages(client, "/api/v1/courses/sis_course_id:C1/students/submissions",
                        {"student_ids[]": "all", "grouped": 1, "include[]": "total_scores", "post_to_sis": "true"})
    assert sorted(g["sis_user_id"] for g in grouped) == STUDENTS
    enrollments = all_pages(client, "/api/v1/courses/sis_course_id:C1/enrollments", {"type[]": "StudentEnrollment"})
    grades = {e["sis_user_id"]: e["grades"] for e in enrollments}
    for student in grouped:
        assert student["computed_current_score"] == grades[student["sis_user_id"]]["current_score"]
        assert student["unposted_current_score"] == grades[student["sis_user_id"]]["unposted_current_score"]
    assert all(e["sis_section_id"] in ("SEC1", "SEC2") and e["type"] == "StudentEnrollment" for e in enrollments)


def test_graded_since_returns_only_newer_grades_and_set_grade_bumps_it(seeded):
    server, client = seeded
    path = "/api/v1/courses/sis_course_id:C1/students/submissions"
    flat = all_pages(client, path, {"student_ids[]": "all", "order": "graded_at"})
    cursor = max(s["graded_at"] for s in flat if s["graded_at"])
    assert all_pages(client, path, {"student_ids[]": "all", "graded_since": cursor}) == []
    assignment = next(a for a in all_pages(client, "/api/v1/courses/sis_course_id:C1/assignments")
                      if a["published"] and a["post_to_sis"])
    server.set_grade("C1", assignment["id"], "S03", score=7.5, posted=False)
    changed = all_pages(client, path, {"student_ids[]": "all", "graded_since": cursor, "grouped": 1})
    assert [(g["sis_user_id"], [(s["assignment_id"], s["score"], s["grade"], s["posted_at"]) for s in g["submissions"]])
            for g in changed] == [("S03", [(assignment["id"], 7.5, "7.5", None)])]
    later = changed[0]["submissions"][0]["graded_at"]
    server.set_grade("C1", assignment["id"], "S03", excused=True, posted=True)
    again = all_pages(client, path, {"student_ids[]": "all", "graded_since": later})
    assert [(s["excused"], s["score"], s["posted_at"] is not None) for s in again] == [(True, None, True)]
    assert again[0]["graded_at"] > later


def test_bad_graded_since_is_a_400(seeded):
    _, client = seeded
    response = client.get("/api/v1/courses/sis_course_id:C1/students/submissions",
                          params={"student_ids[]": "all", "graded_since": "yesterday"})
    assert (response.status_code, response.json()) == (400, {"errors": [{"message": "Invalid datetime for graded_since"}]})


def test_seeding_is_deterministic():
    scores = []
    for _ in range(2):
        with DemoCanvasServer(polls_to_finish=0) as srv:
            with httpx2.Client(base_url=srv.base_url, headers={"Authorization": f"Bearer {DEMO_CANVAS_TOKEN}"}) as c:
                imported(c, ROSTER)
                srv.seed_grades(seed=42, courses=["C1"])
                scores.append([(e["sis_user_id"], e["grades"]["unposted_final_score"]) for e in
                               all_pages(c, "/api/v1/courses/sis_course_id:C1/enrollments", {"type[]": "StudentEnrollment"})])
                assert all_pages(c, "/api/v1/courses/sis_course_id:C2/assignments") == []
    assert scores[0] == scores[1]
