"""The demo OneRoster 1.1 provider: a real HTTP server (rostering + gradebook) on 127.0.0.1.

    python -m pipeline.demo.oneroster_server --port 8650 [--students N] [--auth oauth2|oauth1]
        [--page-cap N] [--latency-ms N] [--fault-rate R] ... (see --help)

Tests start it with `with DemoOneRosterServer(...) as srv:` on an ephemeral port; the OneRoster client
resource starts one per process through `embedded_provider(data_dir)` when ONEROSTER_BASE_URL is unset.
Docs: docs/demo-oneroster.md.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import random
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pipeline import settings
from pipeline.demo.district import District
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
from pipeline.demo.source import RosterSource, Selection, ref_id

_log = logging.getLogger(__name__)

# Public demo credentials: they only ever open the demo provider.
DEMO_CLIENT_ID = "rosterbridge-demo"
DEMO_CLIENT_SECRET = "rosterbridge-demo-secret"
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


class DemoOneRosterServer:
    """The demo provider. See docs/demo-oneroster.md for every option."""

    def __init__(
        self,
        students: int = 300,
        seed: int = 1,
        auth: str = "oauth2",
        client_id: str = DEMO_CLIENT_ID,
        client_secret: str = DEMO_CLIENT_SECRET,
        page_cap: int | None = None,
        send_total_count: bool = True,
        send_link: bool = True,
        latency_ms: float = 0,
        faults: FaultPlan | None = None,
        state_path: str | Path | None = None,
        source: RosterSource | None = None,
        required_headers: dict[str, str] | None = None,
        booleans_as_strings: bool = True,
        token_ttl_seconds: float = 3600,
        allow_category_writes: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        oauth1_window_seconds: int = 600,
    ):
        if auth not in ("oauth2", "oauth1"):
            raise ValueError(f"auth must be 'oauth2' or 'oauth1', got {auth!r}")
        if page_cap is not None and page_cap < 1:
            raise ValueError(f"page_cap must be at least 1, got {page_cap}")
        self.auth = auth
        self.page_cap = page_cap
        self.send_total_count = send_total_count
        self.send_link = send_link
        self.latency_seconds = latency_ms / 1000
        self.faults = faults
        self.required_headers = {k.lower(): v for k, v in (required_headers or {}).items()}
        self.booleans_as_strings = booleans_as_strings
        self.allow_category_writes = allow_category_writes
        self.host, self.port = host, port
        self.store = DemoStore(source or District(students=students, seed=seed), state_path)
        self.stats = ServerStats()
        self.tokens = TokenIssuer(client_id, client_secret, token_ttl_seconds)
        self.oauth1 = OAuth1Verifier(client_id, client_secret, oauth1_window_seconds)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the demo OneRoster server is not running: call start() first")
        return f"http://{self.host}:{self._httpd.server_address[1]}"

    @property
    def base_url(self) -> str:
        return self.root_url + API_ROOT

    @property
    def token_url(self) -> str:
        return self.root_url + TOKEN_PATH

    def start(self) -> "DemoOneRosterServer":
        if self._httpd is not None:
            return self
        handler = type("Handler", (_Handler,), {"app": self})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.store.href_base = self.base_url
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="demo-oneroster", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd = None

    def __enter__(self) -> "DemoOneRosterServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- request handling -------------------------------------------------------------------------
    def handle(self, request: "_Request") -> "_Response":
        if request.path == TOKEN_PATH:
            if self.auth != "oauth2" or request.method != "POST":
                return _Response.error(ProviderError(404 if self.auth != "oauth2" else 405, "unsupportedoperation",
                                                     "no such endpoint"))
            issued = self.tokens.issue(request.headers.get("Content-Type", ""), request.body, request.headers.get("Authorization"))
            return _Response(issued.status, issued.body, issued.headers)
        if not request.path.startswith(API_ROOT + "/"):
            return _Response.error(ProviderError(404, "unknownobject", f"no endpoint {request.path}"))
        number = self.stats.next_request()
        if self.latency_seconds:
            time.sleep(self.latency_seconds)
        fault = self.faults.fault_for(number) if self.faults else None
        if fault is not None:
            headers = {"Retry-After": _seconds(self.faults.retry_after_seconds)} if fault in (429, 503) else {}
            return _Response.error(ProviderError(fault, "server_busy", "injected fault: try again", headers), fault=True)
        try:
            scopes = self._authenticate(request)
            return self._route(request, scopes)
        except AuthError as err:
            headers = {"WWW-Authenticate": err.www_authenticate} if err.www_authenticate else {}
            return _Response.error(ProviderError(err.status, "unauthorisedrequest", err.description, headers))
        except ProviderError as err:
            return _Response.error(err)

    def _authenticate(self, request: "_Request") -> frozenset[str] | None:
        """Granted scopes (None: OAuth 1.0a, which has no scopes)."""
        for name, expected in self.required_headers.items():
            if request.headers.get(name) != expected:
                raise AuthError(f"the {name} header is missing or wrong")
        if self.auth == "oauth2":
            return self.tokens.check(request.headers.get("Authorization"))
        self.oauth1.verify(request.url, request.method, dict(request.headers.items()), request.body)
        return None

    def _route(self, request: "_Request", scopes: frozenset[str] | None) -> "_Response":
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

    def _single(self, request, collection, entity, kinds, sourced_id, scopes) -> "_Response":
        method = request.method
        if method == "GET":
            _require(scopes, _read_scopes(entity))
            record = self.store.get(entity, sourced_id)
            if record is None or not Selection(entity, kinds).matches(record):
                raise ProviderError(404, "unknownobject", f"no {SINGULAR[entity]} {sourced_id!r}")
            return _Response(200, {SINGULAR[entity]: self._out(record)})
        if entity not in WRAPPERS or collection != entity or method not in ("PUT", "DELETE"):
            raise ProviderError(405, "unsupportedoperation", f"{method} is not supported on /{collection}")
        if entity == "categories" and not self.allow_category_writes:
            raise ProviderError(403, "unsupportedoperation", "this provider does not accept category writes")
        if method == "DELETE":
            _require(scopes, frozenset({GRADEBOOK_DELETE}))
            if not self.store.drop_record(entity, sourced_id):
                raise ProviderError(404, "unknownobject", f"no {SINGULAR[entity]} {sourced_id!r}")
            return _Response(204, None)
        _require(scopes, frozenset({GRADEBOOK_WRITE}))
        try:
            body = json.loads(request.body or b"null")
        except ValueError as exc:
            raise ProviderError(400, "invaliddata", f"the body is not valid JSON: {exc}") from None
        record = validate_put(entity, sourced_id, body, self.store)
        created = self.store.upsert_record(entity, record)
        return _Response(201 if created else 200, {SINGULAR[entity]: self._out(self.store.get(entity, sourced_id))})

    def _list(self, request, entity: str, envelope: str, selection: Selection | None, records=None) -> "_Response":
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
        return _Response(200, body, headers)

    def _out(self, record: dict[str, Any]) -> dict[str, Any]:
        if self.booleans_as_strings:
            return record
        return {k: (v == "true" if k in _BOOLEAN_FIELDS and v in ("true", "false") else v) for k, v in record.items()}


def _require(granted: frozenset[str] | None, any_of: frozenset[str]) -> None:
    if granted is not None and not granted & any_of:
        raise AuthError(f"the access token lacks a scope for this endpoint (one of {' '.join(sorted(any_of))})", status=403)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _link_header(request: "_Request", limit: int, offset: int, returned: int, total: int) -> str:
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
class _Request:
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
class _Response:
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] | None = None
    fault: bool = False

    @classmethod
    def error(cls, err: ProviderError, fault: bool = False) -> "_Response":
        return cls(err.status, err.body(), err.headers, fault)


class _Handler(BaseHTTPRequestHandler):
    app: DemoOneRosterServer
    protocol_version = "HTTP/1.1"  # keep-alive: benchmark clients reuse connections
    # Headers and body leave in one buffered write (flushed after each request), and with TCP_NODELAY:
    # otherwise a small response waits ~40 ms for the client's delayed ACK (Nagle).
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    server_version = "RosterbridgeDemoOneRoster/1.1"

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature; request logs would flood tests
        return

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        host = self.headers.get("Host") or f"{self.app.host}:{self.server.server_address[1]}"
        request = _Request(self.command, f"http://{host}", path, params, self.headers, body, raw_query=query)
        try:
            response = self.app.handle(request)
        except Exception as exc:  # a bug must still answer, never hang the client
            _log.exception("demo OneRoster provider failed on %s %s", self.command, path)
            response = _Response.error(ProviderError(500, "internal_server_error", f"{type(exc).__name__}"))
        self.app.stats.record(response.status, response.fault)
        payload = b"" if response.body is None else json.dumps(
            response.body, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")
        self.send_response(response.status)
        for name, value in (response.headers or {}).items():
            self.send_header(name, value)
        if response.body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_DELETE = do_POST = _serve


# --- embedded default --------------------------------------------------------------------------------
_embedded: dict[Path, DemoOneRosterServer] = {}
_embedded_lock = threading.Lock()


def embedded_provider(data_dir: Path) -> DemoOneRosterServer:
    """This process's demo provider for `data_dir` (started on first use, stopped at exit): OAuth 2 with
    the demo credentials, district size from ROSTERBRIDGE_DEMO_STUDENTS, state in
    <data_dir>/demo/oneroster.sqlite so every process of a run shares the overlay and gradebook."""
    key = Path(data_dir).resolve()
    with _embedded_lock:
        server = _embedded.get(key)
        if server is None:
            server = DemoOneRosterServer(
                students=settings.get_int("ROSTERBRIDGE_DEMO_STUDENTS", minimum=1),
                state_path=key / "demo" / "oneroster.sqlite",
            ).start()
            atexit.register(server.stop)
            _embedded[key] = server
        return server


# --- command line ------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.demo.oneroster_server", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8650)
    p.add_argument("--students", type=int, default=300, help="district size (default 300)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--auth", choices=("oauth2", "oauth1"), default="oauth2")
    p.add_argument("--client-id", default=DEMO_CLIENT_ID)
    p.add_argument("--client-secret", default=DEMO_CLIENT_SECRET)
    p.add_argument("--token-ttl", type=float, default=3600, help="OAuth 2 token lifetime in seconds")
    p.add_argument("--page-cap", type=int, default=None, help="serve at most N rows per page whatever limit= says")
    p.add_argument("--no-total-count", action="store_true", help="omit X-Total-Count")
    p.add_argument("--no-link", action="store_true", help="omit the Link header")
    p.add_argument("--json-booleans", action="store_true", help='send enabledUser/primary as JSON booleans, not "true"/"false"')
    p.add_argument("--latency-ms", type=float, default=0, help="delay added to every API request")
    p.add_argument("--fault-rate", type=float, default=0.0, help="share of API requests answered with a fault status")
    p.add_argument("--fault-statuses", default="429,503", help="comma-separated statuses to inject (429,500,502,503,504)")
    p.add_argument("--fault-first-n", type=int, default=0, help="fail the first N API requests")
    p.add_argument("--fault-seed", type=int, default=7)
    p.add_argument("--retry-after", type=float, default=1, help="Retry-After seconds sent with 429/503")
    p.add_argument("--state", default=None, help="SQLite state file (default: in memory)")
    p.add_argument("--samples", default=None, help="serve a OneRoster CSV zip or the Microsoft seed DB instead of the district")
    p.add_argument("--required-header", action="append", default=[], metavar="NAME=VALUE",
                   help="a header every API request must carry (e.g. x-vendor-authorization=key:secret)")
    p.add_argument("--no-category-writes", action="store_true", help="answer PUT/DELETE /categories with 403")
    return p


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    source = None
    if args.samples:
        from pipeline.demo.samples import load_samples

        source = load_samples(Path(args.samples))
    faults = None
    if args.fault_rate or args.fault_first_n:
        statuses = tuple(int(s) for s in args.fault_statuses.split(","))
        faults = FaultPlan(args.fault_rate, statuses, args.retry_after, args.fault_seed, args.fault_first_n)
    headers = dict(h.split("=", 1) for h in args.required_header)
    server = DemoOneRosterServer(
        students=args.students, seed=args.seed, auth=args.auth, client_id=args.client_id,
        client_secret=args.client_secret, page_cap=args.page_cap, send_total_count=not args.no_total_count,
        send_link=not args.no_link, latency_ms=args.latency_ms, faults=faults, state_path=args.state,
        source=source, required_headers=headers, booleans_as_strings=not args.json_booleans,
        token_ttl_seconds=args.token_ttl, allow_category_writes=not args.no_category_writes,
        host=args.host, port=args.port,
    )
    with server:
        print(f"OneRoster 1.1 demo provider ({args.auth}) at {server.base_url}", flush=True)
        if args.auth == "oauth2":
            print(f"token endpoint {server.token_url}", flush=True)
        print(f"client id {args.client_id!r} (demo credentials: see docs/demo-oneroster.md); Ctrl-C stops", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
