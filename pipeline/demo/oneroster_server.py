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
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pipeline import settings
from pipeline.demo.district import District
from pipeline.demo.oneroster_api import API_ROOT, TOKEN_PATH, ApiRequest, ApiResponse, FaultPlan, OneRosterApi
from pipeline.demo.oneroster_query import ProviderError
from pipeline.demo.oneroster_store import DemoStore
from pipeline.demo.provider_auth import ALL_SCOPES, OAuth1Verifier, TokenIssuer
from pipeline.demo.source import RosterSource

__all__ = ["DEMO_CLIENT_ID", "DEMO_CLIENT_SECRET", "DemoOneRosterServer", "FaultPlan", "embedded_provider"]

_log = logging.getLogger(__name__)

# Public demo credentials: they only ever open the demo provider.
DEMO_CLIENT_ID = "rosterbridge-demo"
DEMO_CLIENT_SECRET = "rosterbridge-demo-secret"

class _ApiOption:
    """An option of the running API, read and set through the server: tests change some mid-run
    (`srv.page_cap = 20`: the provider starts capping; `srv.tokens = TokenIssuer(...)`: it forgets tokens)."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, server, owner=None):
        return self if server is None else getattr(server.api, self.name)

    def __set__(self, server, value) -> None:
        setattr(server.api, self.name, value)


class DemoOneRosterServer:
    """The demo provider. See docs/demo-oneroster.md for every option."""

    page_cap = _ApiOption()
    send_total_count = _ApiOption()
    send_link = _ApiOption()
    latency_seconds = _ApiOption()
    faults = _ApiOption()
    booleans_as_strings = _ApiOption()
    allow_category_writes = _ApiOption()
    tokens = _ApiOption()

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
        allowed_scopes: tuple[str, ...] = ALL_SCOPES,
    ):
        self.host, self.port = host, port
        self.store = DemoStore(source or District(students=students, seed=seed), state_path)
        self.api = OneRosterApi(
            self.store,
            auth=auth,
            tokens=TokenIssuer(client_id, client_secret, token_ttl_seconds, allowed_scopes),
            oauth1=OAuth1Verifier(client_id, client_secret, oauth1_window_seconds),
            page_cap=page_cap,
            send_total_count=send_total_count,
            send_link=send_link,
            latency_ms=latency_ms,
            faults=faults,
            required_headers=required_headers,
            booleans_as_strings=booleans_as_strings,
            allow_category_writes=allow_category_writes,
        )
        self.stats = self.api.stats
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
        handler = type("Handler", (_Handler,), {"api": self.api})
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
        self._thread.join()
        self._httpd.server_close()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> "DemoOneRosterServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    api: OneRosterApi
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
        host = self.headers.get("Host") or "%s:%s" % self.server.server_address[:2]
        request = ApiRequest(self.command, f"http://{host}", path, params, self.headers, body, raw_query=query)
        try:
            response = self.api.handle(request)
        except Exception as exc:  # a bug must still answer, never hang the client
            _log.exception("demo OneRoster provider failed on %s %s", self.command, path)
            response = ApiResponse.error(ProviderError(500, "internal_server_error", f"{type(exc).__name__}"))
        self.api.stats.record(response.status, response.fault)
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
    p.add_argument("--allowed-scopes", default=" ".join(ALL_SCOPES),
                   help="space-separated OAuth 2 scopes this client may be granted (default: all seven 1.1 scopes)")
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
        host=args.host, port=args.port, allowed_scopes=tuple(args.allowed_scopes.split()),
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
