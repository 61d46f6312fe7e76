"""Demo Canvas: a real HTTP server with Canvas's SIS Imports API and the read APIs grade passback uses.

    with DemoCanvasServer() as srv:            # ephemeral port on 127.0.0.1, state in memory
        srv.base_url, srv.state, srv.seed_grades(seed=1), srv.set_grade(...), srv.fail_next_import("...")
    embedded_canvas(data_dir)                  # one per process, state in <data_dir>/demo/canvas.sqlite
    python -m pipeline.demo.canvas_server --port 8660 [--seed-grades]

Every response carries Canvas's throttling headers (`X-Request-Cost`, `X-Rate-Limit-Remaining`) from a
leaky bucket like Canvas's; `CanvasFaultPlan` injects throttling (403 `403 Forbidden (Rate Limit
Exceeded)` / 429) and 5xx responses deterministically for tests.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from pipeline import settings
from pipeline.demo import canvas_grades, canvas_import
from pipeline.demo.canvas_api import ApiError, ApiRequest, ApiResult, ReadApi, read_routes
from pipeline.demo.canvas_sis_api import SisImportApi
from pipeline.demo.canvas_state import CanvasDB, DemoCanvasState

# Public demo credential: only ever valid against this demo server.
DEMO_CANVAS_TOKEN = "demo-canvas-token"
DEFAULT_PER_PAGE, MAX_PER_PAGE = 10, 100
INVALID_TOKEN = {"errors": [{"message": "Invalid access token."}]}


@dataclasses.dataclass(frozen=True)
class CanvasFaultPlan:
    """Deterministic faults: request n (0-based, counting requests whose path matches `path_pattern`)
    is throttled if n < throttle_first_n, else fails with a 5xx if n < throttle_first_n +
    server_error_first_n, else either happens with the given rate, decided by (seed, n)."""

    seed: int = 0
    throttle_first_n: int = 0
    throttle_rate: float = 0.0
    throttle_statuses: tuple[int, ...] = (403,)  # cycled; (403, 429) alternates
    retry_after_seconds: float | None = None  # sent with 429s
    server_error_first_n: int = 0
    server_error_rate: float = 0.0
    server_error_status: int = 503
    path_pattern: str = ""

    def decide(self, n: int) -> str | None:
        if n < self.throttle_first_n:
            return "throttle"
        if n < self.throttle_first_n + self.server_error_first_n:
            return "server_error"
        roll = random.Random(f"{self.seed}:{n}").random()
        if roll < self.throttle_rate:
            return "throttle"
        if roll < self.throttle_rate + self.server_error_rate:
            return "server_error"
        return None


@dataclasses.dataclass(frozen=True)
class CanvasThrottle:
    """Canvas's leaky bucket: each request reserves `up_front_cost` while it runs and then costs its
    run time; the bucket drains at `outflow_per_second`. Over `capacity`, requests are throttled."""

    capacity: float = 700.0
    up_front_cost: float = 50.0
    outflow_per_second: float = 10.0
    status: int = 403


class _Bucket:
    def __init__(self, throttle: CanvasThrottle):
        self.throttle, self.level, self.stamp = throttle, 0.0, time.monotonic()
        self.lock = threading.Lock()

    def _drain(self) -> None:
        now = time.monotonic()
        self.level = max(0.0, self.level - (now - self.stamp) * self.throttle.outflow_per_second)
        self.stamp = now

    def reserve(self) -> bool:
        with self.lock:
            self._drain()
            if self.level + self.throttle.up_front_cost > self.throttle.capacity:
                return False
            self.level += self.throttle.up_front_cost
            return True

    def settle(self, cost: float, reserved: bool) -> float:
        """Replace the reservation with the real cost; returns what is left in the bucket."""
        with self.lock:
            self._drain()
            self.level = max(0.0, self.level + cost - (self.throttle.up_front_cost if reserved else 0.0))
            return self.throttle.capacity - self.level


class DemoCanvasServer:
    def __init__(self, token: str = DEMO_CANVAS_TOKEN, state_path: Path | str | None = None, polls_to_finish: int = 2,
                 latency_ms: int = 0, faults: CanvasFaultPlan | None = None, throttle: CanvasThrottle | None = None,
                 host: str = "127.0.0.1", port: int = 0, auto_seed_grades: int | None = None):
        self.token = token
        self.db = CanvasDB(Path(state_path) if state_path is not None else None)
        self.state = DemoCanvasState(self.db)
        self.polls_to_finish = polls_to_finish
        self.latency_ms = latency_ms
        self.faults = faults
        self.fault_counts: dict[str, int] = {"throttle": 0, "server_error": 0}
        self._fault_n = 0
        self._fault_lock = threading.Lock()
        self._fault_paths = re.compile(faults.path_pattern) if faults and faults.path_pattern else None
        self.bucket = _Bucket(throttle or CanvasThrottle())
        self.read_api = ReadApi(self.db)
        self.sis_api = SisImportApi(self.db, self.read_api, polls_to_finish, auto_seed_grades)
        segment = r"([^/]+)"
        self.routes = [
            ("POST", re.compile(rf"/api/v1/accounts/{segment}/sis_imports"), self.sis_api.create),
            ("GET", re.compile(rf"/api/v1/accounts/{segment}/sis_imports"), self.sis_api.list),
            ("GET", re.compile(rf"/api/v1/accounts/{segment}/sis_imports/importing"), self.sis_api.importing),
            ("GET", re.compile(rf"/api/v1/accounts/{segment}/sis_imports/(\d+)"), self.sis_api.get),
            ("GET", re.compile(rf"/api/v1/accounts/{segment}/sis_imports/(\d+)/errors"), self.sis_api.errors),
            ("GET", re.compile(rf"/api/v1/accounts/{segment}/sis_import_errors"), self.sis_api.errors),
            ("PUT", re.compile(rf"/api/v1/accounts/{segment}/sis_imports/(\d+)/abort"), self.sis_api.abort),
            ("GET", re.compile(r"/api/v1/users/self"), self._self_user),
            *read_routes(self.read_api),
        ]
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> DemoCanvasServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="demo-canvas", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
        self.sis_api.wait_for_workers()  # an import being applied finishes (or rolls back) before the state closes
        self.db.close()

    def __enter__(self) -> DemoCanvasServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- Python API for tests and demos --------------------------------------------------------------
    def seed_grades(self, seed: int = 1, courses: list[str] | None = None) -> dict[str, int]:
        """Assignment groups, assignments and submissions for courses (SIS ids; None = all) with students."""
        with self.db.transaction() as conn:
            return canvas_grades.seed_courses(conn, seed=seed, course_sis_ids=courses)

    def set_grade(self, course_sis_id: str, assignment_id: int, user_sis_id: str, *, score: float | None = None,
                  excused: bool | None = None, posted: bool | None = None) -> dict:
        with self.db.transaction() as conn:
            return canvas_grades.set_grade(conn, course_sis_id, assignment_id, user_sis_id, score=score,
                                           excused=excused, posted=posted)

    def fail_next_import(self, message: str = "Forced failure (demo Canvas)") -> None:
        """The next import created (by any process on this state) ends `failed_with_messages`."""
        with self.db.transaction() as conn:
            canvas_import.fail_next_import(conn, message)

    # --- request handling ----------------------------------------------------------------------------
    def _self_user(self, req: ApiRequest) -> ApiResult:
        return ApiResult(200, {"id": 1, "name": "Demo Canvas admin", "sortable_name": "admin, Demo Canvas"})

    def _authorized(self, req: ApiRequest) -> bool:
        header = req.headers.get("Authorization") or ""
        given = header[7:].strip() if header.lower().startswith("bearer ") else (req.query.get("access_token") or [""])[0]
        return bool(given) and given == self.token

    def _fault(self, path: str) -> tuple[str, int] | None:
        """The injected fault for this request, if any, and how many of its kind came before it."""
        if self.faults is None or (self._fault_paths and not self._fault_paths.search(path)):
            return None
        with self._fault_lock:
            n = self._fault_n
            self._fault_n += 1
            kind = self.faults.decide(n)
            if kind is None:
                return None
            self.fault_counts[kind] += 1
            return kind, self.fault_counts[kind] - 1

    def handle(self, req: ApiRequest) -> tuple[int, dict[str, str], bytes]:
        started = time.perf_counter()
        reserved = self.bucket.reserve()  # held while the request runs, latency included, as in Canvas
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        try:
            status, headers, body = self._respond(req, reserved)
        except Exception as exc:  # a demo bug still answers like Canvas would (500), and says what broke
            status, headers, body = _json(500, {"errors": [{"message": f"{type(exc).__name__}: {exc}"}]})
        remaining = self.bucket.settle(time.perf_counter() - started, reserved)
        headers["X-Request-Cost"] = f"{time.perf_counter() - started:.6f}"
        headers["X-Rate-Limit-Remaining"] = f"{max(0.0, remaining):.1f}" if status not in (403, 429) else "0.0"
        return status, headers, body

    def _respond(self, req: ApiRequest, reserved: bool) -> tuple[int, dict[str, str], bytes]:
        if not self._authorized(req):
            return _json(401, INVALID_TOKEN, {"WWW-Authenticate": 'Bearer realm="canvas-lms"'})
        fault = self._fault(req.path)
        if fault and fault[0] == "throttle":
            statuses = self.faults.throttle_statuses
            return self._throttled(statuses[fault[1] % len(statuses)])
        if not reserved:
            return self._throttled(self.bucket.throttle.status)
        if fault:
            return _json(self.faults.server_error_status, {"errors": [{"message": "Internal server error (injected)"}]})
        for method, pattern, handler in self.routes:
            match = pattern.fullmatch(req.path)
            if match and method == req.method:
                try:
                    result = handler(req, *match.groups())
                except ApiError as exc:
                    return _json(exc.status, exc.body)
                return self._render(req, result)
        return _json(404, {"errors": [{"message": "The specified resource does not exist."}]})

    def _throttled(self, status: int) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if status == 429 and self.faults and self.faults.retry_after_seconds is not None:
            headers["Retry-After"] = f"{self.faults.retry_after_seconds:g}"
        text = "403 Forbidden (Rate Limit Exceeded)" if status == 403 else "429 Too Many Requests (Rate Limit Exceeded)"
        return status, headers, text.encode()

    def _render(self, req: ApiRequest, result: ApiResult) -> tuple[int, dict[str, str], bytes]:
        if not result.paginate:
            return _json(result.status, result.body, result.headers)
        body = result.body
        wrapper = next(iter(body)) if isinstance(body, dict) else None
        items = body[wrapper] if wrapper else body
        per_page = _int(req.param("per_page"), DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
        last = max(1, -(-len(items) // per_page))
        page = _int(req.param("page"), 1, 1, None)
        chunk = items[(page - 1) * per_page: page * per_page]
        links = {"current": page, "first": 1, "last": last}
        if page < last:
            links["next"] = page + 1
        if page > 1:
            links["prev"] = page - 1
        host = req.headers.get("Host") or urlsplit(self.base_url).netloc
        query = {k: v for k, v in req.query.items() if k not in ("page", "per_page", "access_token")}

        def url(n: int) -> str:
            return f"http://{host}{req.path}?" + urlencode({**query, "page": [str(n)], "per_page": [str(per_page)]},
                                                          doseq=True)

        link = ",".join(f'<{url(n)}>; rel="{rel}"' for rel, n in links.items())
        return _json(result.status, {wrapper: chunk} if wrapper else chunk, {"Link": link, **result.headers})


def _int(raw: str | None, default: int, low: int, high: int | None) -> int:
    value = int(raw) if raw and raw.isdigit() else default
    value = max(low, value)
    return min(high, value) if high is not None else value


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, json.dumps(body).encode()


def _handler_for(server: DemoCanvasServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in one buffered write with TCP_NODELAY: otherwise every small
        # response waits ~40 ms for the client's delayed ACK (Nagle).
        wbufsize = 1 << 16
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            request = ApiRequest(self.command, parts.path.rstrip("/") or "/", parse_qs(parts.query, keep_blank_values=True),
                                 self.headers, self._body())
            status, headers, payload = server.handle(request)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _body(self) -> bytes:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: object) -> None:  # quiet: tests and Dagster logs stay readable
            pass

    return Handler


_EMBEDDED: dict[Path, DemoCanvasServer] = {}
_EMBEDDED_LOCK = threading.Lock()


def embedded_canvas(data_dir: Path, *, seed_grades: int | None = 1) -> DemoCanvasServer:
    """This process's demo Canvas on <data_dir>/demo/canvas.sqlite (started once, stopped at exit).

    Grades are seeded (with `seed_grades`) for courses that get students, so passback has work to do.
    """
    state_path = (Path(data_dir) / "demo" / "canvas.sqlite").resolve()
    with _EMBEDDED_LOCK:
        server = _EMBEDDED.get(state_path)
        if server is None:
            server = DemoCanvasServer(state_path=state_path, auto_seed_grades=seed_grades).start()
            _EMBEDDED[state_path] = server
            atexit.register(server.stop)
        return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the demo Canvas (SIS Imports API + grade read APIs).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8660)
    parser.add_argument("--state", type=Path, default=None,
                        help="SQLite state file (default: <ROSTERBRIDGE_DATA_DIR>/demo/canvas.sqlite)")
    parser.add_argument("--token", default=DEMO_CANVAS_TOKEN)
    parser.add_argument("--polls-to-finish", type=int, default=2)
    parser.add_argument("--seed-grades", nargs="?", type=int, const=1, default=None, metavar="SEED",
                        help="seed gradebooks now and for courses that get students later")
    args = parser.parse_args(argv)
    state = args.state or Path(settings.get("ROSTERBRIDGE_DATA_DIR")) / "demo" / "canvas.sqlite"
    server = DemoCanvasServer(token=args.token, state_path=state, polls_to_finish=args.polls_to_finish,
                              host=args.host, port=args.port, auto_seed_grades=args.seed_grades)
    if args.seed_grades is not None:
        print(f"seeded: {server.seed_grades(seed=args.seed_grades)}")
    shown = repr(DEMO_CANVAS_TOKEN) if args.token == DEMO_CANVAS_TOKEN else "given by --token"  # never echo a real one
    print(f"demo Canvas on {server.base_url}/api/v1 (token {shown}, state {state})", flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
