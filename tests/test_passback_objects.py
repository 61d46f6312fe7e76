"""Grade passback, pure parts: ids, the OneRoster objects SQL, request bodies, scoreStatus mapping."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pyarrow as pa
import pytest

from pipeline.passback import ids
from pipeline.passback.config import PassbackSettings
from pipeline.passback.export import assignment_kind, is_sendable, teacher_comment
from pipeline.passback.objects import bind_inputs, build_objects, connect
from pipeline.passback.writer import LINE_ITEM, RESULT, Item, request_body
from tests.passback_fixtures import standard_export, standard_snapshot, ts

AS_OF = dt.date(2026, 9, 20)


def build(tmp_path, settings=None, as_of=AS_OF, sis_categories=None, **export_overrides):
    standard_export(tmp_path / "export", **export_overrides)
    snapshot = standard_snapshot(tmp_path / "snapshot")
    conn = connect()
    bind_inputs(conn, tmp_path / "export", snapshot, settings or PassbackSettings(), as_of, sis_categories)
    build_objects(conn)
    return conn


def rows(conn, sql):
    cursor = conn.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r)) for r in cursor.fetchall()]


def payloads(conn, table):
    return {r["sourced_id"]: json.loads(r["payload"]) for r in rows(conn, f"SELECT sourced_id, payload::VARCHAR AS payload FROM {table}")}


def test_sql_uuid5_matches_python():
    conn = connect()
    ns = ids.namespace("district-x")
    for key in ("lineItem:cls-1:501", "result:abc:stu-ü", "category:homework"):
        assert conn.execute("SELECT passback_uuid5(?, ?)", [ns.hex, key]).fetchone()[0] == str(uuid.uuid5(ns, key))
    assert conn.execute("SELECT passback_title_key(?)", ["  Home \t Work "]).fetchone()[0] == ids.title_key("  Home \t Work ")
    assert ids.namespace("a") != ids.namespace("b")
    with pytest.raises(ValueError, match="PASSBACK_ID_NAMESPACE"):
        ids.namespace(" ")


def test_line_items_are_the_sis_assignments_with_their_grading_period(tmp_path):
    conn = build(tmp_path)
    settings = PassbackSettings()
    ns = ids.namespace(settings.id_namespace)
    items = payloads(conn, "line_items")
    hw = items[ids.sourced_id(ns, ids.line_item_key("cls-1", 501))]
    test = items[ids.sourced_id(ns, ids.line_item_key("cls-1", 502))]
    course = items[ids.sourced_id(ns, ids.course_grade_key("cls-1", "q1"))]
    assert len(items) == 3  # the assignment not marked "Sync to SIS" is absent
    assert hw["title"] == "HW 1" and hw["description"] == "Do  it"
    assert hw["dueDate"] == "2026-09-10T04:59:00.000Z" and hw["assignDate"] == "2026-09-01T12:00:00.000Z"
    assert hw["gradingPeriod"] == {"sourcedId": "q1", "type": "academicSession"}
    assert hw["class"] == {"sourcedId": "cls-1", "type": "class"}
    assert hw["resultValueMin"] == 0 and hw["resultValueMax"] == 10
    assert hw["category"]["sourcedId"] == ids.sourced_id(ns, ids.category_key("Homework"))
    assert test["gradingPeriod"]["sourcedId"] == "q2"
    assert course["title"] == "Course Grade (Quarter 1)" and course["resultValueMax"] == 100
    cats = payloads(conn, "categories")
    assert sorted(c["title"] for c in cats.values()) == ["Course Grade", "Homework", "Tests"]


def test_score_status_mapping(tmp_path):
    conn = build(tmp_path)
    by_student_item = {
        (r["student_id"], r["line_item_id"]): r
        for r in rows(conn, "SELECT student_id, line_item_id, score_status, score, score_date FROM results")
    }
    ns = ids.namespace("rosterbridge")
    hw = ids.sourced_id(ns, ids.line_item_key("cls-1", 501))
    test = ids.sourced_id(ns, ids.line_item_key("cls-1", 502))
    course = ids.sourced_id(ns, ids.course_grade_key("cls-1", "q1"))
    assert by_student_item[("stu-1", hw)]["score_status"] == "fully graded"
    assert by_student_item[("stu-1", hw)]["score"] == 9.0
    assert by_student_item[("stu-2", hw)]["score_status"] == "exempt"
    assert by_student_item[("stu-2", test)]["score_status"] == "not submitted"
    assert by_student_item[("stu-1", course)]["score"] == 91.5  # current score by default
    assert ("stu-2", course) not in by_student_item  # no current score yet: nothing to send
    assert len(by_student_item) == 4
    result_ids = {r["sourced_id"] for r in rows(conn, "SELECT sourced_id FROM results")}
    assert ids.sourced_id(ns, ids.result_key(hw, "stu-1")) in result_ids


def test_settings_change_what_is_sent(tmp_path):
    settings = PassbackSettings(missing="skip", course_score="final", timezone="America/Chicago", course_grades=True)
    conn = build(tmp_path, settings)
    statuses = sorted(r["score_status"] for r in rows(conn, "SELECT score_status FROM results"))
    assert "not submitted" not in statuses
    finals = sorted(r["score"] for r in rows(conn, "SELECT score FROM course_grade_results"))
    assert finals == [0.0, 40.0]
    # 2026-09-10T04:59Z is still 9 September in Chicago: the local day decides the scoreDate and period.
    dates = {r["score_date"] for r in rows(conn, "SELECT score_date FROM assignment_results")}
    assert dates == {dt.date(2026, 9, 11)}


def test_undated_items_and_overrides(tmp_path):
    assignments = [
        {"course_id": 10, "assignment_id": 601, "name": "Undated", "kind": "assignment", "points_possible": 1.0,
         "grading_type": "points", "created_at": ts("2026-09-01T00:00:00"), "assignment_group_id": 1,
         "published": True, "post_to_sis": True, "only_visible_to_overrides": False},
        {"course_id": 10, "assignment_id": 602, "name": "Only section B", "kind": "assignment", "points_possible": 1.0,
         "grading_type": "points", "due_at": ts("2026-09-05T00:00:00"), "assignment_group_id": 1,
         "published": True, "post_to_sis": True, "only_visible_to_overrides": True},
        {"course_id": 10, "assignment_id": 603, "name": "Unpublished", "kind": "assignment", "points_possible": 1.0,
         "grading_type": "points", "due_at": ts("2026-09-05T00:00:00"), "assignment_group_id": 1,
         "published": False, "post_to_sis": True, "only_visible_to_overrides": False},
        {"course_id": 10, "assignment_id": 604, "name": "No points", "kind": "assignment", "points_possible": None,
         "grading_type": "points", "due_at": ts("2026-09-05T00:00:00"), "assignment_group_id": 1,
         "published": True, "post_to_sis": True, "only_visible_to_overrides": False},
    ]
    sections = [  # course mapping mode: one Canvas course, sections carry the class sourcedIds
        {"course_id": 10, "section_id": 100, "sis_section_id": "cls-1"},
        {"course_id": 10, "section_id": 200, "sis_section_id": "cls-2"},
        {"course_id": 10, "section_id": 300, "sis_section_id": None},
    ]
    overrides = [{"course_id": 10, "assignment_id": 602, "section_id": 200, "due_at": ts("2026-12-01T00:00:00")}]
    courses = [{"course_id": 10, "sis_course_id": "course-alg::fall", "gathered_at": ts("2026-09-20T00:00:00")}]
    conn = build(tmp_path, PassbackSettings(course_grades=False), assignments=assignments, sections=sections,
                 overrides=overrides, courses=courses, submissions=[])
    items = rows(conn, "SELECT assignment_id, class_sourced_id, period_id, payload::VARCHAR AS p FROM line_items ORDER BY ALL")
    assert [(i["assignment_id"], i["class_sourced_id"], i["period_id"]) for i in items] == [
        (601, "cls-1", "q2"), (601, "cls-2", "q2"), (602, "cls-2", "q2"),
    ]
    assert json.loads(items[2]["p"])["dueDate"] == "2026-12-01T00:00:00.000Z"
    assert json.loads(items[0]["p"])["dueDate"] == "2027-01-15T23:59:59.000Z"  # end of the last period
    skipped = rows(conn, "SELECT kind, reason FROM skipped")
    assert {"kind": "section", "reason": "section is not a OneRoster class (not provisioned from the SIS): its grades are not sent"} in skipped
    assert {"kind": "assignment", "reason": "assignment marked Sync to SIS has no points possible (the SIS needs resultValueMax)"} in skipped

    conn = build(tmp_path, PassbackSettings(course_grades=False, undated_items="skip"), assignments=assignments,
                 sections=sections, overrides=overrides, courses=courses, submissions=[])
    assert {r["assignment_id"] for r in rows(conn, "SELECT assignment_id FROM line_items")} == {602}
    assert any("no due date" in r["reason"] for r in rows(conn, "SELECT reason FROM skipped"))


def test_match_mode_uses_sis_categories_or_the_fallback(tmp_path):
    sis = pa.table({"sourcedId": ["cat-hw"], "title": ["HOMEWORK"]})
    conn = build(tmp_path, PassbackSettings(category_mode="match", course_grades=False), sis_categories=sis)
    assert rows(conn, "SELECT count(*) AS n FROM categories") == [{"n": 0}]
    cats = {r["assignment_id"]: r["category_id"] for r in rows(conn, "SELECT assignment_id, category_id FROM line_items")}
    assert cats == {501: "cat-hw"}
    assert any("no SIS category titled Tests" in r["reason"] for r in rows(conn, "SELECT reason FROM skipped"))

    conn = build(tmp_path, PassbackSettings(category_mode="match", fallback_category="cat-other", course_grades=False),
                 sis_categories=sis)
    cats = {r["assignment_id"]: r["category_id"] for r in rows(conn, "SELECT assignment_id, category_id FROM line_items")}
    assert cats == {501: "cat-hw", 502: "cat-other"}


def test_request_body_has_full_guidrefs_and_no_nulls():
    payload = json.dumps({"sourcedId": "li", "status": "active", "title": "T", "description": None,
                          "class": {"sourcedId": "cls-1", "type": "class"}})
    body = request_body(Item(LINE_ITEM, "li", payload, "h"), "https://sis/ims/oneroster/v1p1", "2026-09-01T00:00:00.000Z")
    assert body == {"lineItem": {
        "sourcedId": "li", "status": "active", "title": "T",
        "class": {"href": "https://sis/ims/oneroster/v1p1/classes/cls-1", "sourcedId": "cls-1", "type": "class"},
        "dateLastModified": "2026-09-01T00:00:00.000Z",
    }}
    body = request_body(Item(RESULT, "r", json.dumps({"student": {"sourcedId": "u", "type": "user"}}), "h"), "b", "t")
    assert body["result"]["student"]["href"] == "b/users/u"


def test_submission_filters():
    assert is_sendable({"score": 5, "posted_at": "2026-09-01T00:00:00Z"})
    assert not is_sendable({"score": 5, "posted_at": None})  # hidden grade
    assert not is_sendable({"excused": True, "posted_at": None})
    assert is_sendable({"missing": True, "score": None})
    assert not is_sendable({"workflow_state": "submitted", "score": None})
    assert assignment_kind({"submission_types": ["online_quiz"]}) == "quiz"
    assert assignment_kind({"submission_types": ["discussion_topic"]}) == "discussion"
    assert assignment_kind({"submission_types": ["online_upload"]}) == "assignment"


def test_teacher_comments_are_sent_only_when_enabled(tmp_path):
    submissions = [
        {"course_id": 10, "assignment_id": 501, "user_id": 1, "score": 9.0, "workflow_state": "graded",
         "graded_at": ts("2026-09-11T10:00:00"), "posted_at": ts("2026-09-11T10:00:00"), "comment": "Great work"},
    ]
    conn = build(tmp_path, PassbackSettings(course_grades=False), submissions=submissions)
    (payload,) = payloads(conn, "results").values()
    assert payload["comment"] is None  # dropped from the PUT body by request_body
    conn = build(tmp_path, PassbackSettings(course_grades=False, send_comments=True), submissions=submissions)
    (payload,) = payloads(conn, "results").values()
    assert payload["comment"] == "Great work"
    comments = [
        {"author_id": 1, "comment": "student's own note", "created_at": "2026-09-12T00:00:00Z"},
        {"author_id": 7, "comment": " Redo question 3 ", "created_at": "2026-09-11T00:00:00Z"},
        {"author_id": 7, "comment": "  ", "created_at": "2026-09-13T00:00:00Z"},
    ]
    assert teacher_comment({"user_id": 1, "submission_comments": comments}, frozenset({7})) == "Redo question 3"
    assert teacher_comment({"user_id": 1, "submission_comments": comments[:1]}, frozenset({7})) is None


def test_the_hidden_comment_of_an_unposted_missing_submission_is_not_sent(tmp_path):
    """Canvas flags the work missing (sent as 'not submitted'); the teacher's comment on it is not posted."""
    submissions = [
        {"course_id": 10, "assignment_id": 501, "user_id": 1, "score": None, "excused": False, "missing": True,
         "workflow_state": "unsubmitted", "graded_at": None, "posted_at": None, "comment": "Hidden: call your parents"},
        {"course_id": 10, "assignment_id": 502, "user_id": 1, "score": 40.0, "workflow_state": "graded",
         "graded_at": ts("2026-09-11T10:00:00"), "posted_at": ts("2026-09-11T10:00:00"), "comment": "Posted: well done"},
    ]
    conn = build(tmp_path, PassbackSettings(course_grades=False, send_comments=True), submissions=submissions)
    sent = {(p["scoreStatus"], p["comment"]) for p in payloads(conn, "results").values()}
    assert sent == {("not submitted", None), ("fully graded", "Posted: well done")}


@pytest.mark.parametrize("status", ["tobedeleted", "inactive", " Inactive "])
def test_classes_sessions_and_users_gone_from_the_sis_are_not_live(tmp_path, status):
    from tests.passback_fixtures import SESSIONS, write_snapshot

    snapshot = write_snapshot(
        tmp_path / "snapshot",
        classes=[{"sourcedId": "cls-1", "termSourcedIds": ["fall"]},
                 {"sourcedId": "cls-gone", "termSourcedIds": ["fall"], "status": status}],
        sessions=SESSIONS + [{"sourcedId": "old", "title": "Old", "type": "semester", "status": status}],
        users=["stu-1"],
    )
    standard_export(tmp_path / "export")
    conn = connect()
    bind_inputs(conn, tmp_path / "export", snapshot, PassbackSettings(), AS_OF)
    assert [r for (r,) in conn.execute("SELECT sourcedId FROM or_classes").fetchall()] == ["cls-1"]
    assert "old" not in {r for (r,) in conn.execute("SELECT sourcedId FROM or_sessions").fetchall()}
