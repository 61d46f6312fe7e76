"""Retries shared by the OneRoster and Canvas clients: bounded exponential backoff with jitter.

A request is re-sent (never re-used) on each attempt, so per-request auth such as an OAuth 1.0a
signature gets a fresh nonce and timestamp every time.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpx2

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Failures of our own request (a header value HTTP does not allow, a scheme httpx cannot send): sending
# it again cannot help.
UNSENDABLE = (httpx2.LocalProtocolError, httpx2.UnsupportedProtocol)
# Added to an honoured Retry-After (at most this share of it, and a second), so that workers told the
# same moment do not all come back at that moment.
RETRY_AFTER_JITTER_SHARE = 0.1


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    retry_statuses: frozenset[int] = field(default=RETRYABLE_STATUSES)
    # The longest Retry-After waited for as told; a longer one is not retried (`waits_too_long`), since
    # coming back early only meets the rate limiter again. None: any Retry-After is cut to
    # backoff_max_seconds and retried.
    retry_after_max_seconds: float | None = None

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1-based).

        A server's Retry-After wins (see `retry_after_max_seconds`); otherwise full jitter over an
        exponential window, so that concurrent workers that failed together do not retry together.
        """
        hinted = parse_retry_after(retry_after)
        if hinted is not None:
            if self.retry_after_max_seconds is None:
                return min(hinted, self.backoff_max_seconds)
            return hinted + random.uniform(0, min(1.0, hinted * RETRY_AFTER_JITTER_SHARE))
        window = min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (attempt - 1))
        return random.uniform(window / 2, window)

    def waits_too_long(self, response: httpx2.Response) -> bool:
        """Whether the response asks for a longer wait than this policy will do (it is not retried)."""
        hinted = parse_retry_after(response.headers.get("Retry-After"))
        return self.retry_after_max_seconds is not None and hinted is not None and hinted > self.retry_after_max_seconds


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
    connection errors. Returns the last response when it is retryable but retries are exhausted (or
    its Retry-After is longer than the policy waits), so the caller can build its own error from it;
    re-raises the last transport error likewise, and at once one that sending again cannot mend
    (`UNSENDABLE`). `on_retry(attempt, reason, delay)` is told about each retry (for counting and logging).
    """
    retryable = is_retryable or (lambda r: r.status_code in policy.retry_statuses)
    attempt = 0
    while True:
        try:
            response = send()
        except UNSENDABLE:
            raise
        except (httpx2.TimeoutException, httpx2.TransportError) as exc:
            if attempt >= policy.max_retries:
                raise
            attempt += 1
            delay = policy.delay(attempt)
            if on_retry:
                on_retry(attempt, f"{type(exc).__name__}", delay)
            sleep(delay)
            continue
        if not retryable(response) or attempt >= policy.max_retries or policy.waits_too_long(response):
            return response
        attempt += 1
        delay = policy.delay(attempt, response.headers.get("Retry-After"))
        if on_retry:
            on_retry(attempt, f"HTTP {response.status_code}", delay)
        response.close()
        sleep(delay)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret, raw or as Python (str or bytes) or JSON escapes it, shown as `***`: an
    error that quotes a request (a header value with a control character) shows the secret escaped."""
    for secret in secrets:
        if len(secret) >= 4:
            for form in (secret, repr(secret)[1:-1], repr(secret.encode("utf-8", "backslashreplace"))[2:-1],
                         json.dumps(secret)[1:-1]):
                text = text.replace(form, "***")
    return text
