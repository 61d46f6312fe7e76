"""The demo OneRoster 1.1 provider over real HTTP: auth, paging, filters, envelopes, overlay, faults, samples."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from authlib.integrations.httpx_client import OAuth1Auth
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256
from oauthlib.oauth1 import Client as OAuthlibClient

from pipeline.demo.district import District
from pipeline.demo.oneroster_server import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DemoOneRosterServer,
    FaultPlan,
    embedded_provider,
)
from pipeline.demo.provider_auth import GRADEBOOK_READ, GRADEBOOK_WRITE, ROSTER_CORE
from pipeline.demo.samples import load_samples
from pipeline.demo.source import Selection

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "oneroster-1.1"


def bearer_client(srv: DemoOneRosterServer, **form: str) -> httpx2.Client:
    """An httpx2 client carrying a fresh token for `srv` (form: extra token request fields, e.g. scope)."""
    response = httpx2.post(
        srv.token_url, data={"grant_type": "client_credentials", **form}, auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    )
    assert response.status_code == 200, response.text
    return httpx2.Client(base_url=srv.base_url, headers={"Authorization": f"Bearer {response.json()['access_token']}"})


def status_minor(response: httpx2.Response) -> str:
    info = response.json()["statusInfoSet"][0]
    return info["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"]


@pytest.fixture(scope="module")
def srv():
    with DemoOneRosterServer(students=300) as server:
        yield server


@pytest.fixture(scope="module")
def api(srv):
    with bearer_client(srv) as client:
        yield client


# --- OAuth 2 -------------------------------------------------------------------------------------------
def test_token_by_basic_or_form_body_and_scope_subset(srv):
    by_form = httpx2.post(srv.token_url, data={"grant_type": "client_credentials", "client_id": DEMO_CLIENT_ID,
                                               "client_secret": DEMO_CLIENT_SECRET, "scope": f"{ROSTER_CORE} {GRADEBOOK_READ}"})
    assert by_form.status_code == 200
    token = by_form.json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 3600
    assert token["scope"].split() == [ROSTER_CORE, GRADEBOOK_READ]
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert httpx2.get(srv.base_url + "/orgs", headers=headers).status_code == 200
    # /classes/{id}/students needs roster.readonly, /demographics roster-demographics.readonly: not granted
    assert httpx2.get(srv.base_url + "/classes/cls-0000000/students", headers=headers).status_code == 403
    assert httpx2.get(srv.base_url + "/demographics", headers=headers).status_code == 403
    unknown = httpx2.post(srv.token_url, data={"grant_type": "client_credentials", "scope": "roster.readonly"},
                          auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET))
    assert (unknown.status_code, unknown.json()["error"]) == (400, "invalid_scope")


def test_only_the_scopes_the_client_is_allowed_are_granted():
    with DemoOneRosterServer(students=30, allowed_scopes=(ROSTER_CORE, GRADEBOOK_READ)) as server:
        def token(scope: str) -> httpx2.Response:
            return httpx2.post(server.token_url, data={"grant_type": "client_credentials", "scope": scope},
                               auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET))

        assert token(f"{ROSTER_CORE} {GRADEBOOK_WRITE}").json()["scope"] == ROSTER_CORE
        refused = token(GRADEBOOK_WRITE)
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid_scope")
        everything = httpx2.post(server.token_url, data={"grant_type": "client_credentials"},
                                 auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET))
        assert everything.json()["scope"].split() == [ROSTER_CORE, GRADEBOOK_READ]


@pytest.mark.parametrize(
    "data, auth, status, error",
    [
        ({"grant_type": "client_credentials"}, (DEMO_CLIENT_ID, "wrong-secret"), 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, None, 401, "invalid_client"),
        ({"grant_type": "password"}, (DEMO_CLIENT_ID, DEMO_CLIENT_SECRET), 400, "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "client_id": DEMO_CLIENT_ID}, (DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
         400, "invalid_request"),
    ],
)
def test_token_errors_never_echo_the_secret(srv, data, auth, status, error):
    response = httpx2.post(srv.token_url, data=data, auth=auth)
    assert (response.status_code, response.json()["error"]) == (status, error)
    assert "wrong-secret" not in response.text and DEMO_CLIENT_SECRET not in response.text


def test_bearer_missing_wrong_or_expired_is_401():
    with DemoOneRosterServer(students=30, token_ttl_seconds=0.3) as server:
        assert httpx2.get(server.base_url + "/orgs").status_code == 401
        assert httpx2.get(server.base_url + "/orgs", headers={"Authorization": "Bearer nope"}).status_code == 401
        with bearer_client(server) as client:
            assert client.get("/orgs").status_code == 200
            time.sleep(0.4)
            expired = client.get("/orgs")
            assert expired.status_code == 401 and status_minor(expired) == "unauthorisedrequest"
            assert "invalid_token" in expired.headers["WWW-Authenticate"]


def test_required_vendor_header():
    with DemoOneRosterServer(students=30, required_headers={"x-vendor-authorization": "key:secret"}) as server:
        with bearer_client(server) as client:
            missing = client.get("/orgs")
            assert missing.status_code == 401 and "key:secret" not in missing.text
            assert client.get("/orgs", headers={"x-vendor-authorization": "key:secret"}).status_code == 200


# --- OAuth 1.0a ----------------------------------------------------------------------------------------
class OAuthlibSigned(httpx2.Auth):
    """Signs with oauthlib's client (HMAC-SHA256): a signer independent of authlib."""

    def __init__(self, secret: str = DEMO_CLIENT_SECRET, **client_options):
        self.client = OAuthlibClient(DEMO_CLIENT_ID, client_secret=secret, signature_method=SIGNATURE_HMAC_SHA256,
                                     **client_options)

    def auth_flow(self, request):
        _, headers, _ = self.client.sign(str(request.url), request.method)
        request.headers["Authorization"] = headers["Authorization"]
        yield request


@pytest.fixture(scope="module")
def oauth1_srv():
    with DemoOneRosterServer(students=30, auth="oauth1") as server:
        yield server


def test_oauth1_authlib_hmac_sha1_and_oauthlib_hmac_sha256_with_query(oauth1_srv):
    authlib_sha1 = OAuth1Auth(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, signature_method="HMAC-SHA1")
    params = {"limit": "2", "filter": "familyName~'o'"}
    for auth in (authlib_sha1, OAuthlibSigned()):
        response = httpx2.get(oauth1_srv.base_url + "/users", params=params, auth=auth)
        assert response.status_code == 200, response.text
        assert len(response.json()["users"]) == 2
    assert httpx2.post(oauth1_srv.token_url, data={"grant_type": "client_credentials"}).status_code == 404


def test_oauth1_rejects_bad_signature_tampered_query_stale_timestamp_and_replay(oauth1_srv):
    url = oauth1_srv.base_url + "/users?limit=1"
    assert httpx2.get(url, auth=OAuthlibSigned(secret="wrong")).status_code == 401
    _, headers, _ = OAuthlibClient(DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET,
                                   signature_method=SIGNATURE_HMAC_SHA256).sign(url)
    tampered = httpx2.get(oauth1_srv.base_url + "/users?limit=2", headers=headers)
    assert tampered.status_code == 401
    assert httpx2.get(url, headers=headers).status_code == 200
    replay = httpx2.get(url, headers=headers)
    assert replay.status_code == 401 and DEMO_CLIENT_SECRET not in replay.text
    stale = OAuthlibSigned(timestamp=str(int(time.time()) - 3600))
    assert httpx2.get(url, auth=stale).status_code == 401
    assert httpx2.get(url).status_code == 401


# --- paging, headers, envelopes ------------------------------------------------------------------------
def test_paging_total_count_and_link(api):
    first = api.get("/enrollments", params={"limit": 50})
    total = int(first.headers["X-Total-Count"])
    assert total == District(300).count("enrollments") and len(first.json()["enrollments"]) == 50
    links = httpx2.Response(200, headers={"Link": first.headers["Link"]}).links
    assert set(links) == {"next", "first", "last"}
    assert "offset=50" in links["next"]["url"] and f"offset={(total - 1) // 50 * 50}" in links["last"]["url"]
    default = api.get("/users").json()["users"]
    assert len(default) == 100  # spec default limit
    seen = []
    url = "/enrollments?limit=700"
    while url:
        page = api.get(url)
        seen += [e["sourcedId"] for e in page.json()["enrollments"]]
        url = httpx2.Response(200, headers={"Link": page.headers["Link"]}).links.get("next", {}).get("url")
    assert len(seen) == len(set(seen)) == total
    middle = httpx2.Response(200, headers={"Link": api.get("/users?limit=10&offset=20").headers["Link"]}).links
    assert "offset=10" in middle["prev"]["url"]


@pytest.mark.parametrize("bad", ["limit=0", "limit=abc", "offset=-1", "limit=1.5"])
def test_bad_paging_is_400(api, bad):
    response = api.get(f"/users?{bad}")
    assert response.status_code == 400 and response.json()["statusInfoSet"][0]["imsx_codeMajor"] == "failure"


def test_page_cap_and_headers_switched_off():
    with DemoOneRosterServer(students=60, page_cap=7, send_total_count=False, send_link=False) as server:
        with bearer_client(server) as client:
            page = client.get("/users", params={"limit": 100, "offset": 3})
            assert len(page.json()["users"]) == 7
            assert "X-Total-Count" not in page.headers and "Link" not in page.headers


@pytest.mark.parametrize(
    "path, key, kinds",
    [
        ("/orgs", "orgs", {"district", "school"}),
        ("/schools", "orgs", {"school"}),
        ("/academicSessions", "academicSessions", {"schoolYear", "semester", "gradingPeriod"}),
        ("/terms", "academicSessions", {"schoolYear", "semester"}),
        ("/gradingPeriods", "academicSessions", {"gradingPeriod"}),
        ("/terms/as-2027-fall/gradingPeriods", "academicSessions", {"gradingPeriod"}),
        ("/users?limit=2000", "users", {"administrator", "teacher", "aide", "student", "guardian"}),
        ("/students?limit=2000", "users", {"student"}),
        ("/teachers", "users", {"teacher"}),
        ("/classes/cls-0000000/students", "users", {"student"}),
        ("/courses", "courses", None),
        ("/classes", "classes", None),
        ("/enrollments", "enrollments", None),
        ("/demographics", "demographics", None),
        ("/categories", "categories", None),
    ],
)
def test_envelope_keys(api, path, key, kinds):
    response = api.get(path)
    assert response.status_code == 200 and list(response.json()) == [key]
    records = response.json()[key]
    assert records
    if kinds is not None:
        assert {r.get("role", r.get("type")) for r in records} == kinds


def test_single_gets_and_unknown_object(api):
    assert api.get("/students/stu-0000001").json()["user"]["familyName"] == "García, Jr."
    assert api.get("/schools/org-sch-0001").json()["org"]["type"] == "school"
    assert api.get("/terms/as-2027-spring").json()["academicSession"]["type"] == "semester"
    assert api.get("/classes/cls-0000003").json()["class"]["sourcedId"] == "cls-0000003"
    assert "demographics" in api.get("/demographics/stu-0000002").json()
    for missing in ("/users/stu-9999999", "/teachers/stu-0000001", "/schools/org-district", "/classes/x/students"):
        response = api.get(missing)
        assert response.status_code == 404 and status_minor(response) == "unknownobject", missing


def test_record_shape_and_hard_cases(api):
    enrollment = api.get("/enrollments/enr-0000000").json()["enrollment"]
    assert enrollment["class"] == {"href": f"{str(api.base_url).rstrip('/')}/classes/{enrollment['class']['sourcedId']}",
                                   "sourcedId": enrollment["class"]["sourcedId"], "type": "class"}
    assert enrollment["primary"] in ("true", "false") and len(enrollment["beginDate"]) == 10
    users = api.get("/users", params={"limit": 2000}).json()["users"]
    names = {u["givenName"] for u in users} | {u["familyName"] for u in users}
    assert {"Zoë", "O'Brien", "García, Jr.", 'Katherine "Kate"'} <= names
    assert {u["status"] for u in users} == {"active", "tobedeleted"}
    assert {u["enabledUser"] for u in users} == {"true", "false"}
    assert any(u["role"] == "teacher" and "email" not in u for u in users)
    aides = {u["sourcedId"] for u in users if u["role"] == "aide"}
    enrollments = api.get("/enrollments", params={"limit": 5000}).json()["enrollments"]
    aide_rows = [e for e in enrollments if e["user"]["sourcedId"] in aides]
    assert aide_rows and {(e["role"], e["primary"]) for e in aide_rows} == {("teacher", "false")}
    assert {e["role"] for e in enrollments} == {"student", "teacher"}
    assert any(e["status"] == "tobedeleted" for e in enrollments)
    by_id = {u["sourcedId"]: u for u in users}
    student = by_id["stu-0000000"]
    assert student["agents"], "every demo student has one or two guardians"
    for agent in student["agents"]:
        assert by_id[agent["sourcedId"]]["agents"][0]["sourcedId"] == "stu-0000000"
    assert all(u["dateLastModified"] == "2026-07-01T12:00:00.000Z" for u in users)


def test_json_booleans_switch():
    with DemoOneRosterServer(students=30, booleans_as_strings=False) as server, bearer_client(server) as client:
        user = client.get("/users", params={"limit": 1}).json()["users"][0]
        assert user["enabledUser"] is True


# --- filters and sort ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "expression, check",
    [
        ("role='teacher'", lambda u: u["role"] == "teacher"),
        ("role!='student'", lambda u: u["role"] != "student"),
        ("familyName>'O'", lambda u: u["familyName"] > "O"),
        ("familyName>='O'", lambda u: u["familyName"] >= "O"),
        ("familyName<'D'", lambda u: u["familyName"] < "D"),
        ("familyName<='D'", lambda u: u["familyName"] <= "D"),
        ("givenName~'zo'", lambda u: "zo" in u["givenName"].lower()),
        ("familyName='O''Brien'", lambda u: u["familyName"] == "O'Brien"),
        ("role='aide' OR enabledUser='false'", lambda u: u["role"] == "aide" or u["enabledUser"] == "false"),
        ("role='student' AND status='tobedeleted'", lambda u: u["role"] == "student" and u["status"] == "tobedeleted"),
        ("orgs.sourcedId='org-sch-0002'", lambda u: any(o["sourcedId"] == "org-sch-0002" for o in u["orgs"])),
    ],
)
def test_filter_operators(api, expression, check):
    everyone = api.get("/users", params={"limit": 5000}).json()["users"]
    expected = [u["sourcedId"] for u in everyone if check(u)]
    response = api.get("/users", params={"filter": expression, "limit": 5000})
    assert response.status_code == 200, response.text
    assert [u["sourcedId"] for u in response.json()["users"]] == expected and expected
    assert response.headers["X-Total-Count"] == str(len(expected))


@pytest.mark.parametrize("expression", ["colour='red'", "role='a' AND nope='b'", "role=teacher", "a='1' AND b='2' OR c='3'"])
def test_bad_filter_is_400_invalid_filter_field(api, expression):
    response = api.get("/users", params={"filter": expression})
    assert response.status_code == 400
    info = response.json()["statusInfoSet"][0]
    assert (info["imsx_codeMajor"], info["imsx_severity"]) == ("failure", "error")
    assert status_minor(response) == "invalid_filter_field" and info["imsx_description"]


def test_sort_and_unknown_sort_warning(api):
    ordered = api.get("/users", params={"sort": "familyName", "orderBy": "desc", "limit": 5000}).json()["users"]
    assert [u["familyName"] for u in ordered] == sorted((u["familyName"] for u in ordered), reverse=True)
    warned = api.get("/users", params={"sort": "shoeSize", "limit": 3}).json()
    assert len(warned["users"]) == 3 and warned["statusInfoSet"][0]["imsx_severity"] == "warning"


# --- determinism and size ------------------------------------------------------------------------------
def test_same_parameters_give_byte_identical_responses():
    bodies = []
    for _ in range(2):
        with DemoOneRosterServer(students=120, seed=5, port=0) as server, bearer_client(server) as client:
            pages = [client.get(p).content for p in ("/users?limit=500", "/enrollments?limit=300&offset=100", "/classes")]
            bodies.append([p.replace(server.base_url.encode(), b"BASE") for p in pages])
    assert bodies[0] == bodies[1]
    with DemoOneRosterServer(students=120, seed=6) as other, bearer_client(other) as client:
        assert client.get("/users?limit=500").content.replace(other.base_url.encode(), b"BASE") != bodies[0][0]


def count_generated_records(server, monkeypatch) -> list[str]:
    """The entity of every record the server generates from its district from now on."""
    source, generated = server.store.source, []
    original = source.record

    def record(entity, idx, href_base):
        generated.append(entity)
        return original(entity, idx, href_base)

    monkeypatch.setattr(source, "record", record)
    return generated


def test_500k_district_serves_a_deep_page_of_1000_enrollments_without_a_scan(monkeypatch):
    with DemoOneRosterServer(students=500_000) as server, bearer_client(server) as client:
        total = int(client.get("/enrollments", params={"limit": 1}).headers["X-Total-Count"])
        assert total > 3_900_000
        generated = count_generated_records(server, monkeypatch)
        page = client.get("/enrollments", params={"limit": 1000, "offset": total - 1500})
        assert len(page.json()["enrollments"]) == 1000
        assert generated == ["enrollments"] * 1000  # the page's records, none before them


# --- overlay state -------------------------------------------------------------------------------------
def test_overlay_changes_are_served_and_shared_through_the_state_file(tmp_path):
    state = tmp_path / "oneroster.sqlite"
    with DemoOneRosterServer(students=60, state_path=state) as first, DemoOneRosterServer(
        students=60, state_path=state
    ) as second, bearer_client(first) as a, bearer_client(second) as b:
        before = int(a.get("/enrollments").headers["X-Total-Count"])
        first.store.drop_record("enrollments", "enr-0000003")
        first.store.set_status("users", "stu-0000004", "tobedeleted")
        first.store.upsert_record("users", {"sourcedId": "stu-new", "status": "active", "role": "student",
                                            "username": "new", "givenName": "Nuevo", "familyName": "Añadido",
                                            "enabledUser": "true", "orgs": []})
        students = [u["sourcedId"] for u in second.store.iter_all(Selection("users", frozenset({"student"})))]
        assert students[-1] == "stu-new"
        assert int(b.get("/enrollments").headers["X-Total-Count"]) == before - 1
        assert "enr-0000003" not in {e["sourcedId"] for e in b.get("/enrollments", params={"limit": 5000}).json()["enrollments"]}
        assert b.get("/enrollments/enr-0000003").status_code == 404
        changed = b.get("/users/stu-0000004").json()["user"]
        assert changed["status"] == "tobedeleted" and changed["dateLastModified"] > "2026-07-01T12:00:00.000Z"
        delta = b.get("/users", params={"filter": "dateLastModified>'2026-07-02'"}).json()["users"]
        assert {u["sourcedId"] for u in delta} == {"stu-0000004", "stu-new"}
        assert b.get("/students", params={"limit": 1, "offset": 60}).json()["users"][0]["sourcedId"] == "stu-new"


def test_delta_filter_on_dateLastModified_needs_no_scan_of_a_500k_district(monkeypatch):
    with DemoOneRosterServer(students=500_000) as server, bearer_client(server) as client:
        server.store.set_status("enrollments", "enr-0000010", "tobedeleted")
        server.store.drop_record("enrollments", "enr-0000011")
        server.store.upsert_record("enrollments", {"sourcedId": "enr-added", "status": "active", "role": "student"})
        generated = count_generated_records(server, monkeypatch)
        delta = client.get("/enrollments", params={"filter": "dateLastModified>'2026-07-02T00:00:00Z'"})
        assert generated == []  # the changed and the added record are stored; no district record is read
        assert [e["sourcedId"] for e in delta.json()["enrollments"]] == ["enr-0000010", "enr-added"]
        assert delta.headers["X-Total-Count"] == "2"
        everything = client.get("/enrollments", params={"filter": "dateLastModified>'2026-01-01T00:00:00Z'",
                                                        "limit": 3, "offset": 10})
        assert [e["sourcedId"] for e in everything.json()["enrollments"]] == ["enr-0000010", "enr-0000012", "enr-0000013"]
        total = int(client.get("/enrollments", params={"limit": 1}).headers["X-Total-Count"])
        assert everything.headers["X-Total-Count"] == str(total)
        before = client.get("/enrollments", params={"filter": "dateLastModified<'2026-07-02T00:00:00Z'", "limit": 1,
                                                    "offset": total - 3})
        assert before.headers["X-Total-Count"] == str(total - 2)  # the changed and the added one are newer


def test_truncating_users_by_half_keeps_paging_consistent(tmp_path):
    with DemoOneRosterServer(students=60) as server, bearer_client(server) as client:
        everyone = [u["sourcedId"] for u in client.get("/users", params={"limit": 1000}).json()["users"]]
        assert server.store.drop_records("users", everyone[::2]) == len(everyone[::2])
        paged = []
        for offset in range(0, len(everyone), 7):
            paged += [u["sourcedId"] for u in client.get("/users", params={"limit": 7, "offset": offset}).json()["users"]]
        assert paged == everyone[1::2]
        assert client.get("/users").headers["X-Total-Count"] == str(len(everyone[1::2]))


def test_state_file_is_shared_with_a_server_in_another_process(tmp_path):
    state = tmp_path / "shared.sqlite"
    with DemoOneRosterServer(students=40, state_path=state) as local:
        local.store.set_status("classes", "cls-0000001", "tobedeleted")
        port = _free_port()
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        child = subprocess.Popen(
            [sys.executable, "-m", "pipeline.demo.oneroster_server", "--port", str(port), "--students", "40",
             "--state", str(state)], stdout=subprocess.PIPE, env=env, text=True,
        )
        try:
            child.stdout.readline()  # the "... at <url>" banner: it is listening
            base = f"http://127.0.0.1:{port}"
            token = httpx2.post(base + "/oauth/token", data={"grant_type": "client_credentials"},
                                auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            url = base + "/ims/oneroster/v1p1/classes/cls-0000001"
            assert httpx2.get(url, headers=headers).json()["class"]["status"] == "tobedeleted"
            local.store.set_status("classes", "cls-0000001", "active")  # and the other way round, no restart
            assert httpx2.get(url, headers=headers).json()["class"]["status"] == "active"
        finally:
            child.terminate()
            child.wait(timeout=10)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- faults and latency --------------------------------------------------------------------------------
def test_faults_are_deterministic_and_a_retrying_client_gets_the_same_data():
    plan = FaultPlan(rate=0.3, statuses=(429, 500, 502, 503, 504), retry_after_seconds=0, seed=3, first_n=2)
    assert [plan.fault_for(n) for n in range(40)] == [plan.fault_for(n) for n in range(40)]
    with DemoOneRosterServer(students=60) as clean, bearer_client(clean) as client:
        expected = [client.get("/users", params={"limit": 50, "offset": o}).content for o in range(0, 300, 50)]
        expected = [e.replace(clean.base_url.encode(), b"BASE") for e in expected]
    with DemoOneRosterServer(students=60, faults=plan) as flaky, bearer_client(flaky) as client:
        got, statuses = [], []
        for offset in range(0, 300, 50):
            while True:
                response = client.get("/users", params={"limit": 50, "offset": offset})
                statuses.append(response.status_code)
                if response.status_code == 200:
                    got.append(response.content.replace(flaky.base_url.encode(), b"BASE"))
                    break
                if response.status_code in (429, 503):
                    assert response.headers["Retry-After"] == "0"
        assert got == expected
        assert statuses[:2] == [429, 500] and flaky.stats.faults_injected == statuses.count(429) + sum(
            statuses.count(s) for s in (500, 502, 503, 504))
        assert flaky.stats.faults_injected >= 3


def test_latency_does_not_serialise_concurrent_requests():
    with DemoOneRosterServer(students=30, latency_ms=300) as server, bearer_client(server) as client:
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(lambda o: client.get("/users", params={"offset": o}).status_code, range(6)))
        elapsed = time.perf_counter() - started
        assert statuses == [200] * 6 and 0.3 <= elapsed < 1.2, elapsed


def test_small_responses_do_not_wait_for_a_delayed_ack(api):
    """Headers and body must leave together (else Nagle + delayed ACK add ~40 ms to every request)."""
    timings = []
    for _ in range(15):
        started = time.perf_counter()
        assert api.get("/orgs").status_code == 200
        timings.append(time.perf_counter() - started)
    assert sorted(timings)[len(timings) // 2] < 0.02, timings


# --- embedded default ----------------------------------------------------------------------------------
def test_embedded_provider_is_one_per_data_dir_with_state_under_demo(tmp_path, monkeypatch):
    monkeypatch.setenv("ROSTERBRIDGE_DEMO_STUDENTS", "45")
    server = embedded_provider(tmp_path)
    assert embedded_provider(tmp_path) is server
    assert (tmp_path / "demo" / "oneroster.sqlite").exists()
    with bearer_client(server) as client:
        assert client.get("/students").headers["X-Total-Count"] == "45"


# --- public samples ------------------------------------------------------------------------------------
def test_moodle_csv_sample_is_served_with_its_invalid_values():
    with DemoOneRosterServer(source=load_samples(SAMPLES / "moodle_Test_full_data_set.zip")) as server, bearer_client(
        server
    ) as client:
        sessions = {s["sourcedId"]: s for s in client.get("/academicSessions").json()["academicSessions"]}
        assert sessions["as-grp-222-2345"]["status"] == "inactive"
        assert sessions["as-grp-222-2345"]["dateLastModified"] == "2023-05-01"
        classes = {c["sourcedId"]: c for c in client.get("/classes").json()["classes"]}
        assert classes["cls-222-123456"]["classType"] == "Scheduled"
        assert classes["cls-222-123456"]["subjects"] == ["Science", "Physics", "Biology"]
        assert [t["sourcedId"] for t in classes["cls-222-123478"]["terms"]] == ["as-trm-222-1234", "as-trm-222-1235"]
        users = {u["sourcedId"]: u for u in client.get("/users").json()["users"]}
        assert users["usr-222-66778899"]["status"] == "" and users["usr-222-66778899"]["enabledUser"] == "TRUE"
        assert users["usr-222-1234561"]["userIds"] == [
            {"type": "LDAP", "identifier": "12"}, {"type": "LTI", "identifier": "15"}, {"type": "Fed", "identifier": "23"}
        ]
        assert client.get("/students").headers["X-Total-Count"] == "3"
        assert {u["sourcedId"] for u in client.get("/classes/cls-222-123456/students").json()["users"]} == {
            "usr-222-987654", "usr-222-1234561232"}


def test_minimal_csv_sample_keeps_blank_status_and_dates():
    with DemoOneRosterServer(source=load_samples(SAMPLES / "moodle_Test_minimal_data_set.zip")) as server, bearer_client(
        server
    ) as client:
        org = client.get("/orgs").json()["orgs"][0]
        assert (org["status"], org["dateLastModified"], org["type"]) == ("", "", "department")


def test_microsoft_seed_db_is_served_including_its_gradebook():
    with DemoOneRosterServer(source=load_samples(SAMPLES / "ms_provider_demo_seed.db")) as server, bearer_client(
        server
    ) as client:
        spring = client.get("/academicSessions/academic-session-1").json()["academicSession"]
        assert (spring["status"], spring["type"]) == ("inactive", "term")
        assert client.get("/schools").json()["orgs"][0]["sourcedId"] == "org-2"
        assert client.get("/teachers").headers["X-Total-Count"] == "2"
        line_items = client.get("/classes/class-1/lineItems").json()["lineItems"]
        assert {li["sourcedId"] for li in line_items} == {"line-item-1", "line-item-2"}
        assert line_items[0]["assignDate"] == "2017-03-01"  # the sample provider's date without time, kept
        results = client.get("/classes/class-1/students/user-1/results").json()["results"]
        assert {(r["scoreStatus"], r["score"]) for r in results} == {("fully graded", "75.4"), ("partially graded", "95.3")}
        user = client.get("/users/user-2").json()["user"]
        assert user["agents"][0]["sourcedId"] == "user-3" and user["role"] == "teacher"


def test_options_can_change_while_the_server_runs():
    with DemoOneRosterServer(students=30) as server, bearer_client(server) as client:
        assert len(client.get("/users", params={"limit": 50}).json()["users"]) == 50
        server.page_cap = 20
        server.send_link = False
        capped = client.get("/users", params={"limit": 50})
        assert len(capped.json()["users"]) == 20 and "Link" not in capped.headers
        server.faults = FaultPlan(first_n=server.stats.requests + 1, statuses=(503,), retry_after_seconds=0)
        assert client.get("/orgs").status_code == 503


def test_usernames_and_emails_are_unique_in_a_large_district():
    # Canvas rejects a user whose login another SIS id already claimed; the demo must never produce one.
    district = District(students=5000, seed=1)
    users = [district.record("users", i, "http://x") for i in range(district.count("users"))]
    usernames = [u["username"] for u in users]
    assert len(set(usernames)) == len(usernames)
    emails = [u["email"] for u in users if "email" in u]  # a few teachers have none, on purpose
    assert len(set(emails)) == len(emails)
