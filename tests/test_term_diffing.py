"""Canvas diffs every term data set against its own last import. A class the SIS moves to another term
keeps its course, section and enrollments (the losing term's diff must not delete what the gaining
term's import has just moved), and an enrollment sent as deleted stays deleted when the SIS stops
sending it (the diff would give it the drop status). Real builds, checks and imports, demo Canvas."""

from __future__ import annotations

import dagster as dg
import pytest

from assets.transform import canvas_district_csvs, canvas_district_import_rules, canvas_term_csvs, canvas_term_import_rules
from assets.upload import sis_import_district, sis_import_term
from pipeline.canvas_data_set import DataSet
from pipeline.demo.canvas_server import DEMO_CANVAS_TOKEN, DemoCanvasServer
from pipeline.partitions import discover_term_keys
from pipeline.resources.canvas import CanvasClient, CanvasUploadPolicy
from pipeline.resources.mapping import MappingSettings
from tests.test_transform_fixtures import enrollment, klass, org, read_csv, session, user, write_snapshot

FILLER = 30  # classes per term besides the moving one: the move stays far below the mass-delete guard


def district(moving_class_terms: list[str]) -> dict[str, list[dict]]:
    terms = {"y": "sy-2026", "f": "fall-2026", "s": "spring-2027"}
    return {
        "orgs": [org("sch-1", "High")],
        "academicSessions": [
            session("sy-2026", "2026-27", "schoolYear", "2026-08-01", "2027-06-10"),
            session("fall-2026", "Fall", "semester", "2026-08-20", "2027-01-15", "sy-2026"),
            session("spring-2027", "Spring", "semester", "2027-01-16", "2027-06-10", "sy-2026"),
        ],
        "courses": [],
        "classes": [klass("cls-a", "Algebra", moving_class_terms, course="crs-alg")]
        + [klass(f"cls-{t}{i}", f"{t}{i}", [term], course=f"crs-{t}{i}") for t, term in terms.items() for i in range(FILLER)],
        "users": [user("u-t", "teacher", "Tea", "Cher"), user("u-s", "student", "Stu", "Dent")],
        "enrollments": [enrollment("e-t", "u-t", "cls-a", "teacher"), enrollment("e-s", "u-s", "cls-a", "student")]
        + [enrollment(f"e-{t}{i}", "u-s", f"cls-{t}{i}", "student") for t in terms for i in range(FILLER)],
    }


def sync_night(data_dir, instance, canvas, mapping: MappingSettings, snapshot: dict, night: str) -> None:
    """The nightly order: the district data set, then every term, earliest first, each built, checked
    and uploaded."""
    write_snapshot(data_dir, night, **snapshot)
    resources = {
        "canvas": CanvasClient(base_url=canvas.base_url, access_token=DEMO_CANVAS_TOKEN, poll_interval_seconds=0.01),
        "canvas_upload": CanvasUploadPolicy(), "mapping": mapping, "data_dir": data_dir,
    }
    assert dg.materialize([canvas_district_csvs, canvas_district_import_rules, sis_import_district],
                          resources=resources, instance=instance).success
    for term in discover_term_keys(data_dir, mapping):
        assert dg.materialize([canvas_term_csvs, canvas_term_import_rules, sis_import_term], partition_key=term.key,
                              resources=resources, instance=instance).success, term.key


@pytest.mark.parametrize("course_mode", ["per_class", "per_course_term"])
def test_a_class_moved_to_the_school_year_stays_alive_in_canvas(data_dir, instance, course_mode):
    mapping = MappingSettings(course_mode=course_mode)
    course_id = {"per_class": "cls-a", "per_course_term": "crs-alg::sy-2026"}[course_mode]
    with DemoCanvasServer(polls_to_finish=1) as canvas:
        sync_night(data_dir, instance, canvas, mapping, district(["fall-2026"]), "2026-09-01")
        # Also scheduled in spring now: the class lives in the school year, whose import runs first.
        for night in ("2026-09-02", "2026-09-03"):
            sync_night(data_dir, instance, canvas, mapping, district(["fall-2026", "spring-2027"]), night)
            [section] = [s for s in canvas.state.sections() if s["sis_id"] == "cls-a"]
            assert (section["workflow_state"], section["course_sis_id"]) == ("active", course_id)
            [course] = [c for c in canvas.state.courses() if c["sis_id"] == course_id]
            assert course["workflow_state"] != "deleted" and course["term_sis_id"] == "sy-2026"
            enrolled = {(e["user_sis_id"], e["workflow_state"]) for e in canvas.state.enrollments()
                        if e["section_sis_id"] == "cls-a"}
            assert enrolled == {("u-t", "active"), ("u-s", "active")}
        # The fall data set keeps listing the class, with its new term, as the school year does.
        moved = [r for r in read_csv(data_dir.canvas_dir("fall-2026") / "courses.csv") if r["course_id"] == course_id]
        assert moved == [r for r in read_csv(data_dir.canvas_dir("sy-2026") / "courses.csv") if r["course_id"] == course_id]
        assert moved[0]["term_id"] == "sy-2026"


def test_an_enrollment_sent_as_deleted_stays_deleted_when_the_sis_stops_sending_it(data_dir, instance):
    mapping = MappingSettings()
    night_1 = district(["fall-2026"])
    night_1["users"].append(user("u-x", "student", "Ex", "Student"))
    night_1["enrollments"].append(enrollment("e-x", "u-x", "cls-f1", "student", status="tobedeleted"))
    night_2 = dict(night_1, enrollments=night_1["enrollments"][:-1])  # the SIS purged it
    tombstone = {"course_id": "cls-f1", "section_id": "cls-f1", "user_id": "u-x", "role": "student", "status": "deleted"}
    with DemoCanvasServer(polls_to_finish=1) as canvas:
        sync_night(data_dir, instance, canvas, mapping, night_1, "2026-09-01")
        for night in ("2026-09-02", "2026-09-03"):
            sync_night(data_dir, instance, canvas, mapping, night_2, night)
            assert tombstone in read_csv(data_dir.canvas_dir("fall-2026") / "enrollments.csv")
            assert [e["workflow_state"] for e in canvas.state.enrollments() if e["user_sis_id"] == "u-x"] == ["deleted"]
        # Once its section is gone too, nothing is left to protect: the row goes.
        night_3 = dict(night_2, classes=[c for c in night_2["classes"] if c["sourcedId"] != "cls-f1"],
                       enrollments=[e for e in night_2["enrollments"] if e["classSourcedId"] != "cls-f1"])
        sync_night(data_dir, instance, canvas, mapping, night_3, "2026-09-04")
        assert not [r for r in read_csv(data_dir.canvas_dir("fall-2026") / "enrollments.csv") if r["user_id"] == "u-x"]


@pytest.mark.parametrize("change", ["new duplicate with a smaller id", "holder suspended"])
def test_a_user_canvas_knows_keeps_their_login_against_a_new_duplicate(data_dir, instance, change):
    mapping = MappingSettings()
    night_1 = district(["fall-2026"])
    night_1["users"] += [user(f"u-f{i:02d}", "student", "F", f"F{i}") for i in range(30)]  # under the guard
    night_1["users"].append(user("u-zz", "student", "Ann", "Smith", username="ann.smith"))
    night_1["enrollments"].append(enrollment("e-zz", "u-zz", "cls-f1", "student"))
    users = night_1["users"] + [user("u-aa", "student", "Ann", "Smith", username="Ann.Smith")]  # a clerk's duplicate
    if change == "holder suspended":
        users = [dict(u, enabledUser=False) if u["sourcedId"] == "u-zz" else u for u in users]
    with DemoCanvasServer(polls_to_finish=1) as canvas:
        sync_night(data_dir, instance, canvas, mapping, night_1, "2026-09-01")
        sync_night(data_dir, instance, canvas, mapping, dict(night_1, users=users), "2026-09-02")
        held = {u["sis_id"]: u["workflow_state"] for u in canvas.state.users() if u["sis_id"] in ("u-zz", "u-aa")}
        assert held == {"u-zz": "suspended" if change == "holder suspended" else "active"}  # u-aa left out, counted
        assert [e["workflow_state"] for e in canvas.state.enrollments() if e["user_sis_id"] == "u-zz"] == ["active"]


def test_a_deleted_enrollment_stays_deleted_when_canvas_did_not_diff_the_import_that_deleted_it(data_dir, instance):
    mapping = MappingSettings()
    night_1 = district(["fall-2026"])
    night_1["users"].append(user("u-x", "student", "Ex", "Student"))
    night_1["enrollments"].append(enrollment("e-x", "u-x", "cls-f1", "student"))
    joining = [enrollment(f"e-n{i}", "u-s", f"cls-f{i}", "teacher") for i in range(20)]  # beyond change_threshold
    deleted = dict(night_1, enrollments=night_1["enrollments"][:-1] + joining
                   + [enrollment("e-x", "u-x", "cls-f1", "student", status="tobedeleted")])
    purged = dict(deleted, enrollments=deleted["enrollments"][:-1])
    tombstone = {"course_id": "cls-f1", "section_id": "cls-f1", "user_id": "u-x", "role": "student", "status": "deleted"}
    with DemoCanvasServer(polls_to_finish=1) as canvas:
        sync_night(data_dir, instance, canvas, mapping, night_1, "2026-09-01")
        sync_night(data_dir, instance, canvas, mapping, deleted, "2026-09-02")
        assert DataSet.for_name(data_dir, "fall-2026").last_threshold_exceeded_import() is not None
        # Canvas still diffs against night 1, where u-x was active: the row must go on saying deleted.
        sync_night(data_dir, instance, canvas, mapping, purged, "2026-09-03")
        assert tombstone in read_csv(data_dir.canvas_dir("fall-2026") / "enrollments.csv")
