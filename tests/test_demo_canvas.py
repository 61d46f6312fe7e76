"""Demo Canvas SIS Imports API over real HTTP: auth, uploads, workflow, row errors, diffing, thresholds,
remaster, batch mode, throttling and faults, pagination, and state shared by two servers."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest

from pipeline.demo.canvas_server import (
    DEMO_CANVAS_TOKEN, CanvasFaultPlan, CanvasThrottle, DemoCanvasServer, embedded_canvas,
)

ROSTER = {
    "accounts.csv": "account_id,parent_account_id,name,status\nA1,,District,active\nA2,A1,High School,active\n",
    "terms.csv": "term_id,name,status,start_date,end_date\nT1,Fall,active,2026-08-01T00:00:00Z,2027-01-31T00:00:00Z\n"
                 "T2,Spring,active,2027-02-01T00:00:00Z,2027-06-30T00:00:00Z\n",
    "courses.csv": "course_id,short_name,long_name,account_id,term_id,status\nC1,ALG,Algebra,A2,T1,published\n"
                   "C2,BIO,Biology,A2,T1,active\nC3,CHEM,Chemistry,A2,T2,published\n",
    "sections.csv": "section_id,course_id,name,status\nS1,C1,Algebra 1,active\nS2,C2,Biology 1,active\n"
                    "S3,C3,Chemistry 1,active\n",
    "users.csv": "user_id,login_id,first_name,last_name,email,status\n"
                 + "".join(f"U{i},u{i},First{i},Last{i},u{i}@example.org,active\n" for i in range(1, 13)),
}


def zipped(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def enrollments(rows: list[str]) -> dict[str, str]:
    return {"enrollments.csv": "course_id,section_id,user_id,role,status\n" + "".join(r + "\n" for r in rows)}


@pytest.fixture
def server():
    with DemoCanvasServer(polls_to_finish=2) as srv:
        yield srv


@pytest.fixture
def client(server):
    with httpx2.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {DEMO_CANVAS_TOKEN}"},
                       timeout=30) as c:
        yield c


def upload(client: httpx2.Client, files: dict[str, str], **params) -> dict:
    response = client.post("/api/v1/accounts/self/sis_imports", params={"import_type": "instructure_csv", **params},
                           files={"attachment": ("import.zip", zipped(files), "application/zip")})
    assert response.status_code == 200, response.text
    return response.json()


def finish(client: httpx2.Client, import_id: int) -> dict:
    for _ in range(10):
        body = client.get(f"/api/v1/accounts/self/sis_imports/{import_id}").json()
        if body["progress"] == 100 or body["workflow_state"].startswith("failed"):
            return body
    raise AssertionError(f"import {import_id} never finished")


def imported(client: httpx2.Client, files: dict[str, str], **params) -> dict:
    return finish(client, upload(client, files, **params)["id"])


def enrollment_states(server: DemoCanvasServer) -> dict[tuple[str, str], str]:
    return {(e["user_sis_id"], e["section_sis_id"]): e["workflow_state"] for e in server.state.enrollments()}


def test_every_request_needs_the_bearer_token(server):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx2.get(f"{server.base_url}/api/v1/accounts/self", headers=headers)
        assert response.status_code == 401
        assert response.json() == {"errors": [{"message": "Invalid access token."}]}
        assert "X-Request-Cost" in response.headers and "X-Rate-Limit-Remaining" in response.headers
    ok = httpx2.get(f"{server.base_url}/api/v1/accounts/self", params={"access_token": DEMO_CANVAS_TOKEN})
    assert ok.status_code == 200 and ok.json()["id"] == 1


def test_workflow_progresses_over_polls_and_counts_rows(client, server):
    created = upload(client, ROSTER)
    assert (created["workflow_state"], created["progress"], created["ended_at"]) == ("created", 0, None)
    polled = client.get(f"/api/v1/accounts/self/sis_imports/{created['id']}").json()
    assert (polled["workflow_state"], polled["progress"]) == ("importing", 50)
    assert server.state.counts()["users"] == {}  # nothing is applied before the import finishes
    done = client.get(f"/api/v1/accounts/1/sis_imports/{created['id']}").json()
    assert (done["workflow_state"], done["progress"]) == ("imported", 100)
    assert done["ended_at"] and "processing_warnings" not in done and "processing_errors" not in done
    assert done["data"]["supplied_batches"] == ["account", "term", "course", "section", "user"]
    counts = done["data"]["counts"]
    assert (counts["accounts"], counts["terms"], counts["courses"], counts["sections"], counts["users"]) == (2, 2, 3, 3, 12)
    assert done["statistics"]["Course"]["created"] == 3
    state = server.state.counts()
    assert state["courses"] == {"available": 2, "claimed": 1}  # active leaves a new course unpublished
    assert state["users"] == {"active": 12}


@pytest.mark.parametrize("how", ["raw_zip", "octet_stream", "text_csv", "chunked_csv"])
def test_raw_uploads(client, server, how):
    if how == "text_csv":
        response = client.post("/api/v1/accounts/self/sis_imports", content=ROSTER["users.csv"].encode(),
                               headers={"Content-Type": "text/csv"})
    elif how == "chunked_csv":  # a streamed body arrives with Transfer-Encoding: chunked
        lines = ROSTER["users.csv"].encode().splitlines(keepends=True)
        response = client.post("/api/v1/accounts/self/sis_imports", content=iter(lines),
                               headers={"Content-Type": "text/csv"})
    else:
        content_type = "application/zip" if how == "raw_zip" else "application/octet-stream"
        params = {"extension": "zip"} if how == "octet_stream" else {}
        response = client.post("/api/v1/accounts/self/sis_imports", content=zipped(ROSTER), params=params,
                               headers={"Content-Type": content_type})
    assert response.status_code == 200
    done = finish(client, response.json()["id"])
    assert done["workflow_state"] == "imported"
    assert done["data"]["counts"]["users"] == 12


def test_row_error_gives_imported_with_messages_and_paged_errors(client, server):
    imported(client, ROSTER)
    done = imported(client, enrollments(["C1,S1,U1,student,active", "C1,S2,U2,student,active",
                                         'C1,S1,U99,"student",active', "C1,S1,U3,boss,active"]))
    assert done["workflow_state"] == "imported_with_messages"
    assert done["data"]["counts"]["enrollments"] == 1
    assert done["processing_warnings"][0] == [
        "enrollments.csv", "An enrollment listed a section (S2) and a course (C1) that are unrelated for user (U2)"]
    first = client.get(f"/api/v1/accounts/self/sis_imports/{done['id']}/errors", params={"per_page": 2})
    assert first.json()["sis_import_errors"][1] == {
        "sis_import_id": done["id"], "file": "enrollments.csv", "row": 4, "row_info": "C1,S1,U99,student,active\n",
        "message": "User not found for enrollment (User ID: U99, Course ID: C1, Section ID: S1)"}
    assert 'rel="next"' in first.headers["Link"]
    second = httpx2.get(first.links["next"]["url"], headers=client.headers)
    assert [e["message"] for e in second.json()["sis_import_errors"]] == ['Improper role "boss" for an enrollment']
    assert 'rel="next"' not in second.headers["Link"]
    assert enrollment_states(server) == {("U1", "S1"): "active"}


def test_broken_file_fails_the_import_and_applies_nothing(client, server):
    done = imported(client, {**ROSTER, "broken.csv": 'course_id,short_name\n"unclosed,x\n'})
    assert done["workflow_state"] == "failed_with_messages"
    assert done["processing_errors"] == [["broken.csv", "Malformed CSV"]]
    assert server.state.counts()["users"] == {}
    failures = client.get(f"/api/v1/accounts/self/sis_imports/{done['id']}/errors", params={"failure": "true"})
    assert [e["message"] for e in failures.json()["sis_import_errors"]] == ["Malformed CSV"]


def test_forced_failure_for_tests(client, server):
    server.fail_next_import("Simulated outage")
    done = imported(client, ROSTER)
    assert (done["workflow_state"], done["processing_errors"]) == ("failed_with_messages", [["", "Simulated outage"]])
    assert imported(client, ROSTER)["workflow_state"] == "imported"  # only the next one fails


@pytest.mark.parametrize(("account", "params", "headers", "expected"), [
    ("self", {"diffing_data_set_identifier": "x", "diffing_drop_status": "gone"}, {},
     {"message": "Invalid diffing_drop_status"}),
    ("2", {}, {}, {"errors": ["SIS imports can only be executed on root accounts"]}),
    ("self", {}, {"Content-Type": "text/csv; charset=ISO-8859-1"}, {"error": "Invalid content type, UTF-8 required"}),
    ("self", {"batch_mode": "true", "batch_mode_term_id": "sis_term_id:T1", "diffing_data_set_identifier": "x"}, {},
     {"message": "batch_mode cannot be combined with diffing_data_set_identifier"}),
    ("self", {"batch_mode": "true", "batch_mode_term_id": "sis_term_id:NOPE"}, {},
     {"message": "Batch mode specified, but the given batch_mode_term_id cannot be found."}),
    ("self", {"change_threshold": "0"}, {}, {"message": "change_threshold must be an integer from 1 to 100"}),
])
def test_create_time_errors(client, account, params, headers, expected):
    imported(client, ROSTER)  # account 2 (A1) exists as a sub-account
    response = client.post(f"/api/v1/accounts/{account}/sis_imports", params=params, content=b"user_id,login_id,status\n",
                           headers={"Content-Type": "text/csv", **headers})
    assert (response.status_code, response.json()) == (400, expected)


def test_diffing_drops_missing_enrollments_and_leaves_other_data_sets_alone(client, server):
    imported(client, ROSTER)
    term1 = imported(client, enrollments(["C1,S1,U1,student,active", "C1,S1,U2,student,active",
                                          "C1,S1,U3,teacher,active"]), diffing_data_set_identifier="term:T1")
    imported(client, enrollments(["C3,S3,U4,student,active"]), diffing_data_set_identifier="term:T2")
    again = imported(client, enrollments(["C1,S1,U1,student,active", "C1,S1,U3,teacher,active"]),
                     diffing_data_set_identifier="term:T1", diffing_drop_status="inactive")
    assert again["diffed_against_import_id"] == term1["id"]
    assert again["diffing_threshold_exceeded"] is False
    assert again["data"]["counts"]["enrollments"] == 1  # unchanged rows are not re-applied; one drop row is
    assert enrollment_states(server) == {("U1", "S1"): "active", ("U2", "S1"): "inactive",
                                         ("U3", "S1"): "active", ("U4", "S3"): "active"}


def test_change_threshold_skips_the_diff_and_five_exceedances_need_a_remaster(client, server):
    imported(client, ROSTER)
    full = [f"C1,S1,U{i},student,active" for i in range(1, 11)]
    imported(client, enrollments(full), diffing_data_set_identifier="term:T1", change_threshold=10)
    for attempt in range(5):
        shrunk = imported(client, enrollments(full[:5]), diffing_data_set_identifier="term:T1", change_threshold=10)
        assert shrunk["workflow_state"] == "imported" and shrunk["diffing_threshold_exceeded"] is True, attempt
    assert set(enrollment_states(server).values()) == {"active"}  # nothing dropped while the threshold holds
    blocked = imported(client, enrollments(full[:5]), diffing_data_set_identifier="term:T1", change_threshold=10)
    assert blocked["workflow_state"] == "failed_with_messages"
    assert "diffing_remaster_data_set" in blocked["processing_errors"][0][1]
    remaster = imported(client, enrollments(full[:5]), diffing_data_set_identifier="term:T1",
                        diffing_remaster_data_set="true", change_threshold=10)
    assert (remaster["workflow_state"], remaster["diffing_remaster"], remaster["diffed_against_import_id"]) == \
        ("imported", True, None)
    assert set(enrollment_states(server).values()) == {"active"}  # a remaster applies in full, drops nothing
    after = imported(client, enrollments(full[:4]), diffing_data_set_identifier="term:T1", change_threshold=30)
    assert after["diffed_against_import_id"] == remaster["id"]
    assert enrollment_states(server)[("U5", "S1")] == "deleted"


def test_batch_mode_removes_what_the_term_import_left_out(client, server):
    imported(client, ROSTER)
    imported(client, enrollments(["C1,S1,U1,student,active", "C2,S2,U2,student,active"]))
    done = imported(client, {"courses.csv": "course_id,short_name,long_name,account_id,term_id,status\n"
                                            "C1,ALG,Algebra,A2,T1,published\n",
                             **enrollments(["C1,S1,U1,student,active"])},
                    batch_mode="true", batch_mode_term_id="sis_term_id:T1", batch_mode_enrollment_drop_status="completed")
    assert done["batch_mode"] is True
    assert (done["data"]["counts"]["batch_courses_deleted"], done["data"]["counts"]["batch_enrollments_deleted"]) == (1, 1)
    courses = {c["sis_id"]: c["workflow_state"] for c in server.state.courses()}
    assert courses == {"C1": "available", "C2": "deleted", "C3": "available"}  # T2 untouched
    assert enrollment_states(server) == {("U1", "S1"): "active", ("U2", "S2"): "completed"}


def test_enrollment_statuses_and_skip_deletes(client, server):
    imported(client, ROSTER)
    imported(client, enrollments(["C1,S1,U1,student,active", "C1,S1,U2,student,active",
                                  "C1,S1,U2,teacher,active"]))
    imported(client, enrollments(["C1,S1,U1,student,deleted"]), skip_deletes="true")
    assert enrollment_states(server)[("U1", "S1")] == "active"
    # deleted_last_completed: the user's last enrollment in the course is completed, others are deleted
    imported(client, enrollments(["C1,S1,U1,student,deleted_last_completed",
                                  "C1,S1,U2,student,deleted_last_completed"]))
    roles = {(e["user_sis_id"], e["role"]): e["workflow_state"] for e in server.state.enrollments()}
    assert roles == {("U1", "StudentEnrollment"): "completed", ("U2", "StudentEnrollment"): "deleted",
                     ("U2", "TeacherEnrollment"): "active"}


def test_observers_are_enrolled_where_their_students_are(client, server):
    imported(client, ROSTER)
    imported(client, {**enrollments(["C1,S1,U1,student,active"]),
                      "user_observers.csv": "observer_id,student_id,status\nU9,U1,active\n"})
    observer = [e for e in server.state.enrollments() if e["user_sis_id"] == "U9"]
    assert [(e["type"], e["associated_user_sis_id"], e["workflow_state"]) for e in observer] == [
        ("ObserverEnrollment", "U1", "active")]
    imported(client, {"user_observers.csv": "observer_id,student_id,status\nU9,U1,deleted\n"})
    assert [e["workflow_state"] for e in server.state.enrollments() if e["user_sis_id"] == "U9"] == ["deleted"]


def test_diffing_keys_user_observers_on_the_observer_alone_like_canvas(client, server):
    """UserObserverImporter.identifying_fields is %w[observer_id]: in a diffed data set a guardian keeps one
    row per import (the last), and a link that goes while the guardian stays is never deleted."""
    imported(client, ROSTER)
    links = lambda rows: {"user_observers.csv": "observer_id,student_id,status\n" + "".join(r + "\n" for r in rows)}  # noqa: E731
    diffed = {"diffing_data_set_identifier": "t:observers"}
    imported(client, links(["U9,U1,active", "U9,U2,active"]), **diffed)  # no diff base yet: both rows apply
    # U9 stops observing U2 and a new guardian U10 observes U3 and U4
    imported(client, links(["U9,U1,active", "U10,U3,active", "U10,U4,active"]), **diffed)
    pairs = {(o["observer_sis_id"], o["student_sis_id"]): o["workflow_state"] for o in server.state.user_observers()}
    assert pairs == {("U9", "U1"): "active", ("U9", "U2"): "active", ("U10", "U4"): "active"}
    # without a diffing identifier every row applies as sent, explicit deletes included
    imported(client, links(["U9,U1,active", "U9,U2,deleted", "U10,U3,active", "U10,U4,active"]))
    pairs = {(o["observer_sis_id"], o["student_sis_id"]): o["workflow_state"] for o in server.state.user_observers()}
    assert pairs == {("U9", "U1"): "active", ("U9", "U2"): "deleted", ("U10", "U3"): "active", ("U10", "U4"): "active"}


def test_throttling_and_server_errors_are_injectable_and_carry_headers():
    plan = CanvasFaultPlan(throttle_first_n=2, throttle_statuses=(403, 429), server_error_first_n=1)
    with DemoCanvasServer(faults=plan) as srv:
        headers = {"Authorization": f"Bearer {DEMO_CANVAS_TOKEN}"}
        responses = [httpx2.get(f"{srv.base_url}/api/v1/accounts/self", headers=headers) for _ in range(4)]
    assert [r.status_code for r in responses] == [403, 429, 503, 200]
    assert responses[0].text == "403 Forbidden (Rate Limit Exceeded)"
    assert responses[0].headers["X-Rate-Limit-Remaining"] == "0.0"
    for response in responses:
        assert float(response.headers["X-Request-Cost"]) >= 0
        assert "X-Rate-Limit-Remaining" in response.headers
    assert float(responses[3].headers["X-Rate-Limit-Remaining"]) > 600
    assert srv.fault_counts == {"throttle": 2, "server_error": 1}


def test_random_faults_are_deterministic_by_seed():
    plan = CanvasFaultPlan(seed=7, throttle_rate=0.3, server_error_rate=0.2)
    assert [plan.decide(n) for n in range(50)] == [plan.decide(n) for n in range(50)]
    assert {plan.decide(n) for n in range(50)} == {None, "throttle", "server_error"}


def test_link_pagination_over_courses(client, server):
    imported(client, ROSTER)
    first = client.get("/api/v1/accounts/self/courses", params={"per_page": 2})
    assert [c["sis_course_id"] for c in first.json()] == ["C1", "C2"]
    links = first.links
    assert {"current", "first", "last", "next"} <= set(links) and "prev" not in links
    assert "page=2" in links["last"]["url"]
    second = httpx2.get(links["next"]["url"], headers=client.headers)
    assert [c["sis_course_id"] for c in second.json()] == ["C3"]
    assert "prev" in second.links and "next" not in second.links
    in_term = client.get("/api/v1/accounts/self/courses", params={"enrollment_term_id": "sis_term_id:T2"}).json()
    assert [(c["sis_course_id"], c["workflow_state"]) for c in in_term] == [("C3", "available")]
    listing = client.get("/api/v1/accounts/self/sis_imports", params={"per_page": 100}).json()
    assert [i["workflow_state"] for i in listing["sis_imports"]] == ["imported"]


def test_two_servers_on_one_state_file_agree(tmp_path):
    state = tmp_path / "demo" / "canvas.sqlite"
    headers = {"Authorization": f"Bearer {DEMO_CANVAS_TOKEN}"}
    with DemoCanvasServer(state_path=state) as first, DemoCanvasServer(state_path=state) as second:
        with httpx2.Client(base_url=first.base_url, headers=headers) as one, \
                httpx2.Client(base_url=second.base_url, headers=headers) as two:
            created = upload(one, ROSTER)
            two.get(f"/api/v1/accounts/self/sis_imports/{created['id']}")
            done = one.get(f"/api/v1/accounts/self/sis_imports/{created['id']}").json()
            assert done["workflow_state"] == "imported"
            course = two.get("/api/v1/courses/sis_course_id:C1").json()
            assert (course["sis_course_id"], course["name"], course["workflow_state"]) == ("C1", "Algebra", "available")
    with DemoCanvasServer(state_path=state) as reopened:
        assert reopened.state.counts()["users"] == {"active": 12}


def test_leaky_bucket_throttles_concurrent_requests():
    # Each running request reserves 50 of a 60 bucket: a second request arriving meanwhile is throttled.
    throttle = CanvasThrottle(capacity=60, up_front_cost=50, outflow_per_second=0.0, status=429)
    with DemoCanvasServer(throttle=throttle, latency_ms=800) as srv:
        headers = {"Authorization": f"Bearer {DEMO_CANVAS_TOKEN}"}
        with ThreadPoolExecutor(2) as pool:
            statuses = sorted(pool.map(lambda _: httpx2.get(f"{srv.base_url}/api/v1/accounts/self",
                                                            headers=headers).status_code, range(2)))
        assert statuses == [200, 429]
        assert httpx2.get(f"{srv.base_url}/api/v1/accounts/self", headers=headers).status_code == 200


def test_embedded_canvas_is_one_server_per_process_on_the_data_dir(tmp_path):
    first = embedded_canvas(tmp_path / "data")
    assert embedded_canvas(tmp_path / "data") is first
    assert (tmp_path / "data" / "demo" / "canvas.sqlite").exists()
    response = httpx2.get(f"{first.base_url}/api/v1/accounts/self", headers={"Authorization": f"Bearer {DEMO_CANVAS_TOKEN}"})
    assert response.status_code == 200


def test_polls_are_answered_while_a_large_import_is_applied(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.demo.canvas_sis_api.APPLY_WAIT_SECONDS", 0.0)
    users = {"users.csv": "user_id,login_id,status\n" + "".join(f"U{i},u{i},active\n" for i in range(20000))}
    headers = {"Authorization": f"Bearer {DEMO_CANVAS_TOKEN}"}
    with DemoCanvasServer(state_path=tmp_path / "canvas.sqlite", polls_to_finish=1) as srv:
        with httpx2.Client(base_url=srv.base_url, headers=headers, timeout=30) as client:
            created = upload(client, users)
            first = client.get(f"/api/v1/accounts/self/sis_imports/{created['id']}").json()
            assert (first["workflow_state"], first["progress"]) == ("importing", 90)
            for _ in range(600):
                done = client.get(f"/api/v1/accounts/self/sis_imports/{created['id']}").json()
                if done["workflow_state"] != "importing":
                    break
                time.sleep(0.05)
            assert (done["workflow_state"], done["data"]["counts"]["users"]) == ("imported", 20000)


def test_rows_refused_by_the_stored_state_cascade_like_canvas(client, server):
    imported(client, {"accounts.csv": "account_id,parent_account_id,name,status\nA1,,District,deleted\n"})
    done = imported(client, {
        "courses.csv": "course_id,short_name,long_name,account_id,status\nC1,c,Course,A1,active\n",
        "sections.csv": "section_id,course_id,name,status\nS1,C1,Section,active\n",
        "users.csv": "user_id,login_id,status\nU1,u1,active\n",
        **enrollments(["C1,S1,U1,student,active"]),
    })
    assert done["workflow_state"] == "imported_with_messages"
    assert done["processing_warnings"] == [
        ["courses.csv", "Cannot restore course C1 because the associated account A1 is deleted"],
        ["sections.csv", "Section S1 references course C1 which doesn't exist"],
        ["enrollments.csv", "An enrollment referenced a non-existent section S1"],
    ]
    assert server.state.counts()["users"] == {"active": 1} and server.state.enrollments() == []


def test_standalone_server_in_another_process_shares_the_state(tmp_path):
    state = tmp_path / "canvas.sqlite"
    process = subprocess.Popen([sys.executable, "-m", "pipeline.demo.canvas_server", "--port", "0", "--state", str(state)],
                               stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        banner = process.stdout.readline()
        other_url = re.search(r"(http://127\.0\.0\.1:\d+)/api/v1", banner).group(1)
        assert "demo-canvas-token" in banner
        headers = {"Authorization": f"Bearer {DEMO_CANVAS_TOKEN}"}
        with DemoCanvasServer(state_path=state, polls_to_finish=2) as here, \
                httpx2.Client(base_url=here.base_url, headers=headers) as local:
            created = upload(local, ROSTER)
            # the other process polls (its own polls_to_finish=2 counts the same stored polls) and applies it
            there = [httpx2.get(f"{other_url}/api/v1/accounts/self/sis_imports/{created['id']}", headers=headers).json()
                     for _ in range(2)]
            assert [t["workflow_state"] for t in there] == ["importing", "imported"]
            assert here.state.counts()["courses"] == {"available": 2, "claimed": 1}
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_polls_from_another_server_do_not_wait_for_an_import_being_applied(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.demo.canvas_sis_api.APPLY_WAIT_SECONDS", 0.0)
    users = {"users.csv": "user_id,login_id,status\n" + "".join(f"U{i},u{i},active\n" for i in range(40000))}
    headers = {"Authorization": f"Bearer {DEMO_CANVAS_TOKEN}"}
    state = tmp_path / "canvas.sqlite"
    with DemoCanvasServer(state_path=state, polls_to_finish=1) as applier, \
            DemoCanvasServer(state_path=state, polls_to_finish=1) as observer:
        with httpx2.Client(base_url=applier.base_url, headers=headers) as client:
            created = upload(client, users)
        url = f"/api/v1/accounts/self/sis_imports/{created['id']}"
        assert httpx2.get(applier.base_url + url, headers=headers).json()["workflow_state"] == "importing"
        # Applying 40,000 users takes far longer than one poll: had the observer's poll waited for the
        # applier's write lock, it would come back `imported`.
        seen = httpx2.get(observer.base_url + url, headers=headers).json()
        assert (seen["workflow_state"], seen["progress"]) == ("importing", 90)
        for _ in range(600):
            if httpx2.get(observer.base_url + url, headers=headers).json()["workflow_state"] == "imported":
                break
            time.sleep(0.05)
        assert observer.state.counts()["users"] == {"active": 40000}


def test_sub_accounts_and_terms(client, server):
    imported(client, {**ROSTER, "accounts.csv": ROSTER["accounts.csv"] + "A3,A2,Annex,active\nA4,A1,Closed,deleted\n"})
    children = client.get("/api/v1/accounts/self/sub_accounts").json()
    assert [a["sis_account_id"] for a in children] == ["A1"]
    subtree = client.get("/api/v1/accounts/self/sub_accounts", params={"recursive": "true"}).json()
    assert sorted(a["sis_account_id"] for a in subtree) == ["A1", "A2", "A3"]
    assert next(a for a in subtree if a["sis_account_id"] == "A3")["parent_account_id"] == \
        next(a for a in subtree if a["sis_account_id"] == "A2")["id"]
    imported(client, {"terms.csv": "term_id,name,status\nT2,Spring,deleted\n"})
    active = client.get("/api/v1/accounts/self/terms").json()["enrollment_terms"]
    every = client.get("/api/v1/accounts/self/terms", params={"workflow_state[]": "all"}).json()["enrollment_terms"]
    assert [t["sis_term_id"] for t in active] == [None, "T1"]  # the default term has no SIS id
    assert [(t["sis_term_id"], t["workflow_state"]) for t in every] == [(None, "active"), ("T1", "active"),
                                                                       ("T2", "deleted")]
