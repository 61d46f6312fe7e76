"""The OneRoster 1.1 REST client: a Dagster resource that opens sessions against one provider.

A session owns one httpx2.Client shared by its worker threads. It authenticates (see oneroster_auth),
retries what is worth retrying (pipeline.http), turns every other failure into a `OneRosterError` that
names the endpoint and the provider's statusInfoSet, and pages collections by limit/offset. When the
provider reports X-Total-Count the remaining pages are fetched concurrently (`max_concurrency` requests
at once), yet yielded in offset order, with at most READ_AHEAD × `max_concurrency` pages held at once.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import httpx2
from pydantic import Field

from pipeline import settings
from pipeline.http import UNSENDABLE, RetryPolicy, redact, send_with_retries
from pipeline.resources.oneroster_auth import (
    OAUTH1_SIGNATURE_METHODS,
    TOKEN_AUTH_METHODS,
    Credentials,
    TokenRequestError,
    request_auth,
)

BASE_PATH = "/ims/oneroster/v1p1"
AUTH_SCHEMES = ("oauth2", "oauth1")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

log = dg.get_dagster_logger("rosterbridge.oneroster")

# Pages fetched ahead of the consumer, per request in flight. With only one, every request slot idles
# while the consumer is busy (converting a batch, writing a Parquet row group): requests wait for the
# consumer instead of for the provider. A few pages ahead keep the requests going through such bursts.
READ_AHEAD = 4


@functools.cache
def _tls_context():
    """httpx2's default verifying TLS context (CA bundle, SSL_CERT_FILE as at first use), built once per
    process: loading the CA bundle takes about 20 ms, which every session (one per asset) paid."""
    return httpx2.create_ssl_context()

# Reads the rows of pages from their JSON bodies, several at once, or returns None for a page to leave
# it to the client's own JSON parsing (which also checks the envelope and reports a statusInfoSet). A
# decoded page may offer `sourced_id(index)`, so that telling a repeated page needs no record parsed.
PageDecoder = Callable[[Sequence[bytes]], list[Sequence | None]]
T = TypeVar("T")
# Pages whose bodies are read by one PageDecoder call when they have arrived together.
DECODE_BATCH_PAGES = 16


# --- Errors ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusInfo:
    """One imsx_StatusInfo of a provider's statusInfoSet, whatever shape the provider wrote it in."""

    code_major: str | None = None
    severity: str | None = None
    code_minor: str | None = None
    description: str | None = None

    def __str__(self) -> str:
        parts = [
            f"{label}={value}"
            for label, value in (
                ("codeMajor", self.code_major),
                ("severity", self.severity),
                ("codeMinor", self.code_minor),
                ("description", self.description),
            )
            if value
        ]
        return ", ".join(parts)


class OneRosterError(Exception):
    """A OneRoster call failed. `endpoint` is the path (e.g. "/users"), `status_code` the HTTP status
    (None for a transport failure), `status_info` the provider's statusInfoSet entry when it sent one."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str,
        status_code: int | None = None,
        status_info: StatusInfo | None = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status_code = status_code
        self.status_info = status_info

    def __reduce__(self):
        # Keyword-only fields: without this the error cannot cross a process boundary (pickle).
        return _rebuild_error, (type(self), str(self), self.endpoint, self.status_code, self.status_info)


class CollectionShrank(OneRosterError):
    """X-Total-Count fell while a collection was read: records were deleted meanwhile, and offset paging
    may have skipped a live record. Reading again (`OneRosterSession.read_collection`) gets it whole."""


def _rebuild_error(
    kind: type[OneRosterError], message: str, endpoint: str, status_code: int | None, status_info: StatusInfo | None
) -> OneRosterError:
    return kind(message, endpoint=endpoint, status_code=status_code, status_info=status_info)


def parse_status_info(payload: Any) -> StatusInfo | None:
    """The most relevant status of a response body (its first failure, else its first entry).

    Accepts `statusInfoSet` as a list or a single object, `imsx_` or bare keys in any case, codeMinor as
    the nested `imsx_CodeMinor.imsx_codeMinorField[].imsx_codeMinorFieldValue`, a flat string, or the
    older `{CodeMajor, Severity, CodeMinor, Description}` shape.
    """
    if not isinstance(payload, Mapping):
        return None
    entries: Any = None
    for key, value in payload.items():
        if _bare(key) in ("statusinfoset", "statusinfo"):
            entries = value
            break
    if entries is None and any(_bare(k) in ("codemajor", "codeminor") for k in payload):
        entries = payload
    if isinstance(entries, Mapping):
        entries = [entries]
    if not isinstance(entries, list):
        return None
    infos = [_status_info(e) for e in entries if isinstance(e, Mapping)]
    if not infos:
        return None
    failures = [i for i in infos if (i.code_major or "").lower() == "failure"]
    return (failures or infos)[0]


def _says_busy(status: StatusInfo | None) -> bool:
    """A statusInfoSet asking to come back later (codeMinor server_busy): retried like an HTTP 503."""
    return status is not None and "server_busy" in (status.code_minor or "").lower()


def _bare(key: Any) -> str:
    key = str(key).lower()
    return key.removeprefix("imsx_")


def _status_info(entry: Mapping) -> StatusInfo:
    fields = {_bare(k): v for k, v in entry.items()}
    return StatusInfo(
        code_major=_text(fields.get("codemajor")),
        severity=_text(fields.get("severity")),
        code_minor=_code_minor(fields.get("codeminor")),
        description=_text(fields.get("description")),
    )


def _code_minor(value: Any) -> str | None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if _bare(key) in ("codeminorfield", "codeminorfieldvalue"):
                return _code_minor(inner)
        return None
    if isinstance(value, list):
        found = [v for v in (_code_minor(item) for item in value) if v]
        return ", ".join(found) or None
    return _text(value)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (Mapping, list)):
        return None
    text = str(value).strip()
    return text or None


# --- Filters -----------------------------------------------------------------------------------------


def filter_expression(field_name: str, operator: str, value: str) -> str:
    """One OneRoster filter predicate, e.g. `status='active'`; a quote in the value is doubled."""
    if operator not in ("=", "!=", ">", ">=", "<", "<=", "~"):
        raise ValueError(f"unsupported OneRoster filter operator {operator!r}")
    return f"{field_name}{operator}'{value.replace(chr(39), chr(39) * 2)}'"


def dateLastModified_filter(since: dt.datetime) -> str:  # noqa: N802 (named after the OneRoster field)
    """`dateLastModified>'2024-05-01T12:00:00Z'` for delta reads: pass as params={"filter": ...}.

    Fractions of a second are cut to milliseconds, downwards, so no change is ever skipped.
    """
    if since.tzinfo is None:
        raise ValueError("dateLastModified_filter needs a timezone-aware datetime (UTC is what providers store)")
    utc = since.astimezone(dt.timezone.utc)
    stamp = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        stamp += f".{utc.microsecond // 1000:03d}"
    return filter_expression("dateLastModified", ">", stamp + "Z")


# --- Counters ----------------------------------------------------------------------------------------


@dataclass
class FetchStats:
    """What a session sent: HTTP requests (token requests and re-sends included), pages, retries."""

    requests: int = 0
    pages_fetched: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, requests: int = 0, pages_fetched: int = 0, retries: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.pages_fetched += pages_fetched
            self.retries += retries

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {"requests": self.requests, "pages_fetched": self.pages_fetched, "retries": self.retries}


# --- Session -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    offset: int
    rows: Sequence  # the records, or what a PageDecoder made of them
    total: int | None  # X-Total-Count, when the provider sends it
    next_link: str | None  # Link rel="next" as sent (see `OneRosterSession._same_origin`)
    request_url: httpx2.URL  # what the link is relative to
    says_last: bool  # the provider sends Link headers and this page has no rel="next"


@dataclass
class _Read:
    """One read of a collection: what it asks for, and what it has seen so far, to catch a provider that
    ends the collection short, shrinks it during the read or repeats a page."""

    path: str
    envelope_keys: tuple[str, ...]
    params: Mapping[str, Any] | None
    decode: PageDecoder | None
    rows: int = 0  # yielded so far
    total: int | None = None  # the largest X-Total-Count seen
    first_total: int | None = None  # the X-Total-Count of the first page answered with one
    edges: tuple[Any, Any] | None = None  # sourcedIds of the first and last record of the page yielded last

    def saw_total(self, page: Page) -> None:
        if page.total is None:
            return
        # Below the first total, not below the largest: pages are asked for concurrently, so a page the
        # provider served before a record was added can arrive after one served after it.
        if self.first_total is not None and page.total < self.first_total:
            raise CollectionShrank(
                f"GET {self.path}: X-Total-Count fell from {self.first_total} to {page.total} during the read (records "
                "deleted meanwhile: the rows after them moved up, and one may have slipped into a page already read)",
                endpoint=self.path,
            )
        if self.first_total is None:
            self.first_total = page.total
        self.total = max(self.total or 0, page.total)

    def counted(self, rows: Sequence, *, offset: int) -> Sequence:
        edges = _edge_ids(rows)
        if edges == self.edges and None not in edges:
            raise OneRosterError(
                f"GET {self.path} offset={offset} repeats the page before it (first and last sourcedId {edges[0]!r} "
                f"and {edges[1]!r}): the provider seems to ignore offset; stopping rather than reading the same "
                "records forever",
                endpoint=self.path,
            )
        self.edges = edges
        self.rows += len(rows)
        return rows

    def check_complete(self) -> None:
        if self.total is not None and self.rows < self.total:
            raise OneRosterError(
                f"GET {self.path}: the provider ended the collection after {self.rows} records, but its "
                f"X-Total-Count says {self.total}",
                endpoint=self.path,
            )


def _edge_ids(rows: Sequence) -> tuple[Any, Any]:
    """The sourcedIds of a page's first and last record (None where a record has none)."""
    if not rows:
        return None, None
    sourced_id = getattr(rows, "sourced_id", None)
    if sourced_id is not None:
        return sourced_id(0), sourced_id(-1)
    return tuple(r.get("sourcedId") if isinstance(r, Mapping) else None for r in (rows[0], rows[-1]))


class OneRosterSession:
    """An open connection to one provider. Thread-safe; close it (or use it as a context manager)."""

    def __init__(
        self,
        *,
        base_url: str,
        credentials: Credentials,
        extra_headers: Mapping[str, str],
        page_size: int,
        max_concurrency: int,
        timeout_seconds: float,
        retry_policy: RetryPolicy,
    ) -> None:
        self.base_url = base_url
        self.stats = FetchStats()
        self.page_size = page_size
        self.max_concurrency = max_concurrency
        self._auth, self._tokens = request_auth(credentials, self._post_token_request)
        self._headers = {"Accept": "application/json", **extra_headers}
        self._policy = retry_policy
        # Redacted from every message we build, in case a provider echoes them back (a token endpoint's
        # error_description naming the client, an OAuth 1 error quoting oauth_consumer_key).
        self._secrets = tuple(
            s for s in (credentials.client_secret, credentials.client_id, *extra_headers.values()) if len(s) >= 4
        )
        # httpx2's default pool (100 connections): callers' threads (paging, passback writers) bound
        # the concurrency, and a tighter pool would only make them queue for a connection.
        self._http = httpx2.Client(
            timeout=timeout_seconds,
            verify=_tls_context(),
            event_hooks={"request": [lambda _request: self.stats.add(requests=1)]},
        )

    def __repr__(self) -> str:
        return f"OneRosterSession(base_url={self.base_url!r}, auth={self._auth!r})"

    def __enter__(self) -> OneRosterSession:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def granted_scopes(self) -> list[str] | None:
        """Scopes in the token response (fetching the token if need be); None for OAuth 1 or when unsaid."""
        if self._tokens is None:
            return None
        try:
            return self._tokens.current().scopes
        except TokenRequestError as exc:
            raise self._token_error(exc) from None

    # --- single calls ---------------------------------------------------------------------------
    def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict:
        response = self._call("GET", path, params=params, ok=(200,))
        payload = self._json_object("GET", path, response)
        self._raise_failure_status(path, response, parse_status_info(payload))
        return payload

    def put(self, path: str, body: dict) -> httpx2.Response:
        """Create-or-replace (OneRoster 1.1 has no POST); 200, 201 and 204 are success."""
        return self._call("PUT", path, json_body=body, ok=(200, 201, 204))

    def delete(self, path: str) -> httpx2.Response:
        return self._call("DELETE", path, ok=(200, 204))

    # --- collections ----------------------------------------------------------------------------
    def iter_pages(
        self,
        path: str,
        *,
        envelope_keys: tuple[str, ...],
        params: Mapping[str, Any] | None = None,
        decode: PageDecoder | None = None,
    ) -> Iterator[Sequence]:
        """Every page of a collection, in offset order.

        The first page tells the effective page size (providers may cap `limit` silently) and, through
        X-Total-Count, how many rows there are. With a total the other pages are fetched concurrently;
        without one they are fetched one after another, following Link rel="next" when present, until
        an empty page. Pages are lists of records, or what `decode` made of a page's body where it did
        not decline.

        A read never ends short of the provider's total in silence: a page left empty where the total
        says rows remain, or a 200 whose statusInfoSet says server_busy, is asked for again and then
        fails, as does a read that ends with fewer rows than the total; a 200 whose statusInfoSet says
        failure is an error. A page that repeats the one before (a provider ignoring offset) fails
        rather than loop. When the total falls (records deleted mid-read, so a live record may have
        moved into a page already read) `CollectionShrank` is raised: `read_collection` reads again.
        """
        read = _Read(path, envelope_keys, params, decode)
        first = self._checked_page(read, offset=0, limit=self.page_size)
        if first.rows:
            yield read.counted(first.rows, offset=0)
            # The provider's page size, capped or not: paging by it is what makes offsets line up.
            step = len(first.rows)
            if first.total is not None:
                yield from self._pages_concurrently(read, step=step, total=first.total)
            else:
                yield from self._pages_in_sequence(read, previous=first, step=step)
        read.check_complete()

    def read_collection(
        self,
        path: str,
        consume: Callable[[Iterator[Sequence]], T],
        *,
        envelope_keys: tuple[str, ...],
        params: Mapping[str, Any] | None = None,
        decode: PageDecoder | None = None,
    ) -> T:
        """`consume(pages)` over the whole collection (see `iter_pages`), called once more on a fresh read
        when records were deleted during the first (`CollectionShrank`): offset paging then may have
        skipped a live record, so what `consume` made of that read must not be kept (the extract writes
        its files atomically: an interrupted write leaves nothing). Deletions during the second read
        too end in `CollectionShrank`, which a later run gets past."""

        def read() -> T:
            return consume(self.iter_pages(path, envelope_keys=envelope_keys, params=params, decode=decode))

        try:
            return read()
        except CollectionShrank as shrank:
            log.warning("%s; reading %s again from the start", shrank, path)
        try:
            return read()
        except CollectionShrank as again:
            raise CollectionShrank(
                f"{again}, on the second read too: records are being deleted while the collection is read; "
                "run again later (e.g. once the SIS has finished its own updates)",
                endpoint=path,
            ) from None

    def fetch_page(
        self,
        path: str,
        *,
        envelope_keys: tuple[str, ...],
        params: Mapping[str, Any] | None,
        offset: int,
        limit: int,
        url: str | None = None,
        decode: PageDecoder | None = None,
    ) -> Page:
        """One page at `offset`, or at `url`: a provider's Link rel="next" that pages by something else."""
        response = self._get_page(path, params=params, offset=offset, limit=limit, url=url)
        rows = decode([response.content])[0] if decode else None
        return self._read_page(response, path, envelope_keys=envelope_keys, offset=offset, rows=rows)

    def _checked_page(
        self,
        read: _Read,
        *,
        offset: int,
        limit: int,
        url: str | None = None,
        arrived: tuple[httpx2.Response, Sequence | None] | None = None,
    ) -> Page:
        """The page at `offset` (or `url`), read from `arrived` (its response and decoded rows) when it
        was fetched already. A page the provider left empty though its total says rows remain, or
        refused with server_busy in a 200, is asked for again with the retry policy's backoff, then
        fails: ending the collection there would drop the rest of it."""
        attempt = 0
        while True:
            if arrived is None:
                response = self._get_page(read.path, params=read.params, offset=offset, limit=limit, url=url)
                arrived = response, read.decode([response.content])[0] if read.decode else None
            response, rows = arrived
            try:
                page = self._read_page(response, read.path, envelope_keys=read.envelope_keys, offset=offset, rows=rows)
            except OneRosterError as error:
                if not _says_busy(error.status_info):
                    raise
                problem = error
            else:
                read.saw_total(page)
                if page.rows or read.total is None or offset >= read.total:
                    return page
                problem = OneRosterError(
                    f"GET {read.path} offset={offset} returned no records though X-Total-Count says {read.total}: "
                    "the provider failed to fill the page",
                    endpoint=read.path,
                    status_code=response.status_code,
                )
            if attempt >= self._policy.max_retries:
                raise OneRosterError(
                    f"{problem} (still so after {attempt} retries)",
                    endpoint=read.path,
                    status_code=problem.status_code,
                    status_info=problem.status_info,
                )
            attempt += 1
            delay = self._policy.delay(attempt)
            self.stats.add(retries=1)
            log.warning("%s; retry %d in %.1fs", problem, attempt, delay)
            time.sleep(delay)
            arrived = None

    def _get_page(
        self, path: str, *, params: Mapping[str, Any] | None, offset: int, limit: int, url: str | None = None
    ) -> httpx2.Response:
        query = None if url else {**(params or {}), "limit": limit, "offset": offset}
        return self._call("GET", url or path, params=query, ok=(200,), endpoint=path)

    def _read_page(
        self, response: httpx2.Response, path: str, *, envelope_keys: tuple[str, ...], offset: int, rows: Sequence | None
    ) -> Page:
        """The page of `response`: `rows` as decoded, or (None) read from its JSON here (a decoder leaves
        every page with a statusInfoSet to this)."""
        if rows is None:
            payload = self._json_object("GET", path, response)
            status = parse_status_info(payload)
            self._raise_failure_status(path, response, status)
            rows = _envelope_rows(payload, envelope_keys, path)
            if status and ((status.code_major or "").lower() != "success" or (status.severity or "").lower() != "status"):
                log.warning("GET %s offset=%d: provider status %s", path, offset, self._redact(str(status)))
        self.stats.add(pages_fetched=1)
        links = response.links
        return Page(
            offset=offset,
            rows=rows,
            total=_total_count(response),
            # Resolved only when paging follows it: URL parsing is a good part of a request's CPU.
            next_link=links.get("next", {}).get("url"),
            request_url=response.request.url,
            says_last=bool(links) and "next" not in links,
        )

    def _raise_failure_status(self, path: str, response: httpx2.Response, status: StatusInfo | None) -> None:
        """A 200 whose statusInfoSet says codeMajor=failure carries no (or no trustworthy) data."""
        if status and (status.code_major or "").lower() == "failure":
            raise OneRosterError(
                self._redact(f"GET {response.request.url} answered HTTP {response.status_code} with a failure status ({status})"),
                endpoint=path,
                status_code=response.status_code,
                status_info=status,
            )

    def _pages_concurrently(self, read: _Read, *, step: int, total: int) -> Iterator[Sequence]:
        offsets = iter(range(step, total, step))
        # The page workers only make requests, as many at once as allowed; the consumer reads the bodies,
        # those that have arrived together in one go. A worker that also decoded its page would leave its
        # request slot idle meanwhile (measured: the extract ran at 0.84 of a bare GET loop that way).
        in_flight: deque[tuple[int, Future[httpx2.Response]]] = deque()
        pool = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="oneroster-page")

        def submit_next() -> None:
            offset = next(offsets, None)
            if offset is not None:
                future = pool.submit(self._get_page, read.path, params=read.params, offset=offset, limit=step)
                in_flight.append((offset, future))

        try:
            for _ in range(self.max_concurrency * READ_AHEAD):
                submit_next()
            # At most a request slot's share of the window per batch, so that requests stay queued while
            # it is decoded; a failed page ends a batch, so that the pages before it are read (and the
            # checks below made) before its error is raised, as one page at a time would.
            batch_pages = min(DECODE_BATCH_PAGES, self.max_concurrency)
            while in_flight:
                offset, future = in_flight.popleft()
                responses = [(offset, future.result())]
                while len(responses) < batch_pages and in_flight and _succeeded(in_flight[0][1]):
                    offset, future = in_flight.popleft()
                    responses.append((offset, future.result()))
                decoded = read.decode([r.content for _, r in responses]) if read.decode else [None] * len(responses)
                for (offset, response), rows in zip(responses, decoded):
                    page = self._checked_page(read, offset=offset, limit=step, arrived=(response, rows))
                    expected = min(step, total - offset)
                    if len(page.rows) < expected:
                        # Shorter than planned with the total unchanged: the provider caps pages harder now.
                        # The planned offsets no longer line up, so finish one page at a time from here.
                        log.warning(
                            "GET %s offset=%d returned %d rows where %d were expected; continuing sequentially",
                            read.path, offset, len(page.rows), expected,
                        )
                        for _, pending in in_flight:
                            pending.cancel()
                        in_flight.clear()
                        yield read.counted(page.rows, offset=offset)
                        yield from self._pages_in_sequence(read, previous=page, step=step)
                        return
                    yield read.counted(page.rows if len(page.rows) == expected else page.rows[:expected], offset=offset)
                    submit_next()
            if (read.total or 0) > total:
                # The collection grew while we read it: read on until the provider runs out.
                tail = self._checked_page(read, offset=total, limit=step)
                if tail.rows:
                    yield read.counted(tail.rows, offset=total)
                    yield from self._pages_in_sequence(read, previous=tail, step=step)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _pages_in_sequence(self, read: _Read, *, previous: Page, step: int) -> Iterator[Sequence]:
        page, links_followed = previous, set()
        while not page.says_last:
            offset, url = page.offset + len(page.rows), self._same_origin(page.next_link, page.request_url)
            if url and _pages_by_offset(url):
                # The rows received say where the next page starts, even when a capped provider's link
                # computes it from the limit asked; the link only tells that there is a next page.
                url = None
            if url in links_followed:
                raise OneRosterError(
                    f"GET {read.path}: Link rel=next leads back to a page already read ({self._redact(url)}); "
                    "stopping rather than reading the collection forever",
                    endpoint=read.path,
                )
            if url:
                links_followed.add(url)
            page = self._checked_page(read, offset=offset, limit=step, url=url)
            if not page.rows:
                return
            yield read.counted(page.rows, offset=offset)

    # --- plumbing -------------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path_or_url: str,
        *,
        ok: tuple[int, ...],
        params: Mapping[str, Any] | None = None,
        json_body: dict | None = None,
        endpoint: str | None = None,
    ) -> httpx2.Response:
        endpoint = endpoint or path_or_url
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else self.base_url + path_or_url

        def send() -> httpx2.Response:
            request = self._http.build_request(method, url, params=params, json=json_body, headers=self._headers)
            return self._http.send(request, auth=self._auth)

        def on_retry(attempt: int, reason: str, delay: float) -> None:
            self.stats.add(retries=1)
            log.warning("%s %s: %s, retry %d in %.1fs", method, endpoint, reason, attempt, delay)

        try:
            response = send_with_retries(send, self._policy, on_retry=on_retry)
        except TokenRequestError as exc:
            raise self._token_error(exc) from None
        except httpx2.TransportError as exc:
            raise OneRosterError(f"{method} {url} {self._transport_failure(exc)}", endpoint=endpoint) from None
        if response.status_code not in ok:
            raise self._http_error(method, endpoint, response)
        return response

    def _post_token_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send a token request with the API's retry policy (no API auth, no vendor headers)."""

        def on_retry(attempt: int, reason: str, delay: float) -> None:
            self.stats.add(retries=1)
            log.warning("POST %s: %s, retry %d in %.1fs", request.url, reason, attempt, delay)

        try:
            response = send_with_retries(lambda: self._http.send(request), self._policy, on_retry=on_retry)
        except httpx2.TransportError as exc:
            raise TokenRequestError(
                f"token request to {request.url} {self._transport_failure(exc)}; check ONEROSTER_TOKEN_URL",
                status_code=None,
            ) from None
        response.read()
        return response

    def _transport_failure(self, exc: httpx2.TransportError) -> str:
        if isinstance(exc, UNSENDABLE):
            # Its text quotes the offending part of our request, which may be a credential: left out.
            return (
                f"could not be sent ({type(exc).__name__}: the request is malformed, e.g. a header value with a "
                "control character; check ONEROSTER_BASE_URL, ONEROSTER_TOKEN_URL and ONEROSTER_EXTRA_HEADERS)"
            )
        return f"failed after {self._policy.max_retries} retries: {type(exc).__name__}: {self._redact(str(exc))}"

    def _token_error(self, exc: TokenRequestError) -> OneRosterError:
        assert self._tokens is not None
        return OneRosterError(self._redact(str(exc)), endpoint=self._tokens.token_url, status_code=exc.status_code)

    def _http_error(self, method: str, endpoint: str, response: httpx2.Response) -> OneRosterError:
        try:
            payload = response.json()
        except ValueError:
            payload = None
        status_info = parse_status_info(payload)
        message = f"{method} {response.request.url} failed: HTTP {response.status_code} {response.reason_phrase}"
        if status_info:
            message += f" ({status_info})"
        elif response.text.strip():
            message += f": {response.text.strip()[:300]}"
        if self._policy.waits_too_long(response):
            message += (
                f" (not retried: Retry-After {response.headers.get('Retry-After')} is longer than the "
                f"{self._policy.retry_after_max_seconds:g} s this client waits; run again later)"
            )
        elif response.status_code in self._policy.retry_statuses:
            message += f" (still failing after {self._policy.max_retries} retries)"
        elif response.status_code == 401:
            message += "; the provider refused the credentials: check ONEROSTER_CLIENT_ID/ONEROSTER_CLIENT_SECRET"
            if self._tokens is None:
                message += ", ONEROSTER_OAUTH1_SIGNATURE_METHOD and the server clock"
            message += " (and ONEROSTER_EXTRA_HEADERS if the provider wants a vendor header)"
        elif response.status_code == 403:
            message += "; the credentials lack permission for this endpoint: check ONEROSTER_SCOPE"
        elif 300 <= response.status_code < 400:
            message += f" (redirect to {response.headers.get('Location')}): check ONEROSTER_BASE_URL"
        return OneRosterError(
            self._redact(message), endpoint=endpoint, status_code=response.status_code, status_info=status_info
        )

    def _json_object(self, method: str, endpoint: str, response: httpx2.Response) -> dict:
        try:
            payload = response.json()
        except ValueError:
            raise OneRosterError(
                f"{method} {response.request.url} returned HTTP {response.status_code} that is not JSON "
                f"(Content-Type {response.headers.get('Content-Type')!r})",
                endpoint=endpoint,
                status_code=response.status_code,
            ) from None
        if not isinstance(payload, dict):
            raise OneRosterError(
                f"{method} {response.request.url} returned a JSON {type(payload).__name__}, not an object",
                endpoint=endpoint,
                status_code=response.status_code,
            )
        return payload

    def _same_origin(self, url: str | None, request_url: httpx2.URL) -> str | None:
        """A Link URL resolved against the request, kept only if it points into the provider's API
        (credentials must never follow a link elsewhere)."""
        if not url:
            return None
        resolved = str(request_url.join(url))
        if resolved.startswith(self.base_url + "/"):
            return resolved
        log.warning("ignoring Link rel=next outside %s: %s", self.base_url, resolved)
        return None

    def _redact(self, text: str) -> str:
        issued = self._tokens.issued_values() if self._tokens is not None else ()
        return redact(text, (*self._secrets, *issued))


def _succeeded(future: Future) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def _envelope_rows(payload: dict, envelope_keys: tuple[str, ...], path: str) -> list:
    for key in envelope_keys:
        if key in payload:
            rows = payload[key]
            if rows is None:
                return []
            if not isinstance(rows, list):
                raise OneRosterError(
                    f"GET {path}: {key!r} is a JSON {type(rows).__name__}, expected an array", endpoint=path
                )
            return rows
    other_keys = sorted(k for k in payload if _bare(k) != "statusinfoset")
    if not other_keys:
        return []  # some providers answer an empty collection with {} or only a status
    raise OneRosterError(
        f"GET {path}: response has none of the keys {', '.join(envelope_keys)} (it has {', '.join(other_keys)})",
        endpoint=path,
    )


def _pages_by_offset(url: str) -> bool:
    return "offset" in parse_qs(urlsplit(url).query)


def _total_count(response: httpx2.Response) -> int | None:
    value = response.headers.get("X-Total-Count", "").strip()
    return int(value) if value.isdigit() else None


# --- Resource ----------------------------------------------------------------------------------------


def validate_base_url(url: str) -> str:
    """The base URL without a trailing slash; a clear error unless it is https (or loopback http) and
    ends in /ims/oneroster/v1p1."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    # Checked first, because the messages below quote the URL.
    if parts.username or parts.password or parts.query:
        raise ValueError("ONEROSTER_BASE_URL must not carry credentials or a query string")
    if not parts.path.endswith(BASE_PATH) or not parts.hostname:
        raise ValueError(
            f"ONEROSTER_BASE_URL must be the provider's URL ending in {BASE_PATH} "
            f"(e.g. https://sis.example.org{BASE_PATH}), got {url!r}"
        )
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        raise ValueError(f"ONEROSTER_BASE_URL must use https (plain http only for 127.0.0.1), got {url!r}")
    return url


class OneRosterClient(dg.ConfigurableResource):
    """A OneRoster 1.1 provider (ONEROSTER_* environment variables; see pipeline/settings.py).

    `base_url` empty means the embedded demo provider. `extra_headers_json` is the JSON form of extra
    headers (ONEROSTER_EXTRA_HEADERS through dg.EnvVar, because vendor headers carry secrets); it is
    merged over `extra_headers`.
    """

    base_url: str = ""
    auth: str = "oauth2"
    client_id: str = Field(default="", repr=False)
    client_secret: str = Field(default="", repr=False)
    token_url: str = ""
    scope: str = ""
    token_auth_method: str = "client_secret_basic"
    oauth1_signature_method: str = "HMAC-SHA256"
    extra_headers: dict[str, str] = Field(default={}, repr=False)
    extra_headers_json: str = Field(default="", repr=False)
    page_size: int = 1000
    max_concurrency: int = 4
    timeout_seconds: float = 60
    max_retries: int = 5
    # A provider's Retry-After is waited for as told up to this long; a longer one fails at once.
    max_retry_after_seconds: float = 600
    data_dir: str = "./data"

    def open(self) -> OneRosterSession:
        """A session (a context manager). With no base URL, starts (once per process) the demo provider."""
        if not self.base_url:
            return self._open_demo()
        return self._open(
            base_url=validate_base_url(self.base_url),
            auth=self.auth,
            client_id=self.client_id,
            client_secret=self.client_secret,
            token_url=self.token_url,
        )

    def _open_demo(self) -> OneRosterSession:
        # The demo is only imported when used; its credentials are public constants, demo only.
        from pipeline.demo.oneroster_server import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, embedded_provider

        provider = embedded_provider(Path(self.data_dir))
        return self._open(
            base_url=provider.base_url,
            auth="oauth2",
            client_id=DEMO_CLIENT_ID,
            client_secret=DEMO_CLIENT_SECRET,
            token_url=provider.token_url,
        )

    def _open(self, *, base_url: str, auth: str, client_id: str, client_secret: str, token_url: str) -> OneRosterSession:
        self._check_settings(auth, client_id, client_secret, token_url)
        credentials = Credentials(
            scheme=auth,
            client_id=client_id,
            client_secret=client_secret,
            token_url=token_url,
            scope=self.scope,
            token_auth_method=self.token_auth_method,
            signature_method=self.oauth1_signature_method,
        )
        return OneRosterSession(
            base_url=base_url,
            credentials=credentials,
            extra_headers=self._headers(),
            page_size=self.page_size,
            max_concurrency=self.max_concurrency,
            timeout_seconds=self.timeout_seconds,
            retry_policy=RetryPolicy(max_retries=self.max_retries, retry_after_max_seconds=self.max_retry_after_seconds),
        )

    def _headers(self) -> dict[str, str]:
        headers = dict(self.extra_headers)
        if self.extra_headers_json.strip():
            try:
                parsed = json.loads(self.extra_headers_json)
            except ValueError:
                parsed = None  # the message must not quote the value: it holds vendor secrets
            if not isinstance(parsed, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
            ):
                raise ValueError(
                    'ONEROSTER_EXTRA_HEADERS must be a JSON object of header names to string values, '
                    'e.g. {"x-vendor-authorization": "key:secret"}'
                )
            headers.update(parsed)
        for name, value in headers.items():
            _check_header(name, value)
        return headers

    def _check_settings(self, auth: str, client_id: str, client_secret: str, token_url: str) -> None:
        problems = []
        if auth not in AUTH_SCHEMES:
            problems.append(f"ONEROSTER_AUTH must be oauth2 or oauth1, got {auth!r}")
        if not client_id or not client_secret:
            problems.append("ONEROSTER_CLIENT_ID and ONEROSTER_CLIENT_SECRET must both be set")
        if auth == "oauth2":
            if not token_url:
                problems.append("ONEROSTER_TOKEN_URL must be set for oauth2")
            else:
                problems.extend(_token_url_problems(token_url))
            if self.token_auth_method not in TOKEN_AUTH_METHODS:
                problems.append(f"ONEROSTER_TOKEN_AUTH_METHOD must be basic or post, got {self.token_auth_method!r}")
        if auth == "oauth1" and self.oauth1_signature_method not in OAUTH1_SIGNATURE_METHODS:
            problems.append(
                f"ONEROSTER_OAUTH1_SIGNATURE_METHOD must be HMAC-SHA256 or HMAC-SHA1, got {self.oauth1_signature_method!r}"
            )
        if self.page_size < 1:
            problems.append(f"ONEROSTER_PAGE_SIZE must be at least 1, got {self.page_size}")
        if self.max_concurrency < 1:
            problems.append(f"ONEROSTER_MAX_CONCURRENCY must be at least 1, got {self.max_concurrency}")
        if self.timeout_seconds <= 0:
            problems.append(f"ONEROSTER_TIMEOUT_SECONDS must be positive, got {self.timeout_seconds}")
        if self.max_retries < 0:
            problems.append(f"ONEROSTER_MAX_RETRIES must be 0 or more, got {self.max_retries}")
        if not self.max_retry_after_seconds >= 0:  # written so that nan fails too
            problems.append(f"max_retry_after_seconds must be 0 or more, got {self.max_retry_after_seconds}")
        if problems:
            raise ValueError("OneRoster client misconfigured: " + "; ".join(problems))


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*")


def _check_header(name: str, value: str) -> None:
    """HTTP allows a header name of token characters and a value of visible ASCII, spaces and tabs. The
    message never quotes the value: vendor headers are credentials."""
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"ONEROSTER_EXTRA_HEADERS: {name!r} is not a valid HTTP header name")
    if not _HEADER_VALUE.fullmatch(value):
        raise ValueError(
            f"ONEROSTER_EXTRA_HEADERS: the value of {name} holds a character HTTP headers do not allow (a control "
            "character such as a trailing newline copied from a secrets file, or a non-ASCII letter)"
        )


def _token_url_problems(token_url: str) -> list[str]:
    """The token request carries the client secret: https only (http for loopback), never a userinfo part."""
    parts = urlsplit(token_url)
    if parts.username or parts.password:
        return ["ONEROSTER_TOKEN_URL must not carry credentials"]  # so the URL is not quoted
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        return [f"ONEROSTER_TOKEN_URL must use https (plain http only for 127.0.0.1), got {token_url!r}"]
    return []


def oneroster_from_env() -> OneRosterClient:
    """The client the environment configures; secrets travel as dg.EnvVar, resolved at run launch."""
    base_url = settings.get("ONEROSTER_BASE_URL")
    config: dict[str, Any] = dict(
        base_url=base_url,
        auth=settings.get("ONEROSTER_AUTH"),
        token_url=settings.get("ONEROSTER_TOKEN_URL"),
        scope=settings.get("ONEROSTER_SCOPE"),
        token_auth_method=TOKEN_AUTH_METHODS.get(
            settings.get("ONEROSTER_TOKEN_AUTH_METHOD"), settings.get("ONEROSTER_TOKEN_AUTH_METHOD")
        ),
        oauth1_signature_method=settings.get("ONEROSTER_OAUTH1_SIGNATURE_METHOD"),
        page_size=settings.get_int("ONEROSTER_PAGE_SIZE", minimum=1),
        max_concurrency=settings.get_int("ONEROSTER_MAX_CONCURRENCY", minimum=1),
        timeout_seconds=settings.get_float("ONEROSTER_TIMEOUT_SECONDS", minimum=0.001),
        max_retries=settings.get_int("ONEROSTER_MAX_RETRIES"),
        data_dir=settings.get("ROSTERBRIDGE_DATA_DIR"),
    )
    if base_url:
        config["client_id"] = dg.EnvVar("ONEROSTER_CLIENT_ID")
        config["client_secret"] = dg.EnvVar("ONEROSTER_CLIENT_SECRET")
        if settings.is_set("ONEROSTER_EXTRA_HEADERS"):
            config["extra_headers_json"] = dg.EnvVar("ONEROSTER_EXTRA_HEADERS")
    return OneRosterClient(**config)
