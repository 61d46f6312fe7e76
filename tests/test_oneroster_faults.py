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

import httpx2
import pyarrow.parquet as pq
import pytest

from assets.extract import write_snapshot
from pipeline.oneroster.records import PageConverter
from pipeline.oneroster.schema import ENTITIES
from pipeline.http import RetryPolicy, send_with_retries
from pipeline.resources.oneroster import OneRosterClient, OneRosterError, OneRosterSession
from pipeline.resources.oneroster_auth import Credentials
from tests.stub_http import QuietHandler, serving

USERS = ("users",)
# What a provider's GET handler returns: (status, headers, body).
Answer = tuple[int, dict[str, str], dict | bytes]


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
    orgs = [{"sourcedId": f"o{i}", "status": "active", "dateLastModified": "2024-01-01T00:00:00Z",
             "name": f"School {i}", "type": "school"} for i in range(300)]
    body = json.dumps({"orgs": orgs})  # ASCII, so the escapes below stay escapes
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
