"""Canvas REST client: bearer auth, throttling, Link pagination and the SIS Imports API.

Everything that talks to Canvas goes through `CanvasClient.open()`; the access token lives only in
the session's Authorization header and never appears in a log line, error or metadata value.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import httpx2
from pydantic import Field

from pipeline import settings
from pipeline.http import RetryPolicy, redact, send_with_retries

SUCCESS_STATES = frozenset({"imported", "imported_with_messages"})
FAILURE_STATES = frozenset({"failed", "failed_with_messages", "aborted"})
TERMINAL_STATES = SUCCESS_STATES | FAILURE_STATES
PER_PAGE = 100
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_PORTS = {"http": 80, "https": 443}


class CanvasError(Exception):
    """A Canvas request that failed for good: HTTP status, API path and Canvas's own message."""

    def __init__(self, status_code: int | None, path: str, message: str):
        self.status_code = status_code
        self.path = path
        self.message = message
        status = f"HTTP {status_code}" if status_code is not None else "no response"
        super().__init__(f"Canvas {path}: {status}: {message}")


def is_rate_limited(response: httpx2.Response) -> bool:
    """Canvas throttles with 403 "Rate Limit Exceeded" (older instances) or 429 (newer ones)."""
    if response.status_code == 429:
        return True
    return response.status_code == 403 and "rate limit exceeded" in response.text.lower()


def canvas_message(response: httpx2.Response) -> str:
    """Canvas's error text from any of its error body shapes, else the start of the raw body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    messages: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, str):
            messages.append(value)
        elif isinstance(value, list):
            for item in value:
                collect(item)
        elif isinstance(value, dict):
            if "message" in value:
                collect(value["message"])
            else:
                for item in value.values():
                    collect(item)

    if isinstance(body, dict):
        for key in ("errors", "message", "error"):
            if key in body:
                collect(body[key])
    return "; ".join(messages) or str(body)[:500]


@dataclass
class CanvasStats:
    """Counters of one session (thread-safe), reported as run metadata."""

    requests: int = 0
    retries: int = 0
    throttle_pauses: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)


class CanvasSession:
    """An open connection to one Canvas account. Use through `CanvasClient.open()`."""

    def __init__(self, http: httpx2.Client, account_id: str, policy: RetryPolicy, *, poll_interval_seconds: float,
                 poll_max_interval_seconds: float, import_timeout_seconds: float, rate_limit_floor: float,
                 sleep: Callable[[float], None] = time.sleep):
        self._http = http
        self.base_url = str(http.base_url).rstrip("/")
        self.account_id = account_id
        self._policy = policy
        self._poll_interval = poll_interval_seconds
        self._poll_max_interval = poll_max_interval_seconds
        self._import_timeout = import_timeout_seconds
        self._rate_limit_floor = rate_limit_floor
        self._sleep = sleep
        self.stats = CanvasStats()
        self._log = dg.get_dagster_logger("rosterbridge.canvas")
        # Redacted from every error message, in case Canvas (or a proxy in front of it) echoes the header.
        self._token = http.headers.get("Authorization", "").removeprefix("Bearer ").strip()

    # --- plumbing --------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        def send() -> httpx2.Response:
            self.stats.add("requests")
            return self._http.request(method, path, **kwargs)

        def on_retry(attempt: int, reason: str, delay: float) -> None:
            self.stats.add("retries")
            self._log.warning(f"Canvas {method} {_shown(path)}: {reason}; retry {attempt} in {delay:.1f}s")

        retryable = lambda r: r.status_code in self._policy.retry_statuses or is_rate_limited(r)  # noqa: E731
        try:
            response = send_with_retries(send, self._policy, is_retryable=retryable, on_retry=on_retry,
                                         sleep=self._sleep)
        except httpx2.TransportError as exc:
            raise CanvasError(None, _shown(path), self._redact(f"{type(exc).__name__}: {exc}")) from None
        if response.status_code >= 400:
            raise CanvasError(response.status_code, _shown(path), self._redact(canvas_message(response)))
        self._pause_if_bucket_low(response)
        return response

    def _redact(self, text: str) -> str:
        return redact(text, (self._token,) if self._token else ())

    def _pause_if_bucket_low(self, response: httpx2.Response) -> None:
        """Slow down before Canvas throttles: its leaky bucket refills while we wait."""
        remaining = response.headers.get("X-Rate-Limit-Remaining")
        if remaining is None:
            return
        try:
            level = float(remaining)
        except ValueError:
            return
        if level < self._rate_limit_floor:
            self.stats.add("throttle_pauses")
            shortfall = (self._rate_limit_floor - level) / self._rate_limit_floor
            self._sleep(min(self._policy.backoff_max_seconds, self._policy.backoff_base_seconds * 4 * shortfall))

    def account_path(self, suffix: str = "") -> str:
        path = f"/api/v1/accounts/{self.account_id}"
        return f"{path}/{suffix.lstrip('/')}" if suffix else path

    # --- reads -----------------------------------------------------------------------------------
    def get(self, path: str, params: dict | list[tuple] | None = None) -> Any:
        return self._request("GET", path, params=params).json()

    def get_paginated(self, path: str, params: dict | list[tuple] | None = None) -> Iterator[Any]:
        """Every item across the `Link: rel="next"` pages, the links followed as opaque URLs.

        Canvas wraps some lists in an object (`{"sis_imports": [...]}`): its one list is unwrapped.
        """
        query = list(params.items()) if isinstance(params, dict) else list(params or [])
        if not any(name == "per_page" for name, _ in query):
            query.append(("per_page", PER_PAGE))
        response = self._request("GET", path, params=query)
        while True:
            yield from _page_items(response.json())
            next_link = response.links.get("next", {}).get("url")
            if not next_link:
                return
            target = str(response.url.join(next_link))
            if _origin(target) != _origin(self.base_url):
                # The bearer token goes only to the configured Canvas, and never over plain http when
                # that is https (a proxy rewriting Link headers to http:// would expose it).
                scheme, host, port = _origin(target)
                raise CanvasError(response.status_code, _shown(path),
                                  f"Link rel=next points at {scheme}://{host}:{port}, not the scheme, host and port "
                                  f"of CANVAS_BASE_URL: not followed (the access token is only sent there)")
            response = self._request("GET", target)

    # --- SIS imports -----------------------------------------------------------------------------
    def create_sis_import(self, zip_bytes: bytes, **params: Any) -> dict:
        """POST a zip of SIS CSVs; `params` are SIS Imports API parameters (bools sent as true/false)."""
        form = {"import_type": "instructure_csv", "extension": "zip"}
        for name, value in params.items():
            if value is None:
                continue
            form[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        files = {"attachment": ("sis_import.zip", zip_bytes, "application/zip")}
        return self._request("POST", self.account_path("sis_imports"), data=form, files=files).json()

    def get_sis_import(self, import_id: int) -> dict:
        return self.get(self.account_path(f"sis_imports/{import_id}"))

    def wait_for_sis_import(self, import_id: int, on_poll: Callable[[dict], None] | None = None) -> dict:
        """Poll with growing intervals until the import reaches a terminal `workflow_state`."""
        deadline = time.monotonic() + self._import_timeout
        interval = self._poll_interval
        while True:
            sis_import = self.get_sis_import(import_id)
            if on_poll:
                on_poll(sis_import)
            state = sis_import.get("workflow_state")
            if state in TERMINAL_STATES:
                return sis_import
            if time.monotonic() + interval > deadline:
                raise CanvasError(None, self.account_path(f"sis_imports/{import_id}"),
                                  f"SIS import {import_id} still {state!r} after {self._import_timeout:.0f}s")
            self._sleep(interval)
            interval = min(self._poll_max_interval, interval * 1.5)

    def sis_import_errors(self, import_id: int) -> list[dict]:
        """Every row-level error and warning Canvas recorded for the import (paginated endpoint)."""
        return list(self.get_paginated(self.account_path(f"sis_imports/{import_id}/errors")))


def validate_base_url(url: str) -> str:
    """Canvas's root URL without a trailing slash or /api/v1; https only (plain http on loopback)."""
    url = url.strip().rstrip("/")
    url = url.removesuffix("/api/v1")
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.hostname}"  # never the whole value: it might carry credentials
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        raise ValueError(f"CANVAS_BASE_URL must be an https URL (plain http only for 127.0.0.1), got {shown!r}")
    if not parts.hostname or parts.username or parts.password or parts.query:
        raise ValueError("CANVAS_BASE_URL must be the root URL of Canvas, without credentials or a query string")
    return url


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of `url`, the port made explicit, for same-origin comparison."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(scheme)


def _page_items(body: Any) -> list:
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        lists = [value for value in body.values() if isinstance(value, list)]
        if len(lists) == 1:
            return lists[0]
    return [body]


def _shown(path: str) -> str:
    """A path or next-page URL without its query string (which may carry bookmarks or ids)."""
    return path.split("?", 1)[0]


class CanvasClient(dg.ConfigurableResource):
    """Canvas LMS REST API (`CANVAS_BASE_URL`, `CANVAS_ACCESS_TOKEN`, `CANVAS_ACCOUNT_ID`).

    An empty `base_url` starts the embedded demo Canvas (once per process; state under `<data_dir>/demo/`).
    """

    base_url: str = Field(default="", description="Canvas root URL, e.g. https://district.instructure.com; empty = embedded demo Canvas.")
    access_token: str = Field(default="", repr=False, description="API token of an admin allowed to run SIS imports.")
    account_id: str = Field(default="self", description="Root account id for SIS imports; 'self' is the token user's root account.")
    timeout_seconds: float = 60.0
    max_retries: int = 5
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    poll_interval_seconds: float = 1.0
    poll_max_interval_seconds: float = 15.0
    import_timeout_seconds: float = 6 * 3600.0
    rate_limit_floor: float = Field(default=50.0, description="Pause when X-Rate-Limit-Remaining drops below this.")
    data_dir: str = Field(default="./data", description="Data dir whose demo/ folder holds the embedded demo Canvas state.")

    @contextlib.contextmanager
    def open(self) -> Iterator[CanvasSession]:
        with self._endpoint() as (base_url, token):
            if not token:
                raise CanvasError(None, "/", "CANVAS_ACCESS_TOKEN is not set")
            policy = RetryPolicy(max_retries=self.max_retries, backoff_base_seconds=self.backoff_base_seconds,
                                 backoff_max_seconds=self.backoff_max_seconds)
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            with httpx2.Client(base_url=base_url, headers=headers, timeout=self.timeout_seconds) as http:
                yield CanvasSession(http, self.account_id, policy, poll_interval_seconds=self.poll_interval_seconds,
                                    poll_max_interval_seconds=self.poll_max_interval_seconds,
                                    import_timeout_seconds=self.import_timeout_seconds,
                                    rate_limit_floor=self.rate_limit_floor)

    @contextlib.contextmanager
    def _endpoint(self) -> Iterator[tuple[str, str]]:
        if self.base_url:
            yield validate_base_url(self.base_url), self.access_token
            return
        from pipeline.demo.canvas_server import DEMO_CANVAS_TOKEN, embedded_canvas

        server = embedded_canvas(self.data_dir)
        yield server.base_url, DEMO_CANVAS_TOKEN


class CanvasUploadPolicy(dg.ConfigurableResource):
    """How data sets are diffed in Canvas and when an upload is too destructive to run unattended."""

    diffing_prefix: str = Field(default="rosterbridge", description="Prefix of every diffing_data_set_identifier.")
    change_threshold: int = Field(default=10, ge=1, le=100, description="Canvas change_threshold (%) of diffed imports.")
    mass_delete_threshold_percent: float = Field(
        default=10.0, ge=0, le=100, description="Block an upload deleting more than this share of a guarded file."
    )


def canvas_from_env() -> CanvasClient:
    """The client the environment configures; the token travels as dg.EnvVar, resolved at run launch."""
    base_url = settings.get("CANVAS_BASE_URL")
    config: dict[str, Any] = dict(
        base_url=base_url,
        account_id=settings.get("CANVAS_ACCOUNT_ID"),
        timeout_seconds=settings.get_float("CANVAS_TIMEOUT_SECONDS", minimum=0.001),
        max_retries=settings.get_int("CANVAS_MAX_RETRIES"),
        data_dir=settings.get("ROSTERBRIDGE_DATA_DIR"),
    )
    if base_url:
        config["access_token"] = dg.EnvVar("CANVAS_ACCESS_TOKEN")
    return CanvasClient(**config)


def upload_policy_from_env() -> CanvasUploadPolicy:
    return CanvasUploadPolicy(
        diffing_prefix=settings.get("CANVAS_DIFFING_PREFIX"),
        change_threshold=settings.get_int("CANVAS_CHANGE_THRESHOLD", minimum=1),
        mass_delete_threshold_percent=settings.get_float("ROSTERBRIDGE_MASS_DELETE_THRESHOLD_PERCENT"),
    )
