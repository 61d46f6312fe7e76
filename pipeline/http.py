"""Retries shared by the OneRoster and Canvas clients: bounded exponential backoff with jitter.

A request is re-sent (never re-used) on each attempt, so per-request auth such as an OAuth 1.0a
signature gets a fresh nonce and timestamp every time.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx2

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    retry_statuses: frozenset[int] = field(default=RETRYABLE_STATUSES)

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1-based).

        A server's Retry-After wins (capped at the maximum); otherwise full jitter over an exponential
        window, so that concurrent workers that failed together do not retry together.
        """
        hinted = parse_retry_after(retry_after)
        if hinted is not None:
            return min(hinted, self.backoff_max_seconds)
        window = min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (attempt - 1))
        return random.uniform(window / 2, window)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def send_with_retries(
    send: Callable[[], httpx2.Response],
    policy: RetryPolicy,
    *,
    is_retryable: Callable[[httpx2.Response], bool] | None = None,
    on_retry: Callable[[int, str, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx2.Response:
    """Call `send` until it returns a non-retryable response or the retries run out.

    Retries statuses in `policy.retry_statuses` (or whatever `is_retryable` says), timeouts and
    connection errors. Returns the last response when it is retryable but retries are exhausted, so
    the caller can build its own error from it; re-raises the last transport error likewise.
    `on_retry(attempt, reason, delay)` is told about each retry (for counting and logging).
    """
    retryable = is_retryable or (lambda r: r.status_code in policy.retry_statuses)
    attempt = 0
    while True:
        try:
            response = send()
        except (httpx2.TimeoutException, httpx2.TransportError) as exc:
            if attempt >= policy.max_retries:
                raise
            attempt += 1
            delay = policy.delay(attempt)
            if on_retry:
                on_retry(attempt, f"{type(exc).__name__}", delay)
            sleep(delay)
            continue
        if not retryable(response) or attempt >= policy.max_retries:
            return response
        attempt += 1
        delay = policy.delay(attempt, response.headers.get("Retry-After"))
        if on_retry:
            on_retry(attempt, f"HTTP {response.status_code}", delay)
        response.close()
        sleep(delay)
