"""The OneRoster client against the demo provider over real HTTP on 127.0.0.1: both auth schemes, token
renewal, page caps, missing paging headers, injected faults, provider errors and vendor headers."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import pytest

from pipeline.demo.oneroster_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DemoOneRosterServer, FaultPlan
from pipeline.demo.provider_auth import TokenIssuer
from pipeline.resources.oneroster import CollectionShrank, OneRosterClient, OneRosterError, dateLastModified_filter
from tests.stub_http import QuietHandler, serving

STUDENTS = 120
USERS = ("users", "students", "teachers")


def client_for(srv: DemoOneRosterServer, *, auth: str = "oauth2", secret: str = DEMO_CLIENT_SECRET, **config) -> OneRosterClient:
    return OneRosterClient(
        base_url=srv.base_url,
        auth=auth,
        client_id=DEMO_CLIENT_ID,
        client_secret=secret,
        token_url=srv.token_url if auth == "oauth2" else "",
        **config,
    )


def read_all(client: OneRosterClient, path: str = "/users", keys: tuple[str, ...] = USERS, **kwargs):
    """(sourcedIds in the order read, page sizes, session stats)."""
    with client.open() as session:
        pages = list(session.iter_pages(path, envelope_keys=keys, **kwargs))
        return [r["sourcedId"] for page in pages for r in page], [len(p) for p in pages], session.stats.as_dict()


@pytest.fixture(scope="module")
def reference_ids() -> list[str]:
    """Every user, read fault-free with both paging headers and no cap: what every variant must match."""
    with DemoOneRosterServer(students=STUDENTS, seed=1) as srv:
        ids, _, _ = read_all(client_for(srv, page_size=50, max_concurrency=1))
    assert len(ids) == len(set(ids)) > STUDENTS
    return ids


# --- authentication ----------------------------------------------------------------------------------


@pytest.mark.parametrize("token_auth_method", ["client_secret_basic", "client_secret_post"])
def test_oauth2_reads_every_user(reference_ids, token_auth_method):
    with DemoOneRosterServer(students=STUDENTS, seed=1) as srv:
        client = client_for(srv, token_auth_method=token_auth_method, page_size=50)
        ids, sizes, stats = read_all(client)
        with client.open() as session:
            scopes = session.granted_scopes
    assert ids == reference_ids
    assert sizes[:-1] == [50] * (len(sizes) - 1)
    assert stats["pages_fetched"] == len(sizes) and stats["retries"] == 0
    assert scopes and all(s.startswith("https://purl.imsglobal.org/spec/or/v1p1/scope/") for s in scopes)


def test_oauth2_scope_is_requested_and_reported():
    core = "https://purl.imsglobal.org/spec/or/v1p1/scope/roster-core.readonly"
    with DemoOneRosterServer(students=10, seed=1) as srv:
        with client_for(srv, scope=core).open() as session:
            assert session.granted_scopes == [core]
            assert session.get("/orgs", params={"limit": 1})["orgs"]


def test_oauth2_secret_with_reserved_characters_in_basic_auth():
    secret = "p+ss:w%rd with space"
    with DemoOneRosterServer(students=10, seed=1, client_id=DEMO_CLIENT_ID, client_secret=secret) as srv:
        for method in ("client_secret_basic", "client_secret_post"):
            with client_for(srv, secret=secret, token_auth_method=method).open() as session:
                assert session.get("/orgs")["orgs"]


@pytest.mark.parametrize("signature_method", ["HMAC-SHA256", "HMAC-SHA1"])
def test_oauth1_reads_every_user(reference_ids, signature_method):
    with DemoOneRosterServer(students=STUDENTS, seed=1, auth="oauth1") as srv:
        client = client_for(srv, auth="oauth1", oauth1_signature_method=signature_method, page_size=50, max_concurrency=4)
        ids, _, stats = read_all(client)
        with client.open() as session:
            assert session.granted_scopes is None
    assert ids == reference_ids and stats["retries"] == 0


def test_oauth1_reads_through_faults(reference_ids):
    faults = FaultPlan(rate=0.0, statuses=(503,), retry_after_seconds=0, seed=7, first_n=3)
    with DemoOneRosterServer(students=STUDENTS, seed=1, auth="oauth1", faults=faults) as srv:
        ids, _, stats = read_all(client_for(srv, auth="oauth1", page_size=50))
    assert ids == reference_ids and stats["retries"] == 3


def test_wrong_oauth2_secret_is_a_clear_error_without_the_secret():
    wrong = "not-the-right-secret-4711"
    with DemoOneRosterServer(students=10, seed=1) as srv:
        token_url = srv.token_url
        with pytest.raises(OneRosterError) as caught, client_for(srv, secret=wrong).open() as session:
            list(session.iter_pages("/orgs", envelope_keys=("orgs",)))
    error = caught.value
    assert error.status_code == 401 and error.endpoint == token_url
    assert "invalid_client" in str(error) and "ONEROSTER_CLIENT_SECRET" in str(error)
    assert wrong not in str(error) and wrong not in repr(error)


def test_wrong_oauth1_secret_is_a_clear_error_without_the_secret():
    wrong = "not-the-right-secret-4711"
    with DemoOneRosterServer(students=10, seed=1, auth="oauth1") as srv:
        with pytest.raises(OneRosterError) as caught, client_for(srv, auth="oauth1", secret=wrong).open() as session:
            session.get("/orgs")
    error = caught.value
    assert error.status_code == 401 and error.endpoint == "/orgs"
    assert "/orgs" in str(error) and "ONEROSTER_CLIENT_SECRET" in str(error) and wrong not in str(error)


def test_token_is_renewed_before_it_expires():
    with DemoOneRosterServer(students=10, seed=1, token_ttl_seconds=2) as srv:
        with client_for(srv).open() as session:
            session.get("/orgs")
            session.get("/orgs")
            requests_with_one_token = session.stats.requests
            time.sleep(2.0)
            session.get("/orgs")  # would 401 with the first token
            assert session.stats.requests == requests_with_one_token + 2  # a token request, then the GET
            assert session.stats.retries == 0


def test_token_is_renewed_once_on_401():
    """The provider forgets its tokens (a restart): the client renews once and carries on."""
    with DemoOneRosterServer(students=10, seed=1) as srv:
        with client_for(srv).open() as session:
            session.get("/orgs")
            before = session.stats.requests
            srv.tokens = TokenIssuer(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, ttl_seconds=3600)  # forgets every token
            assert session.get("/orgs")["orgs"]
            assert session.stats.requests == before + 3  # 401, token request, GET again


# --- paging ------------------------------------------------------------------------------------------


def test_silent_page_cap_is_detected_and_paged_by(reference_ids):
    with DemoOneRosterServer(students=STUDENTS, seed=1, page_cap=30) as srv:
        ids, sizes, _ = read_all(client_for(srv, page_size=100, max_concurrency=3))
    assert ids == reference_ids
    assert sizes[:-1] == [30] * (len(sizes) - 1)


@pytest.mark.parametrize(
    "total_count, link", [(False, False), (False, True), (True, False)], ids=["no-headers", "link-only", "total-only"]
)
def test_missing_paging_headers(reference_ids, total_count, link):
    with DemoOneRosterServer(students=STUDENTS, seed=1, page_cap=40, send_total_count=total_count, send_link=link) as srv:
        ids, _, _ = read_all(client_for(srv, page_size=100))
    assert ids == reference_ids


def test_concurrent_pages_come_in_offset_order_with_bounded_read_ahead(reference_ids):
    with DemoOneRosterServer(students=STUDENTS, seed=1, latency_ms=20) as srv:
        client = client_for(srv, page_size=10, max_concurrency=3)
        with client.open() as session:
            pages = session.iter_pages("/users", envelope_keys=USERS)
            ids = [r["sourcedId"] for r in next(pages)]
            time.sleep(0.5)  # a slow consumer: the client must not read ahead more than 3 pages
            assert session.stats.pages_fetched <= 1 + 3
            ids += [r["sourcedId"] for page in pages for r in page]
            assert session.stats.pages_fetched == -(-len(reference_ids) // 10)
    assert ids == reference_ids


def test_rows_deleted_while_paging_concurrently_are_read_again_whole(reference_ids):
    """X-Total-Count falls: the read stops (CollectionShrank) and read_collection reads once more."""
    dropped = reference_ids[-30:]
    reads = []

    def consume(pages):
        ids = [r["sourcedId"] for r in next(pages)]
        if not reads:
            srv.store.drop_records("users", dropped)  # the SIS deletes users mid-read
        reads.append(ids)
        rest = list(pages)
        assert all(rest), "an empty page is the end, never yielded"
        return ids + [r["sourcedId"] for page in rest for r in page]

    with DemoOneRosterServer(students=STUDENTS, seed=1, latency_ms=10) as srv:
        with client_for(srv, page_size=50, max_concurrency=2).open() as session:
            ids = session.read_collection("/users", consume, envelope_keys=USERS)
    assert len(reads) == 2 and ids == reference_ids[:-30]


def test_a_failed_page_after_a_short_one_does_not_end_the_read():
    """Records deleted mid-read: the page at offset 3 comes back short and the provider refuses offsets
    past its new end with a 400. The short page (its total fell) ends the read before the refused pages
    (which arrived before it) are reached, as when pages are read one by one; the second read is whole."""
    total_at_first, total_now = 10, 5
    first_request = threading.Event()

    class ShrinkingProvider(QuietHandler):
        def do_POST(self):  # noqa: N802 - stdlib hook name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.answer(200, "application/json",
                        json.dumps({"access_token": "t", "token_type": "bearer", "expires_in": 3600}).encode())

        def do_GET(self):  # noqa: N802 - stdlib hook name
            query = dict(p.split("=") for p in self.path.partition("?")[2].split("&"))
            offset, limit = int(query["offset"]), int(query["limit"])
            total = total_now if first_request.is_set() else total_at_first
            first_request.set()
            if offset > total:
                self.answer(400, "application/json", json.dumps({"statusInfoSet": [
                    {"imsx_codeMajor": "failure", "imsx_severity": "error", "imsx_description": "offset beyond end"}]}).encode())
                return
            if offset == 3:
                time.sleep(0.3)  # the later pages (refused) arrive first
            users = [{"sourcedId": f"u{i}"} for i in range(offset, min(offset + limit, total))]
            self.answer(200, "application/json", json.dumps({"users": users}).encode(), {"X-Total-Count": str(total)})

    with serving(ShrinkingProvider) as root:
        client = OneRosterClient(base_url=root + "/ims/oneroster/v1p1", token_url=root + "/token",
                                 client_id=DEMO_CLIENT_ID, client_secret="s3cret-value", page_size=3,
                                 max_concurrency=4, max_retries=0)
        with client.open() as session:
            with pytest.raises(CollectionShrank):
                list(session.iter_pages("/users", envelope_keys=USERS))
            ids = session.read_collection(
                "/users", lambda pages: [r["sourcedId"] for page in pages for r in page], envelope_keys=USERS)
    assert ids == [f"u{i}" for i in range(total_now)]


def test_cap_that_shrinks_mid_read_skips_no_rows(reference_ids):
    with DemoOneRosterServer(students=STUDENTS, seed=1, latency_ms=10) as srv:
        with client_for(srv, page_size=50, max_concurrency=3).open() as session:
            pages = session.iter_pages("/users", envelope_keys=USERS)
            ids = [r["sourcedId"] for r in next(pages)]
            srv.page_cap = 20  # the provider starts capping pages (under load, say)
            ids += [r["sourcedId"] for page in pages for r in page]
    assert ids == reference_ids


def test_rows_added_while_paging_concurrently_are_read_too(reference_ids):
    added = [f"new-user-{i}" for i in range(3)]
    with DemoOneRosterServer(students=STUDENTS, seed=1) as srv:
        template = srv.store.get("users", reference_ids[0])
        with client_for(srv, page_size=50, max_concurrency=2).open() as session:
            pages = session.iter_pages("/users", envelope_keys=USERS)
            ids = [r["sourcedId"] for r in next(pages)]
            srv.store.upsert_records("users", [{**template, "sourcedId": i} for i in added])
            ids += [r["sourcedId"] for page in pages for r in page]
    assert ids == reference_ids + added


def test_delta_read_with_date_last_modified_filter(reference_ids):
    changed = [reference_ids[3], reference_ids[-2]]
    with DemoOneRosterServer(students=STUDENTS, seed=1) as srv:
        before_changes = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
        for sourced_id in changed:
            srv.store.set_status("users", sourced_id, "tobedeleted")  # a change on the SIS side
        delta = dateLastModified_filter(before_changes)
        ids, _, _ = read_all(client_for(srv, page_size=50), params={"filter": delta})
    assert sorted(ids) == sorted(changed)


# --- retries and errors ------------------------------------------------------------------------------


def test_injected_429_and_5xx_faults_give_the_same_result(reference_ids):
    faults = FaultPlan(rate=0.2, statuses=(429, 500, 502, 503, 504), retry_after_seconds=0, seed=7)
    with DemoOneRosterServer(students=STUDENTS, seed=1, faults=faults) as srv:
        ids, _, stats = read_all(client_for(srv, page_size=20, max_concurrency=4, max_retries=8))
    assert ids == reference_ids
    assert stats["retries"] > 0


def test_retry_after_is_honoured():
    faults = FaultPlan(rate=0.0, statuses=(429,), retry_after_seconds=1, seed=7, first_n=1)
    with DemoOneRosterServer(students=10, seed=1, faults=faults) as srv:
        with client_for(srv).open() as session:
            started = time.monotonic()
            assert session.get("/orgs")["orgs"]
            assert time.monotonic() - started >= 1.0 and session.stats.retries == 1


def test_retries_run_out_with_a_clear_error():
    faults = FaultPlan(rate=1.0, statuses=(503,), retry_after_seconds=0, seed=7)
    with DemoOneRosterServer(students=10, seed=1, faults=faults) as srv:
        with pytest.raises(OneRosterError) as caught, client_for(srv, auth="oauth1", max_retries=2).open() as session:
            session.get("/orgs")
    assert caught.value.status_code == 503 and "after 2 retries" in str(caught.value)


def test_4xx_fails_at_once_naming_endpoint_and_status_info():
    with DemoOneRosterServer(students=10, seed=1) as srv:
        with client_for(srv).open() as session:
            with pytest.raises(OneRosterError) as caught:
                list(session.iter_pages("/users", envelope_keys=USERS, params={"filter": "colour='blue'"}))
            assert session.stats.retries == 0
    error = caught.value
    assert error.status_code == 400 and error.endpoint == "/users"
    assert error.status_info.code_major == "failure" and error.status_info.code_minor == "invalid_filter_field"
    assert "/users" in str(error) and "invalid_filter_field" in str(error)


def test_vendor_header_is_sent_when_configured():
    vendor = {"x-vendor-authorization": "vendor-key:vendor-secret-99"}
    with DemoOneRosterServer(students=10, seed=1, required_headers=vendor) as srv:
        with pytest.raises(OneRosterError) as caught, client_for(srv).open() as session:
            session.get("/orgs")
        assert caught.value.status_code == 401
        with client_for(srv, extra_headers=vendor).open() as session:
            assert session.get("/orgs")["orgs"]
        with client_for(srv, extra_headers_json='{"x-vendor-authorization": "vendor-key:wrong-vendor-secret"}').open() as session:
            with pytest.raises(OneRosterError) as caught:
                session.get("/orgs")
            assert "wrong-vendor-secret" not in str(caught.value)


def test_a_provider_echoing_the_authorization_header_does_not_put_the_token_in_the_error():
    token, secret = "issued-access-token-8c1e", "client-secret-5d27"

    class EchoingProvider(QuietHandler):
        def do_POST(self):  # noqa: N802 - stdlib hook name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.answer(200, "application/json",
                        json.dumps({"access_token": token, "token_type": "bearer", "expires_in": 3600}).encode())

        def do_GET(self):  # noqa: N802 - stdlib hook name
            self.answer(400, "text/plain", f"malformed request; Authorization: {self.headers['Authorization']}".encode())

    with serving(EchoingProvider) as root:
        client = OneRosterClient(base_url=root + "/ims/oneroster/v1p1", token_url=root + "/token",
                                 client_id=DEMO_CLIENT_ID, client_secret=secret, max_retries=0)
        with client.open() as session, pytest.raises(OneRosterError) as caught:
            session.get("/orgs")
    assert caught.value.status_code == 400 and "malformed request" in str(caught.value)
    assert token not in str(caught.value) + repr(caught.value)


@pytest.mark.parametrize("auth", ["oauth2", "oauth1"])
def test_put_and_delete(tmp_path, auth):
    """Under OAuth 1 too: authlib's own signer would send the PUT body empty (the provider answers 422)."""
    category = {"category": {"sourcedId": "rb-cat-1", "status": "active", "title": "Homework"}}
    with DemoOneRosterServer(students=10, seed=1, auth=auth, state_path=str(tmp_path / "oneroster.sqlite")) as srv:
        with client_for(srv, auth=auth).open() as session:
            assert session.put("/categories/rb-cat-1", category).status_code == 201
            assert session.put("/categories/rb-cat-1", category).status_code == 200
            assert session.get("/categories/rb-cat-1")["category"]["title"] == "Homework"
            assert session.delete("/categories/rb-cat-1").status_code == 204
            with pytest.raises(OneRosterError) as caught:
                session.delete("/categories/rb-cat-1")
    assert caught.value.status_code == 404 and caught.value.endpoint == "/categories/rb-cat-1"


def test_session_is_shared_safely_between_threads(reference_ids):
    with DemoOneRosterServer(students=STUDENTS, seed=1, token_ttl_seconds=1) as srv:
        with client_for(srv, page_size=25, max_concurrency=2).open() as session:
            results: list[list[str]] = []

            def read() -> None:
                results.append([r["sourcedId"] for p in session.iter_pages("/users", envelope_keys=USERS) for r in p])

            threads = [threading.Thread(target=read) for _ in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    assert results == [reference_ids] * 3


def test_timeouts_are_retried_then_reported():
    with DemoOneRosterServer(students=10, seed=1, latency_ms=400, auth="oauth1") as srv:
        client = client_for(srv, auth="oauth1", timeout_seconds=0.1, max_retries=1)
        with pytest.raises(OneRosterError) as caught, client.open() as session:
            session.get("/orgs")
        assert session.stats.retries == 1 and session.stats.requests == 2
    assert caught.value.status_code is None and "after 1 retries: ReadTimeout" in str(caught.value)


def test_connection_errors_are_retried_then_reported():
    srv = DemoOneRosterServer(students=10, seed=1, auth="oauth1").start()
    client = client_for(srv, auth="oauth1", max_retries=1)
    srv.stop()  # nobody listens on that port any more
    with pytest.raises(OneRosterError) as caught, client.open() as session:
        session.get("/orgs")
    assert session.stats.retries == 1
    assert caught.value.endpoint == "/orgs" and "after 1 retries: ConnectError" in str(caught.value)
