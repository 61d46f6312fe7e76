"""The demo provider's gradebook: PUT/GET/DELETE semantics and strict validation (422 naming the field)."""

from __future__ import annotations

import copy

import httpx2
import pytest

from pipeline.demo.oneroster_server import DemoOneRosterServer
from tests.test_demo_oneroster import api, bearer_client, srv, status_minor  # noqa: F401 - api/srv are fixtures

CLASS = "cls-0000000"


@pytest.fixture(scope="module")
def roster(api):
    """An active student of CLASS, a student not in it, and a teacher."""
    in_class = {u["sourcedId"] for u in api.get(f"/classes/{CLASS}/students").json()["users"]}
    students = [u["sourcedId"] for u in api.get("/students", params={"limit": 1000}).json()["users"]]
    teacher = api.get("/teachers").json()["users"][0]["sourcedId"]
    outsider = next(s for s in students if s not in in_class)
    return sorted(in_class)[0], outsider, teacher


def line_item(**overrides):
    body = {
        "sourcedId": "li-1",
        "status": "active",
        "title": "Fractions quiz",
        "description": "Chapter 3",
        "assignDate": "2026-09-01T00:00:00Z",
        "dueDate": "2026-09-08T23:59:59.000Z",
        "class": {"sourcedId": CLASS, "type": "class"},
        "category": {"sourcedId": "cat-quiz"},
        "gradingPeriod": {"sourcedId": "as-2027-q1", "type": "academicSession"},
        "resultValueMin": 0,
        "resultValueMax": 100,
    }
    body.update(overrides)
    return {"lineItem": {k: v for k, v in body.items() if v is not None}}


def result(student, **overrides):
    body = {
        "sourcedId": "res-1",
        "status": "active",
        "lineItem": {"sourcedId": "li-1"},
        "student": {"sourcedId": student},
        "scoreStatus": "fully graded",
        "score": 87.5,
        "scoreDate": "2026-09-09",
        "comment": "Well done",
    }
    body.update(overrides)
    return {"result": {k: v for k, v in body.items() if v is not None}}


def test_put_creates_then_replaces_get_reads_delete_removes(api, roster):
    student = roster[0]
    created = api.put("/lineItems/li-1", json=line_item())
    assert created.status_code == 201, created.text
    stored = created.json()["lineItem"]
    assert stored["class"]["href"].endswith(f"/classes/{CLASS}") and stored["dateLastModified"].endswith("Z")
    replaced = api.put("/lineItems/li-1", json=line_item(title="Fractions quiz (retake)"))
    assert replaced.status_code == 200 and replaced.json()["lineItem"]["title"] == "Fractions quiz (retake)"
    assert api.put("/results/res-1", json=result(student)).status_code == 201
    assert api.put("/results/res-1", json=result(student, scoreStatus="exempt", score=0)).status_code == 200
    extra_credit = api.put("/results/res-2", json=result(student, sourcedId="res-2", score=300))
    assert extra_credit.status_code == 201 and extra_credit.json()["result"]["score"] == 300

    assert api.get("/lineItems/li-1").json()["lineItem"]["title"] == "Fractions quiz (retake)"
    assert [li["sourcedId"] for li in api.get(f"/classes/{CLASS}/lineItems").json()["lineItems"]] == ["li-1"]
    for path in (f"/classes/{CLASS}/results", f"/classes/{CLASS}/lineItems/li-1/results",
                 f"/classes/{CLASS}/students/{student}/results", "/results"):
        response = api.get(path)
        assert [r["sourcedId"] for r in response.json()["results"]] == ["res-1", "res-2"], path
        assert response.headers["X-Total-Count"] == "2"
    assert api.get("/results/res-1").json()["result"]["scoreStatus"] == "exempt"
    assert api.get("/classes/cls-0000001/results").json()["results"] == []

    assert api.delete("/results/res-2").status_code == 204
    assert api.get("/results/res-2").status_code == 404
    assert api.delete("/results/res-2").status_code == 404
    assert api.delete("/lineItems/li-1").status_code == 204
    assert api.delete("/results/res-1").status_code == 204
    assert api.get(f"/classes/{CLASS}/lineItems").json()["lineItems"] == []


def test_categories_put_and_delete(api):
    body = {"category": {"sourcedId": "cat-labs", "status": "active", "title": "Labs"}}
    assert api.put("/categories/cat-labs", json=body).status_code == 201
    assert api.get("/categories/cat-labs").json()["category"]["title"] == "Labs"
    assert api.delete("/categories/cat-labs").status_code == 204
    assert api.delete("/categories/cat-homework").status_code == 204  # a provider-defined one can go too
    assert api.get("/categories/cat-homework").status_code == 404


@pytest.mark.parametrize(
    "body, field",
    [
        ({"category": {"status": "active"}}, "category.title"),
        ({"category": {"title": "Labs"}}, "category.status"),
        ({"category": {"title": "Labs", "status": "inactive"}}, "category.status"),
        ({"title": "Labs", "status": "active"}, "category"),
        ({"category": {"sourcedId": "other", "title": "Labs", "status": "active"}}, "category.sourcedId"),
    ],
)
def test_category_validation(api, body, field):
    response = api.put("/categories/cat-x", json=body)
    assert response.status_code == 422 and status_minor(response) == "invaliddata"
    assert response.json()["statusInfoSet"][0]["imsx_description"].startswith(field + ":")


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"title": None}, "lineItem.title"),
        ({"status": None}, "lineItem.status"),
        ({"assignDate": None}, "lineItem.assignDate"),
        ({"assignDate": "2026-09-01"}, "lineItem.assignDate"),
        ({"dueDate": None}, "lineItem.dueDate"),
        ({"dueDate": "2026-13-40T00:00:00Z"}, "lineItem.dueDate"),
        ({"class": None}, "lineItem.class"),
        ({"class": {"sourcedId": "cls-9999999"}}, "lineItem.class"),
        ({"class": "cls-0000000"}, "lineItem.class"),
        ({"category": None}, "lineItem.category"),
        ({"category": {"sourcedId": "cat-none"}}, "lineItem.category"),
        ({"gradingPeriod": None}, "lineItem.gradingPeriod"),
        ({"gradingPeriod": {"sourcedId": "as-2027-fall"}}, "lineItem.gradingPeriod"),
        ({"gradingPeriod": {"sourcedId": "as-2027-q1", "type": "org"}}, "lineItem.gradingPeriod"),
        ({"resultValueMin": None}, "lineItem.resultValueMin"),
        ({"resultValueMax": "100"}, "lineItem.resultValueMax"),
        ({"resultValueMin": 10, "resultValueMax": 5}, "lineItem.resultValueMax"),
        ({"sourcedId": "li-other"}, "lineItem.sourcedId"),
    ],
)
def test_line_item_validation(api, overrides, field):
    response = api.put("/lineItems/li-bad", json=line_item(**{"sourcedId": "li-bad", **overrides}))
    assert response.status_code == 422, response.text
    assert response.json()["statusInfoSet"][0]["imsx_description"].startswith(field + ":")
    assert api.get("/lineItems/li-bad").status_code == 404


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"lineItem": None}, "result.lineItem"),
        ({"lineItem": {"sourcedId": "li-none"}}, "result.lineItem"),
        ({"student": None}, "result.student"),
        ({"student": {"sourcedId": "stu-9999999"}}, "result.student"),
        ({"student": "OUTSIDER"}, "result.student"),
        ({"student": "TEACHER"}, "result.student"),
        ({"student": "DROPPED"}, "result.student"),
        ({"scoreStatus": None}, "result.scoreStatus"),
        ({"scoreStatus": "fully_graded"}, "result.scoreStatus"),
        ({"score": None}, "result.score"),
        ({"score": "87"}, "result.score"),
        ({"score": True}, "result.score"),
        ({"scoreDate": None}, "result.scoreDate"),
        ({"scoreDate": "2026-09-09T10:00:00Z"}, "result.scoreDate"),
        ({"scoreDate": "09/09/2026"}, "result.scoreDate"),
        ({"status": "deleted"}, "result.status"),
        ({"comment": 5}, "result.comment"),
        ({"sourcedId": "res-other"}, "result.sourcedId"),
    ],
)
def test_result_validation(srv, api, roster, overrides, field):
    student, outsider, teacher = roster
    assert api.put("/lineItems/li-v", json=line_item(sourcedId="li-v")).status_code in (200, 201)
    dropped = _student_with_dropped_enrollment(srv, api, exclude=student)
    placeholders = {"OUTSIDER": outsider, "TEACHER": teacher, "DROPPED": dropped}
    if isinstance(overrides.get("student"), str):
        overrides = {**overrides, "student": {"sourcedId": placeholders[overrides["student"]]}}
    body = result(student, sourcedId="res-bad", lineItem={"sourcedId": "li-v"})
    body["result"].update(copy.deepcopy(overrides))
    body["result"] = {k: v for k, v in body["result"].items() if v is not None}
    response = api.put("/results/res-bad", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["statusInfoSet"][0]["imsx_description"].startswith(field + ":")


def _student_with_dropped_enrollment(srv, api, exclude: str) -> str:
    """A student of CLASS whose enrollment there is marked tobedeleted (not an active enrollment)."""
    enrollments = srv.store.class_enrollments(CLASS)
    target = next(e for e in enrollments if e["role"] == "student" and e["user"]["sourcedId"] != exclude)
    if target["status"] != "tobedeleted":
        srv.store.set_status("enrollments", target["sourcedId"], "tobedeleted")
    return target["user"]["sourcedId"]


def test_unparseable_body_and_unsupported_methods(api):
    assert api.put("/lineItems/li-x", content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
    assert api.put("/users/stu-0000001", json={"user": {}}).status_code == 405
    assert api.delete("/classes/cls-0000000").status_code == 405


def test_category_writes_can_be_refused():
    with DemoOneRosterServer(students=30, allow_category_writes=False) as server, bearer_client(server) as client:
        refused = client.put("/categories/cat-labs", json={"category": {"title": "Labs", "status": "active"}})
        assert refused.status_code == 403 and status_minor(refused) == "unsupportedoperation"
        assert client.delete("/categories/cat-quiz").status_code == 403
        assert client.get("/categories").status_code == 200


def test_gradebook_writes_need_their_scopes(srv):
    from pipeline.demo.provider_auth import GRADEBOOK_READ

    with bearer_client(srv, scope=GRADEBOOK_READ) as reader:
        assert reader.get("/lineItems").status_code == 200
        assert reader.put("/categories/cat-r", json={"category": {"title": "R", "status": "active"}}).status_code == 403
        assert reader.delete("/categories/cat-quiz").status_code == 403


def test_gradebook_state_is_shared_through_the_state_file(tmp_path, roster):
    state = tmp_path / "gb.sqlite"
    with DemoOneRosterServer(students=60, state_path=state) as first, DemoOneRosterServer(
        students=60, state_path=state
    ) as second, bearer_client(first) as a, bearer_client(second) as b:
        assert a.put("/lineItems/li-1", json=line_item()).status_code == 201
        assert b.put("/lineItems/li-1", json=line_item()).status_code == 200
        assert b.put("/results/res-1", json=result(roster[0])).status_code == 201
        assert a.get("/results/res-1").json()["result"]["score"] == 87.5
        assert second.store.get("results", "res-1")["student"]["sourcedId"] == roster[0]


def test_gradebook_put_over_oauth1_signs_no_body():
    from tests.test_demo_oneroster import OAuthlibSigned

    with DemoOneRosterServer(students=30, auth="oauth1") as server:
        body = {"category": {"sourcedId": "cat-labs", "status": "active", "title": "Labs"}}
        created = httpx2.put(server.base_url + "/categories/cat-labs", json=body, auth=OAuthlibSigned())
        assert created.status_code == 201, created.text
        assert httpx2.put(server.base_url + "/categories/cat-labs", json=body,
                          auth=OAuthlibSigned(secret="wrong")).status_code == 401
        assert httpx2.delete(server.base_url + "/categories/cat-labs", auth=OAuthlibSigned()).status_code == 204
