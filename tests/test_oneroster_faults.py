"""The OneRoster client against providers that misbehave in one precise way, over real HTTP on 127.0.0.1:
an unreachable token endpoint, bad vendor headers, 200s that are failures or silently empty, deleted
records mid-read, a provider that ignores offset. Each must end in a clear error or a complete read,
never a hang, a leaked secret or a silently truncated collection."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from urllib.parse import parse_qsl

import dagster as dg
import httpx2
import pyarrow.parquet as pq
import pytest

from assets.extract import asset_key, extract_assets, write_snapshot
from pipeline.datadir import tonight
from pipeline.demo.oneroster_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DemoOneRosterServer
from pipeline.oneroster.records import PageConverter
from pipeline.oneroster.schema import ENTITIES
from pipeline.http import RetryPolicy, send_with_retries
from pipeline.resources.oneroster import CollectionShrank, OneRosterClient, OneRosterError, OneRosterSession
from pipeline.resources.oneroster_auth import Credentials
from tests.stub_http import QuietHandler, serving

USERS = ("users",)
# What a provider's GET handler returns: (status, headers, body).
Answer = tuple[int, dict[str, str], dict | bytes]


def schools(count: int, width: int = 4) -> list[dict]:
    return [{"sourcedId": f"o{i:0{width}d}", "status": "active", "dateLastModified": "2024-01-01T00:00:00Z",
             "name": f"School {i}", "type": "school"} for i in range(count)]


def users(count: int) -> list[dict]:
    return [{"sourcedId": f"u{i:05d}", "status": "active", "dateLastModified": "2024-01-01T00:00:00Z"} for i in range(count)]


@contextlib.contextmanager
def provider(answer: Callable[[dict[str, str]], Answer]) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A provider whose token endpoint always issues a token and whose API GETs are `answer(query)`;
    yields its root URL and the queries of the API GETs received."""
    queries: list[dict[str, str]] = []

    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802 - stdlib hook name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            token = {"access_token": "issued-token-4411", "token_type": "bearer", "expires_in": 3600}
            self.answer(200, "application/json", json.dumps(token).encode())

        def do_GET(self):  # noqa: N802 - stdlib hook name
            query = dict(parse_qsl(self.path.partition("?")[2]))
            queries.append(query)
            status, headers, body = answer(query)
            self.answer(status, "application/json", body if isinstance(body, bytes) else json.dumps(body).encode(), headers)

    with serving(Handler) as root:
        yield root, queries


def client(root: str, **config) -> OneRosterClient:
    settings = dict(client_id="client-id-3c9d", client_secret="client-secret-77ab", token_url=root + "/token")
    return OneRosterClient(base_url=root + "/ims/oneroster/v1p1", **{**settings, **config})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def within(seconds: float, work: Callable[[], object]) -> object:
    """What `work` returned or raised, failing the test if it has not finished within `seconds`."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (a deadlock?)"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome.get("value")


# --- authentication ----------------------------------------------------------------------------------


def test_an_unreachable_token_endpoint_is_a_prompt_error_naming_the_token_url():
    port = closed_port()
    token_url = f"http://127.0.0.1:{port}/oauth/token"
    unreachable = OneRosterClient(base_url=f"http://127.0.0.1:{port}/ims/oneroster/v1p1", token_url=token_url,
                                  client_id="client-id-3c9d", client_secret="client-secret-77ab", max_retries=1)

    def get_orgs():
        with unreachable.open() as session:
            return session.get("/orgs")

    with pytest.raises(OneRosterError) as caught:
        within(10, get_orgs)
    assert caught.value.endpoint == token_url and token_url in str(caught.value)
    assert "ConnectError" in str(caught.value) and "client-secret-77ab" not in str(caught.value)


@pytest.mark.parametrize("auth", ["oauth2", "oauth1"])
def test_a_provider_echoing_the_client_id_does_not_put_it_in_the_error(auth):
    """ONEROSTER_CLIENT_ID is a secret too: a token endpoint names the client in its error_description,
    an OAuth 1 provider quotes the Authorization header (oauth_consumer_key) back."""
    client_id = "district-client-7f3a9c"

    class Echoing(QuietHandler):
        def do_POST(self):  # noqa: N802 - stdlib hook name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            refusal = {"error": "invalid_client", "error_description": f"client {client_id} is disabled"}
            self.answer(401, "application/json", json.dumps(refusal).encode())

        def do_GET(self):  # noqa: N802 - stdlib hook name
            self.answer(401, "text/plain", f"invalid signature; received {self.headers['Authorization']}".encode())

    with serving(Echoing) as root:
        echoed = client(root, auth=auth, client_id=client_id, token_url=root + "/token" if auth == "oauth2" else "",
                        max_retries=0)
        with echoed.open() as session, pytest.raises(OneRosterError) as caught:
            session.get("/orgs")
    assert caught.value.status_code == 401
    assert ("is disabled" if auth == "oauth2" else "invalid signature") in str(caught.value)
    assert client_id not in str(caught.value) + repr(caught.value)


# --- records -----------------------------------------------------------------------------------------


def test_text_that_is_not_unicode_rejects_its_record_and_the_others_are_written(data_dir):
    """JSON can escape a lone UTF-16 surrogate (a name cut in the middle of an emoji); Python reads it,
    but no UTF-8 Parquet column can hold it: only that record is rejected, naming record and field."""
    body = json.dumps({"orgs": schools(300, width=1)})  # ASCII, so the escapes below stay escapes
    body = body.replace('"School 150"', '"Lincoln Elementary \\ud83d"').replace('"o210"', '"o210-\\udc00"')
    body = body.replace('"School 250"', '"Smile \\ud83d\\ude00"')  # a whole pair is fine
    entity = ENTITIES["orgs"]
    with provider(lambda query: (200, {"X-Total-Count": "300"}, body.encode())) as (root, _):
        with client(root, page_size=1000).open() as session:
            pages = session.iter_pages(entity.path, envelope_keys=entity.envelope_keys,
                                       decode=PageConverter(entity).decode_many)
            report = write_snapshot(entity, pages, data_dir, "2026-11-26")
    assert (report.rows, report.rejected_records) == (298, 2)
    written = pq.read_table(report.path).to_pylist()
    assert {"o150", "o210-\udc00"}.isdisjoint(r["sourcedId"] for r in written)
    assert next(r["name"] for r in written if r["sourcedId"] == "o250") == "Smile \U0001f600"
    rejects = sorted(pq.read_table(report.rejects_path).to_pylist(), key=lambda r: r["field"])
    assert [(r["sourcedId"], r["rule"], r["field"]) for r in rejects] == [
        ("o150", "wrong_type", "name"), ("o210-\\udc00", "wrong_type", "sourcedId")]
    assert all("is not valid Unicode" in r["message"] for r in rejects)
    assert json.loads(rejects[0]["record"])["name"] == "Lincoln Elementary \ud83d"


# --- vendor headers ----------------------------------------------------------------------------------


def test_a_vendor_header_value_with_a_control_character_is_refused_before_any_request():
    """A trailing newline copied from a secrets file: h11 would refuse every request (and its error
    quotes the value); the configuration is refused first, naming the header but not its value."""
    with provider(lambda query: (200, {}, {"orgs": []})) as (root, queries):
        bad = client(root, extra_headers_json='{"x-vendor-authorization": "VENDORKEY:VENDORSECRET-123\\n"}')
        with pytest.raises(ValueError) as caught:
            bad.open()
    assert "x-vendor-authorization" in str(caught.value) and "control character" in str(caught.value)
    assert "VENDORSECRET" not in str(caught.value) and queries == []


def test_an_unsendable_request_fails_at_once_without_quoting_the_header():
    """Below the configuration check: whatever makes httpx refuse to send a request is not retried (it
    cannot succeed), and its text, which quotes the header, stays out of the error."""
    secret = "VENDORKEY:VENDORSECRET-456\r"
    with provider(lambda query: (200, {}, {"orgs": []})) as (root, queries):
        session = OneRosterSession(
            base_url=root + "/ims/oneroster/v1p1",
            credentials=Credentials(scheme="oauth2", client_id="client-id-3c9d", client_secret="client-secret-77ab",
                                    token_url=root + "/token"),
            extra_headers={"x-vendor-authorization": secret}, page_size=10, max_concurrency=1,
            timeout_seconds=5, retry_policy=RetryPolicy(max_retries=3),
        )
        with session, pytest.raises(OneRosterError) as caught:
            session.get("/orgs")
    assert "LocalProtocolError" in str(caught.value) and "ONEROSTER_EXTRA_HEADERS" in str(caught.value)
    assert "VENDORSECRET" not in str(caught.value) + repr(caught.value)
    assert session.stats.retries == 0 and queries == []


def test_a_secret_echoed_in_escaped_form_is_redacted_too():
    """A provider quoting the vendor header back inside a JSON string escapes its quote and backslash."""
    secret = 'key:se"cr\\et-789'

    def refuse(query: dict[str, str]) -> Answer:
        return 401, {}, json.dumps({"error": f"unknown vendor key {secret}"}).encode()

    with provider(refuse) as (root, _):
        echoed = client(root, extra_headers={"x-vendor-authorization": secret}, max_retries=0)
        with echoed.open() as session, pytest.raises(OneRosterError) as caught:
            session.get("/orgs")
    assert caught.value.status_code == 401 and "unknown vendor key" in str(caught.value)
    assert "cr\\\\et" not in str(caught.value) and "se\\\"cr" not in str(caught.value)


# --- Retry-After -------------------------------------------------------------------------------------


def test_a_long_retry_after_is_waited_for_as_told():
    """Retry-After: 300 is honoured (a fake clock: nothing sleeps), not cut to 30 s, which only met the
    rate limiter five more times and gave up."""
    clock = {"now": 0.0}
    with provider(lambda query: (429, {"Retry-After": "300"}, {}) if clock["now"] < 300 else (200, {}, {"orgs": []})) as (
        root, queries), httpx2.Client() as http:
        response = send_with_retries(
            lambda: http.get(root + "/ims/oneroster/v1p1/orgs"),
            RetryPolicy(max_retries=5, retry_after_max_seconds=OneRosterClient().max_retry_after_seconds),
            sleep=lambda seconds: clock.update(now=clock["now"] + seconds),
        )
    assert response.status_code == 200 and len(queries) == 2
    assert 300 <= clock["now"] <= 301  # as told, plus at most a second of jitter


def test_a_retry_after_beyond_the_cap_fails_at_once_saying_so():
    with provider(lambda query: (429, {"Retry-After": "3600"}, {})) as (root, queries):
        limited = client(root, max_retries=5, max_retry_after_seconds=600)
        with limited.open() as session, pytest.raises(OneRosterError) as caught:
            within(5, lambda: session.get("/orgs"))
    assert caught.value.status_code == 429 and len(queries) == 1 and session.stats.retries == 0
    assert "Retry-After 3600 is longer than the 600 s this client waits" in str(caught.value)


# --- pages that end a collection early ---------------------------------------------------------------


def paged(records: list[dict], key: str = "users", total: int | None = None) -> Callable[[dict[str, str]], Answer]:
    """A well-behaved provider of `records` by limit/offset, with X-Total-Count."""
    def answer(query: dict[str, str]) -> Answer:
        offset, limit = int(query.get("offset", 0)), int(query.get("limit", 100))
        return 200, {"X-Total-Count": str(len(records) if total is None else total)}, {key: records[offset:offset + limit]}
    return answer


def once_at(offset: int, glitch: Answer, then: Callable[[dict[str, str]], Answer], times: int = 1):
    """`then`, except that the first `times` requests for `offset` get `glitch`."""
    left = {"glitches": times}

    def answer(query: dict[str, str]) -> Answer:
        if int(query.get("offset", 0)) == offset and left["glitches"] > 0:
            left["glitches"] -= 1
            return glitch
        return then(query)
    return answer


def read_ids(root: str, path: str = "/users", keys: tuple[str, ...] = USERS, **config) -> tuple[list[str], dict]:
    with client(root, **config).open() as session:
        ids = [r["sourcedId"] for page in session.iter_pages(path, envelope_keys=keys) for r in page]
        return ids, session.stats.as_dict()


BUSY = {"statusInfoSet": [{"imsx_codeMajor": "failure", "imsx_severity": "error",
                           "imsx_CodeMinor": {"imsx_codeMinorField": [
                               {"imsx_codeMinorFieldName": "TargetEndSystem", "imsx_codeMinorFieldValue": "server_busy"}]},
                           "imsx_description": "database unavailable"}]}


@pytest.mark.parametrize("max_concurrency", [1, 4])
@pytest.mark.parametrize("glitch", [
    (200, {"X-Total-Count": "1000"}, {"users": []}),
    (200, {"X-Total-Count": "1000"}, {}),
    (200, {}, BUSY),
], ids=["empty-page", "empty-object", "server-busy"])
def test_a_page_the_provider_fails_to_fill_is_asked_again_and_the_read_is_whole(max_concurrency, glitch):
    """Ending the collection at such a page would truncate the snapshot, and Canvas diffing would then
    delete every record after it."""
    everyone = users(1000)
    with provider(once_at(300, glitch, paged(everyone))) as (root, queries):
        ids, stats = read_ids(root, page_size=100, max_concurrency=max_concurrency, max_retries=2)
    assert ids == [u["sourcedId"] for u in everyone]
    assert stats["retries"] == 1 and [q["offset"] for q in queries].count("300") == 2


@pytest.mark.parametrize("offset", [0, 300])
def test_a_page_that_stays_empty_fails_naming_the_collection_offset_and_total(offset):
    empty = (200, {"X-Total-Count": "1000"}, {"users": []})
    with provider(once_at(offset, empty, paged(users(1000)), times=99)) as (root, queries):
        with pytest.raises(OneRosterError) as caught:
            read_ids(root, page_size=100, max_concurrency=4, max_retries=1)
    message = str(caught.value)
    assert caught.value.endpoint == "/users" and f"offset={offset}" in message
    assert "X-Total-Count says 1000" in message and "after 1 retries" in message


def test_a_200_with_a_failure_status_is_an_error_not_an_empty_collection():
    refusal = {"statusInfoSet": [{"imsx_codeMajor": "failure", "imsx_severity": "error",
                                  "imsx_codeMinor": "unauthorisedrequest", "imsx_description": "no access to users"}]}
    with provider(lambda query: (200, {}, refusal)) as (root, queries):
        with pytest.raises(OneRosterError) as caught:
            read_ids(root, max_retries=3)
    assert caught.value.status_code == 200 and caught.value.status_info.code_minor == "unauthorisedrequest"
    assert "failure status" in str(caught.value) and "no access to users" in str(caught.value)
    assert len(queries) == 1  # not worth retrying, unlike server_busy


def test_a_server_busy_that_persists_fails_after_the_retries():
    with provider(lambda query: (200, {}, BUSY)) as (root, queries):
        with pytest.raises(OneRosterError) as caught:
            read_ids(root, max_retries=1)
    assert caught.value.status_info.code_minor == "server_busy" and "after 1 retries" in str(caught.value)
    assert len(queries) == 2


def test_a_single_get_answered_200_with_a_failure_status_is_an_error():
    refusal = {"statusInfoSet": {"imsx_codeMajor": "failure", "imsx_severity": "error", "imsx_codeMinor": "unknownobject"}}
    with provider(lambda query: (200, {}, refusal)) as (root, _):
        with client(root).open() as session, pytest.raises(OneRosterError) as caught:
            session.get("/classes/c1")
    assert caught.value.status_code == 200 and caught.value.status_info.code_minor == "unknownobject"
    assert caught.value.endpoint == "/classes/c1"

def test_an_empty_collection_answered_with_an_empty_object_is_still_empty():
    with provider(lambda query: (200, {}, {})) as (root, _):
        assert read_ids(root)[0] == []


def test_a_read_that_ends_short_of_the_total_fails_saying_how_short():
    """The page cap shrinks at offset 300 (so the read goes on page by page), and that page's Link header
    says it is the last: 350 of 1000 records."""
    everyone = users(1000)

    def answer(query: dict[str, str]) -> Answer:
        status, headers, body = paged(everyone)(query)
        if query["offset"] == "300":
            return status, {**headers, "Link": '<https://sis.example/first>; rel="first"'}, {"users": everyone[300:350]}
        return status, headers, body

    with provider(answer) as (root, _):
        with pytest.raises(OneRosterError) as caught:
            read_ids(root, page_size=100, max_concurrency=2)
    assert "ended the collection after 350 records, but its X-Total-Count says 1000" in str(caught.value)


# --- records deleted mid-read ------------------------------------------------------------------------


def test_a_record_deleted_mid_read_never_makes_another_live_record_vanish():
    """Offset paging: deleting a record already read moves every later row up one place, so the first
    row of each later page slips into the page before it, already read. The total falls, the read stops,
    and the second read sees every live record."""
    with DemoOneRosterServer(students=60, seed=1) as srv:
        demo = OneRosterClient(base_url=srv.base_url, token_url=srv.token_url, client_id=DEMO_CLIENT_ID,
                               client_secret=DEMO_CLIENT_SECRET, page_size=50, max_concurrency=1)
        with demo.open() as session:
            before = [r["sourcedId"] for p in session.iter_pages("/users", envelope_keys=USERS) for r in p]
            reads = []

            def consume(pages: Iterator) -> list[str]:
                ids = [r["sourcedId"] for r in next(pages)]
                if not reads:
                    srv.store.drop_records("users", [before[10]])  # the SIS deletes a user already read
                reads.append(ids)
                return ids + [r["sourcedId"] for page in pages for r in page]

            ids = session.read_collection("/users", consume, envelope_keys=USERS)
    assert len(reads) == 2 and ids == before[:10] + before[11:]


def test_deletions_during_the_second_read_too_fail_with_a_clear_error():
    with DemoOneRosterServer(students=60, seed=1) as srv:
        demo = OneRosterClient(base_url=srv.base_url, token_url=srv.token_url, client_id=DEMO_CLIENT_ID,
                               client_secret=DEMO_CLIENT_SECRET, page_size=50, max_concurrency=2)
        with demo.open() as session:
            def consume(pages: Iterator) -> list:
                first = next(pages)
                srv.store.drop_records("users", [first[0]["sourcedId"]])  # deletions go on and on
                return [*first, *(r for page in pages for r in page)]

            with pytest.raises(CollectionShrank) as caught:
                session.read_collection("/users", consume, envelope_keys=USERS)
    assert "X-Total-Count fell" in str(caught.value) and "second read too" in str(caught.value)
    assert "run again later" in str(caught.value) and caught.value.endpoint == "/users"


def test_the_extract_asset_reads_again_and_writes_every_live_record(data_dir, instance):
    """End to end through oneroster/orgs: the SIS deletes an org already read while the asset reads."""
    orgs = schools(1000)
    served = {"pages": 0}

    def answer(query: dict[str, str]) -> Answer:
        served["pages"] += 1
        if served["pages"] == 2:
            del orgs[5]  # between the first page and the others
        return paged(orgs, key="orgs")(query)

    asset = next(a for a in extract_assets if a.key == asset_key("orgs"))
    with provider(answer) as (root, queries):
        result = dg.materialize([asset], instance=instance, raise_on_error=False,
                                resources={"oneroster": client(root, page_size=100, max_concurrency=4),
                                           "data_dir": data_dir})
    assert result.success
    written = pq.read_table(data_dir.entity_path(tonight(), "orgs")).column("sourcedId").to_pylist()
    assert written == [o["sourcedId"] for o in orgs] and len(written) == 999
    assert [q["offset"] for q in queries].count("0") == 2  # read twice


def test_the_extract_asset_fails_and_writes_nothing_when_a_page_stays_empty(data_dir, instance):
    orgs = schools(1000)
    empty = (200, {"X-Total-Count": "1000"}, {"orgs": []})
    asset = next(a for a in extract_assets if a.key == asset_key("orgs"))
    with provider(once_at(300, empty, paged(orgs, key="orgs"), times=99)) as (root, _):
        result = dg.materialize([asset], instance=instance, raise_on_error=False,
                                resources={"oneroster": client(root, page_size=100, max_retries=1),
                                           "data_dir": data_dir})
    assert not result.success
    assert not data_dir.entity_path(tonight(), "orgs").exists()


# --- providers that would page forever ---------------------------------------------------------------


@pytest.mark.parametrize("decoded", [False, True], ids=["records", "decoded"])
def test_a_provider_ignoring_offset_is_stopped_at_the_first_repeated_page(decoded):
    """No X-Total-Count, no Link, and the same page whatever the offset: the read would never end."""
    same = users(50)
    entity = ENTITIES["users"]
    with provider(lambda query: (200, {}, {"users": same})) as (root, queries):
        with client(root, page_size=1000).open() as session, pytest.raises(OneRosterError) as caught:
            within(10, lambda: list(session.iter_pages(
                "/users", envelope_keys=USERS, decode=PageConverter(entity).decode_many if decoded else None)))
    assert "repeats the page before it" in str(caught.value) and "ignore offset" in str(caught.value)
    assert len(queries) == 2


def test_a_link_next_that_leads_back_to_a_page_already_read_is_stopped():
    everyone = users(30)

    def answer(query: dict[str, str]) -> Answer:
        start = int(query.get("cursor", 0))
        # A cursor-paging provider whose next link gets stuck: page 2 links to itself.
        link = f'<{root}/ims/oneroster/v1p1/users?cursor={min(start + 10, 10)}>; rel="next"'
        return 200, {"Link": link}, {"users": everyone[start:start + 10]}

    with provider(answer) as (root, queries):
        with pytest.raises(OneRosterError) as caught:
            within(10, lambda: read_ids(root, page_size=10))
    assert "Link rel=next leads back to a page already read" in str(caught.value)
    assert [q.get("cursor") for q in queries] == [None, "10"]



def test_a_failure_status_on_a_200_echoing_secrets_keeps_them_out_of_the_error():
    def answer(query):
        refusal = {"statusInfoSet": [{"imsx_codeMajor": "failure", "imsx_severity": "error",
                                      "imsx_codeMinor": "unauthorisedrequest",
                                      "imsx_description": "vendor key VENDORKEY:VSECRET-9 not valid"}]}
        return 200, {}, refusal

    with provider(answer) as (root, _):
        session_client = client(root, extra_headers={"x-vendor-authorization": "VENDORKEY:VSECRET-9"}, max_retries=0)
        with session_client.open() as session:
            for call in (lambda: session.get("/orgs"), lambda: list(session.iter_pages("/orgs", envelope_keys=("orgs",)))):
                with pytest.raises(OneRosterError) as caught:
                    call()
                assert "unauthorisedrequest" in str(caught.value) and "VSECRET-9" not in str(caught.value)


def test_records_added_during_a_concurrent_read_are_not_taken_for_a_deletion():
    records = schools(9)
    lock = threading.Lock()
    slow_page_served = threading.Event()

    first_pages = []

    def answer(query):
        offset = int(query.get("offset", 0))
        if offset == 0:
            first_pages.append(offset)
        if offset == 3:
            slow_page_served.wait(5)  # served after the insert below, as a slow page would be
        with lock:
            total, rows = len(records), records[offset:offset + 3]
            if offset == 6:  # the SIS adds a school right after serving this page
                records.append({**records[0], "sourcedId": f"new{len(records)}"})
                slow_page_served.set()
        return 200, {"X-Total-Count": str(total)}, {"orgs": rows}

    with provider(answer) as (root, _):
        with client(root, max_concurrency=4, page_size=3).open() as session:
            read = session.read_collection("/orgs", lambda pages: [r["sourcedId"] for p in pages for r in p],
                                           envelope_keys=("orgs",))
    assert read[:9] == [r["sourcedId"] for r in schools(9)]
    assert len(first_pages) == 1  # one read: nothing was taken for a deletion


def test_passback_reads_the_sis_categories_again_when_one_is_deleted_during_the_read():
    from pipeline.passback.objects import fetch_sis_categories

    categories = [{"sourcedId": f"cat{i}", "status": "active", "title": f"T{i}"} for i in range(10)]
    categories[4]["status"] = "Inactive"
    calls = []

    def answer(query):
        calls.append(query)
        offset = int(query.get("offset", 0))
        total = 10 if len(calls) == 1 else 9  # one category deleted after the first page
        return 200, {"X-Total-Count": str(total)}, {"categories": categories[:total][offset:offset + 3]}

    with provider(answer) as (root, _):
        with client(root, max_concurrency=1, page_size=3).open() as session:
            read = fetch_sis_categories(session)
    assert read.column("sourcedId").to_pylist() == [f"cat{i}" for i in range(9) if i != 4]
