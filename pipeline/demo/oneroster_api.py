"""The OneRoster 1.1 REST API of the demo provider, independent of the HTTP server that carries it:
authentication, routing, paging headers, filters, nested and gradebook endpoints, injected faults."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pipeline.demo.oneroster_gradebook import WRAPPERS, validate_put
from pipeline.demo.oneroster_query import ProviderError, parse_filter, parse_paging, sort_key, status_info
from pipeline.demo.oneroster_store import DemoStore
from pipeline.demo.provider_auth import (
    GRADEBOOK_DELETE,
    GRADEBOOK_READ,
    GRADEBOOK_WRITE,
    ROSTER,
    ROSTER_CORE,
    ROSTER_DEMOGRAPHICS,
    AuthError,
    OAuth1Verifier,
    TokenIssuer,
)
from pipeline.demo.source import Selection, ref_id

API_ROOT = "/ims/oneroster/v1p1"
TOKEN_PATH = "/oauth/token"

_TERM_TYPES = frozenset({"term", "semester", "schoolYear"})
# path collection -> (stored entity, kinds it shows or None for all)
VIEWS: dict[str, tuple[str, frozenset[str] | None]] = {
    "orgs": ("orgs", None),
    "schools": ("orgs", frozenset({"school"})),
    "academicSessions": ("academicSessions", None),
    "terms": ("academicSessions", _TERM_TYPES),
    "gradingPeriods": ("academicSessions", frozenset({"gradingPeriod"})),
    "courses": ("courses", None),
    "classes": ("classes", None),
    "users": ("users", None),
    "students": ("users", frozenset({"student"})),
    "teachers": ("users", frozenset({"teacher"})),
    "enrollments": ("enrollments", None),
    "demographics": ("demographics", None),
    "categories": ("categories", None),
    "lineItems": ("lineItems", None),
    "results": ("results", None),
}
SINGULAR = {
    "orgs": "org", "academicSessions": "academicSession", "courses": "course", "classes": "class",
    "users": "user", "enrollments": "enrollment", "demographics": "demographics", **WRAPPERS,
}
_BOOLEAN_FIELDS = frozenset({
    "enabledUser", "primary", "americanIndianOrAlaskaNative", "asian", "blackOrAfricanAmerican",
    "nativeHawaiianOrOtherPacificIslander", "white", "demographicRaceTwoOrMoreRaces", "hispanicOrLatinoEthnicity",
})
_CORE_READ = frozenset({ROSTER_CORE, ROSTER})


def _read_scopes(entity: str) -> frozenset[str]:
    if entity in WRAPPERS:
        return frozenset({GRADEBOOK_READ})
    if entity == "demographics":
        return frozenset({ROSTER_DEMOGRAPHICS, ROSTER})
    return _CORE_READ


@dataclass(frozen=True)
class FaultPlan:
    """Injected failures, decided by request number so a run is repeatable: the first `first_n` API
    requests fail, then each request fails with probability `rate` (seeded). Faults happen before any
    work, so a client that retries gets exactly the data of a fault-free run."""

    rate: float = 0.0
    statuses: tuple[int, ...] = (429, 503)
    retry_after_seconds: float = 1
    seed: int = 7
    first_n: int = 0

    def fault_for(self, request_number: int) -> int | None:
        if request_number < self.first_n:
            return self.statuses[request_number % len(self.statuses)]
        if self.rate <= 0:
            return None
        draw = random.Random(self.seed * 1_000_003 + request_number)
        if draw.random() < self.rate:
            return self.statuses[draw.randrange(len(self.statuses))]
        return None


class ServerStats:
    """Counters for tests and benchmarks (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.faults_injected = 0
        self.statuses: Counter[int] = Counter()

    def next_request(self) -> int:
        with self._lock:
            self.requests += 1
            return self.requests - 1

    def record(self, status: int, fault: bool = False) -> None:
        with self._lock:
            self.statuses[status] += 1
            self.faults_injected += fault


class OneRosterApi:
    """Answers one request at a time (thread-safe); see DemoOneRosterServer for the options."""

    def __init__(
        self,
        store: DemoStore,
        *,
        auth: str,
        tokens: TokenIssuer,
        oauth1: OAuth1Verifier,
        page_cap: int | None,
        send_total_count: bool,
        send_link: bool,
        latency_ms: float,
        faults: FaultPlan | None,
        required_headers: dict[str, str] | None,
        booleans_as_strings: bool,
        allow_category_writes: bool,
    ):
        if auth not in ("oauth2", "oauth1"):
            raise ValueError(f"auth must be 'oauth2' or 'oauth1', got {auth!r}")
        if page_cap is not None and page_cap < 1:
            raise ValueError(f"page_cap must be at least 1, got {page_cap}")
        self.store = store
        self.auth = auth
        self.tokens = tokens
        self.oauth1 = oauth1
        self.page_cap = page_cap
        self.send_total_count = send_total_count
        self.send_link = send_link
        self.latency_seconds = latency_ms / 1000
        self.faults = faults
        self.required_headers = {k.lower(): v for k, v in (required_headers or {}).items()}
        self.booleans_as_strings = booleans_as_strings
        self.allow_category_writes = allow_category_writes
        self.stats = ServerStats()

    def handle(self, request: ApiRequest) -> ApiResponse:
        if request.path == TOKEN_PATH:
            if self.auth != "oauth2" or request.method != "POST":
                return ApiResponse.error(ProviderError(404 if self.auth != "oauth2" else 405, "unsupportedoperation",
                                                     "no such endpoint"))
            issued = self.tokens.issue(request.headers.get("Content-Type", ""), request.body, request.headers.get("Authorization"))
            return ApiResponse(issued.status, issued.body, issued.headers)
        if not request.path.startswith(API_ROOT + "/"):
            return ApiResponse.error(ProviderError(404, "unknownobject", f"no endpoint {request.path}"))
        number = self.stats.next_request()
        if self.latency_seconds:
            time.sleep(self.latency_seconds)
        fault = self.faults.fault_for(number) if self.faults else None
        if fault is not None:
            headers = {"Retry-After": _seconds(self.faults.retry_after_seconds)} if fault in (429, 503) else {}
            return ApiResponse.error(ProviderError(fault, "server_busy", "injected fault: try again", headers), fault=True)
        try:
            scopes = self._authenticate(request)
            return self._route(request, scopes)
        except AuthError as err:
            headers = {"WWW-Authenticate": err.www_authenticate} if err.www_authenticate else {}
            return ApiResponse.error(ProviderError(err.status, "unauthorisedrequest", err.description, headers))
        except ProviderError as err:
            return ApiResponse.error(err)

    def _authenticate(self, request: ApiRequest) -> frozenset[str] | None:
        """Granted scopes (None: OAuth 1.0a, which has no scopes)."""
        for name, expected in self.required_headers.items():
            if request.headers.get(name) != expected:
                raise AuthError(f"the {name} header is missing or wrong")
        if self.auth == "oauth2":
            return self.tokens.check(request.headers.get("Authorization"))
        self.oauth1.verify(request.url, request.method, dict(request.headers.items()), request.body)
        return None

    def _route(self, request: ApiRequest, scopes: frozenset[str] | None) -> ApiResponse:
        parts = [urllib.parse.unquote(p) for p in request.path[len(API_ROOT) + 1 :].split("/")]
        method, params = request.method, request.params
        collection = parts[0]
        if collection not in VIEWS or not all(parts):
            raise ProviderError(404, "unknownobject", f"no endpoint {request.path}")
        entity, kinds = VIEWS[collection]
        if len(parts) == 1 and method == "GET":
            _require(scopes, _read_scopes(entity))
            return self._list(request, entity, entity, Selection(entity, kinds))
        if len(parts) == 2:
            return self._single(request, collection, entity, kinds, parts[1], scopes)
        nested = self._nested(parts)
        if nested is None or method != "GET":
            raise ProviderError(404 if nested is None else 405, "unknownobject", f"no endpoint {method} {request.path}")
        required, entity, selection_or_records = nested
        _require(scopes, required)
        if isinstance(selection_or_records, Selection):
            return self._list(request, entity, entity, selection_or_records)
        return self._list(request, entity, entity, None, selection_or_records)

    def _nested(self, parts: list[str]):
        """(required scopes, entity, Selection or list of records) of a nested GET, None if unknown."""
        store = self.store
        head, owner, rest = parts[0], parts[1], parts[2:]
        if head == "terms" and rest == ["gradingPeriods"]:
            self._must_exist("academicSessions", owner)
            return frozenset({ROSTER}), "academicSessions", [
                r for r in store.iter_all(Selection("academicSessions", frozenset({"gradingPeriod"})))
                if ref_id(r, "parent") == owner
            ]
        if head != "classes":
            return None
        self._must_exist("classes", owner)
        in_class = frozenset({owner})
        if rest == ["students"]:
            ids = [ref_id(e, "user") for e in store.class_enrollments(owner)
                   if e.get("role") == "student" and e.get("status") == "active"]
            users = [u for u in (store.get("users", i) for i in dict.fromkeys(ids) if i) if u is not None]
            return frozenset({ROSTER}), "users", users
        read = frozenset({GRADEBOOK_READ})
        if rest == ["lineItems"]:
            return read, "lineItems", Selection("lineItems", refs=(("class", in_class),))
        line_items = frozenset(r["sourcedId"] for r in store.iter_all(Selection("lineItems", refs=(("class", in_class),))))
        if rest == ["results"]:
            return read, "results", Selection("results", refs=(("lineItem", line_items),))
        if len(rest) == 3 and rest[0] == "lineItems" and rest[2] == "results":
            ids = line_items & {rest[1]}
            return read, "results", Selection("results", refs=(("lineItem", ids),))
        if len(rest) == 3 and rest[0] == "students" and rest[2] == "results":
            refs = (("lineItem", line_items), ("student", frozenset({rest[1]})))
            return read, "results", Selection("results", refs=refs)
        return None

    def _must_exist(self, entity: str, sourced_id: str) -> None:
        if self.store.get(entity, sourced_id) is None:
            raise ProviderError(404, "unknownobject", f"no {SINGULAR[entity]} {sourced_id!r}")

    def _single(self, request, collection, entity, kinds, sourced_id, scopes) -> ApiResponse:
        method = request.method
        if method == "GET":
            _require(scopes, _read_scopes(entity))
            record = self.store.get(entity, sourced_id)
            if record is None or not Selection(entity, kinds).matches(record):
                raise ProviderError(404, "unknownobject", f"no {SINGULAR[entity]} {sourced_id!r}")
            return ApiResponse(200, {SINGULAR[entity]: self._out(record)})
        if entity not in WRAPPERS or collection != entity or method not in ("PUT", "DELETE"):
            raise ProviderError(405, "unsupportedoperation", f"{method} is not supported on /{collection}")
        if entity == "categories" and not self.allow_category_writes:
            raise ProviderError(403, "unsupportedoperation", "this provider does not accept category writes")
        if method == "DELETE":
            _require(scopes, frozenset({GRADEBOOK_DELETE}))
            if not self.store.drop_record(entity, sourced_id):
                raise ProviderError(404, "unknownobject", f"no {SINGULAR[entity]} {sourced_id!r}")
            return ApiResponse(204, None)
        _require(scopes, frozenset({GRADEBOOK_WRITE}))
        try:
            body = json.loads(request.body or b"null")
        except ValueError as exc:
            raise ProviderError(400, "invaliddata", f"the body is not valid JSON: {exc}") from None
        record = validate_put(entity, sourced_id, body, self.store)
        created = self.store.upsert_record(entity, record)
        return ApiResponse(201 if created else 200, {SINGULAR[entity]: self._out(self.store.get(entity, sourced_id))})

    def _list(self, request, entity: str, envelope: str, selection: Selection | None, records=None) -> ApiResponse:
        params = request.params
        limit, offset = parse_paging(params)
        take = min(limit, self.page_cap) if self.page_cap else limit
        predicate = parse_filter(params["filter"], entity) if "filter" in params else None
        warnings = []
        key = None
        if "sort" in params:
            key = sort_key(entity, params["sort"])
            if key is None:
                warnings.append(status_info("success", "warning", "invalid_sort_field",
                                            f"{params['sort']!r} is not a field of {entity}: not sorted"))
        pageable = predicate is None or self.store.uniform_verdict(predicate) is not None
        if selection is not None and key is None and pageable:
            page, total = self.store.page(selection, offset, take, predicate)
        else:
            rows = records if records is not None else self.store.iter_all(selection)
            rows = [r for r in rows if predicate is None or predicate(r)]
            if key is not None:
                rows.sort(key=key, reverse=params.get("orderBy", "asc").lower() == "desc")
            total, page = len(rows), rows[offset : offset + take]
        body: dict[str, Any] = {envelope: [self._out(r) for r in page]}
        if warnings:
            body["statusInfoSet"] = warnings
        headers = {}
        if self.send_total_count:
            headers["X-Total-Count"] = str(total)
        if self.send_link:
            headers["Link"] = _link_header(request, limit, offset, len(page), total)
        return ApiResponse(200, body, headers)

    def _out(self, record: dict[str, Any]) -> dict[str, Any]:
        if self.booleans_as_strings:
            return record
        return {k: (v == "true" if k in _BOOLEAN_FIELDS and v in ("true", "false") else v) for k, v in record.items()}



def _require(granted: frozenset[str] | None, any_of: frozenset[str]) -> None:
    if granted is not None and not granted & any_of:
        raise AuthError(f"the access token lacks a scope for this endpoint (one of {' '.join(sorted(any_of))})", status=403)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _link_header(request: ApiRequest, limit: int, offset: int, returned: int, total: int) -> str:
    def url(new_offset: int) -> str:
        query = {k: v for k, v in request.params.items() if k not in ("limit", "offset")}
        query.update(limit=str(limit), offset=str(new_offset))
        return f"<{request.base}{request.path}?{urllib.parse.urlencode(query)}>"

    links = []
    if offset + returned < total:
        links.append(f'{url(offset + returned)}; rel="next"')
    if offset > 0:
        links.append(f'{url(max(0, offset - limit))}; rel="prev"')
    links.append(f'{url(0)}; rel="first"')
    links.append(f'{url(max(0, (total - 1) // limit * limit))}; rel="last"')
    return ", ".join(links)


@dataclass
class ApiRequest:
    method: str
    base: str  # scheme://host:port as the client addressed us
    path: str
    params: dict[str, str]
    headers: Any  # http.client.HTTPMessage (case-insensitive)
    body: bytes
    raw_query: str = ""

    @property
    def url(self) -> str:
        """The URL exactly as the client addressed it (what an OAuth 1.0a signature covers)."""
        return f"{self.base}{self.path}" + (f"?{self.raw_query}" if self.raw_query else "")


@dataclass
class ApiResponse:
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] | None = None
    fault: bool = False

    @classmethod
    def error(cls, err: ProviderError, fault: bool = False) -> ApiResponse:
        return cls(err.status, err.body(), err.headers, fault)

