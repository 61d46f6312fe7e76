"""Authentication of the demo OneRoster provider, as strict as real ones.

OAuth 2 client credentials: `POST {root}/oauth/token`, client authenticated by HTTP Basic or by form
fields (not both), optional `scope` (a subset of the 1.1 scope URIs the client may have), Bearer tokens
that expire. OAuth 1.0a signed requests (HMAC-SHA1 / HMAC-SHA256, query parameters in the base string,
timestamp window, nonce replay rejection) are verified by oauthlib, an implementation independent of
the client's signer. Failures never echo a secret.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass

from oauthlib.oauth1 import RequestValidator, SignatureOnlyEndpoint
from oauthlib.oauth1.rfc5849 import SIGNATURE_HMAC_SHA1, SIGNATURE_HMAC_SHA256

SCOPE_PREFIX = "https://purl.imsglobal.org/spec/or/v1p1/scope/"
ROSTER_CORE = SCOPE_PREFIX + "roster-core.readonly"
ROSTER = SCOPE_PREFIX + "roster.readonly"
ROSTER_DEMOGRAPHICS = SCOPE_PREFIX + "roster-demographics.readonly"
RESOURCE = SCOPE_PREFIX + "resource.readonly"
GRADEBOOK_READ = SCOPE_PREFIX + "gradebook.readonly"
GRADEBOOK_WRITE = SCOPE_PREFIX + "gradebook.createput"
GRADEBOOK_DELETE = SCOPE_PREFIX + "gradebook.delete"
ALL_SCOPES = (ROSTER_CORE, ROSTER, ROSTER_DEMOGRAPHICS, RESOURCE, GRADEBOOK_READ, GRADEBOOK_WRITE, GRADEBOOK_DELETE)


@dataclass
class AuthError(Exception):
    """401 (or 403 for a missing scope) without details a caller could use to guess credentials."""

    description: str
    status: int = 401
    www_authenticate: str | None = None


@dataclass
class TokenResponse:
    status: int
    body: dict
    headers: dict[str, str]


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class TokenIssuer:
    """OAuth 2 client-credentials token endpoint and Bearer checks (tokens live in this process)."""

    def __init__(self, client_id: str, client_secret: str, ttl_seconds: float, allowed_scopes=ALL_SCOPES):
        self._client_id = client_id
        self._client_secret = client_secret
        self._ttl = ttl_seconds
        self._allowed = tuple(allowed_scopes)
        self._tokens: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def issue(self, content_type: str, body: bytes, authorization: str | None) -> TokenResponse:
        def error(status: int, code: str, description: str) -> TokenResponse:
            headers = {"Cache-Control": "no-store"}
            if status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="oneroster"'
            return TokenResponse(status, {"error": code, "error_description": description}, headers)

        if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            return error(400, "invalid_request", "the token request must be application/x-www-form-urlencoded")
        form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if form.get("grant_type") != "client_credentials":
            return error(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
        basic = _basic_credentials(authorization)
        if basic and ("client_id" in form or "client_secret" in form):
            return error(400, "invalid_request", "use one client authentication method, not Basic and form fields")
        client_id, client_secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        if not (_same(client_id, self._client_id) and _same(client_secret, self._client_secret)):
            return error(401, "invalid_client", "client authentication failed")
        requested = form.get("scope", "").split()
        unknown = [s for s in requested if s not in ALL_SCOPES]
        if unknown:
            return error(400, "invalid_scope", f"unknown scope {unknown[0]!r}")
        granted = [s for s in requested if s in self._allowed] if requested else list(self._allowed)
        if not granted:
            return error(400, "invalid_scope", "none of the requested scopes is allowed for this client")
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._tokens = {t: v for t, v in self._tokens.items() if v[0] > now}
            self._tokens[token] = (now + self._ttl, frozenset(granted))
        body_out = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(self._ttl) if float(self._ttl).is_integer() else self._ttl,
            "scope": " ".join(granted),
        }
        return TokenResponse(200, body_out, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def check(self, authorization: str | None) -> frozenset[str]:
        """The scopes of a valid, unexpired Bearer token; AuthError otherwise."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("a Bearer token is required", www_authenticate='Bearer realm="oneroster"')
        with self._lock:
            entry = self._tokens.get(token.strip())
        if entry is None or entry[0] <= time.monotonic():
            raise AuthError(
                "the access token is invalid or has expired",
                www_authenticate='Bearer realm="oneroster", error="invalid_token"',
            )
        return entry[1]


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return ("", "")
    client_id, _, client_secret = decoded.partition(":")
    # RFC 6749 section 2.3.1: both parts are form-urlencoded before Basic encoding.
    return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(client_secret)


class _Validator(RequestValidator):
    """Lenient about key/nonce shapes (clients differ: Moodle's nonce is 32 hex chars), strict about
    the client, the signature, the timestamp window and nonce reuse."""

    enforce_ssl = False
    allowed_signature_methods = (SIGNATURE_HMAC_SHA1, SIGNATURE_HMAC_SHA256)
    dummy_client = "dummy-client"

    def __init__(self, client_id: str, client_secret: str, window_seconds: int, seen: dict, lock: threading.Lock):
        super().__init__()
        self._client_id = client_id
        self._client_secret = client_secret
        self._window = window_seconds
        self._seen = seen
        self._lock = lock

    @property
    def timestamp_lifetime(self) -> int:
        return self._window

    def check_client_key(self, client_key: str) -> bool:
        return 0 < len(client_key) <= 256 and client_key.isprintable()

    def check_nonce(self, nonce: str) -> bool:
        return 0 < len(nonce) <= 256 and nonce.isprintable()

    def validate_client_key(self, client_key, request) -> bool:
        return _same(client_key, self._client_id)

    def get_client_secret(self, client_key, request) -> str:
        # For an unknown key oauthlib still computes a signature (with this dummy) to keep timing flat.
        return self._client_secret if _same(client_key, self._client_id) else secrets.token_hex(16)

    def validate_timestamp_and_nonce(self, client_key, timestamp, nonce, request, request_token=None, access_token=None):
        with self._lock:
            return (client_key, timestamp, nonce) not in self._seen


class OAuth1Verifier:
    """Verifies OAuth 1.0a signed requests (no tokens: two-legged, as OneRoster uses it)."""

    def __init__(self, client_id: str, client_secret: str, window_seconds: int = 600):
        self._seen: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()
        self._window = window_seconds
        self._endpoint = SignatureOnlyEndpoint(_Validator(client_id, client_secret, window_seconds, self._seen, self._lock))

    def verify(self, url: str, method: str, headers: dict[str, str], body: bytes | None) -> None:
        form_body = None
        if body and headers.get("Content-Type", "").split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
            form_body = body.decode("utf-8", "replace")
        try:
            valid, request = self._endpoint.validate_request(url, method, form_body, headers)
        except ValueError:  # oauthlib raises on malformed parameters in some versions
            valid, request = False, None
        if not valid or request is None:
            raise AuthError("the OAuth 1.0a signature is missing, invalid, expired or replayed",
                            www_authenticate='OAuth realm="oneroster"')
        key = (request.client_key, request.timestamp, request.nonce)
        with self._lock:
            if key in self._seen:  # a concurrent replay of the same nonce got here first
                raise AuthError("the OAuth 1.0a nonce was already used", www_authenticate='OAuth realm="oneroster"')
            now = time.time()
            if len(self._seen) > 10_000:
                for old in [k for k, t in self._seen.items() if t < now - 2 * self._window]:
                    del self._seen[old]
            self._seen[key] = now
