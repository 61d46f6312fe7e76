"""How rosterbridge authenticates to a OneRoster 1.1 provider: httpx2 `Auth` objects built on authlib.

Two schemes, chosen by configuration:

* OAuth 2 client credentials: one token per session, fetched from the token URL with the client id and
  secret in HTTP Basic or in the form body, renewed shortly before it expires and once after a 401.
* OAuth 1.0a signed requests (HMAC-SHA256 or HMAC-SHA1): httpx2 runs an `Auth` flow for every request
  it sends, so every attempt, retries included, carries a fresh nonce and timestamp.

Both objects are shared by the worker threads of one session, so the token cache is guarded by a lock.
Nothing here puts the client secret or a token in a repr, a log line or an exception message.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from base64 import b64encode
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from urllib.parse import quote_plus

import httpx2
from authlib.common.encoding import to_bytes, to_unicode
from authlib.integrations.httpx_client import OAuth1Auth, OAuth2Auth
from authlib.integrations.httpx_client.oauth2_client import OAuth2ClientAuth
from authlib.oauth1 import ClientAuth
from authlib.oauth1.rfc5849.signature import generate_signature_base_string
from authlib.oauth1.rfc5849.util import escape
from authlib.oauth2.rfc6749 import OAuth2Token

OAUTH1_SIGNATURE_METHODS = ("HMAC-SHA256", "HMAC-SHA1")
# Configuration may name a token endpoint auth method by its short name (ONEROSTER_TOKEN_AUTH_METHOD=post).
TOKEN_AUTH_METHODS = {
    "client_secret_basic": "client_secret_basic",
    "basic": "client_secret_basic",
    "client_secret_post": "client_secret_post",
    "post": "client_secret_post",
}
# Renew this long before the provider says the token expires, so a request never races the expiry
# (capped at a tenth of the lifetime for providers that hand out very short-lived tokens).
RENEW_MARGIN_SECONDS = 60.0


def sign_hmac_sha256(client: ClientAuth, request) -> str:
    """RFC 5849 §3.4.2 with SHA-256 in place of SHA-1 (what the IMS-certified 1.1 clients send)."""
    base_string = generate_signature_base_string(request)
    key = f"{escape(client.client_secret or '')}&{escape(client.token_secret or '')}"
    digest = hmac.new(to_bytes(key), to_bytes(base_string), hashlib.sha256).digest()
    return to_unicode(b64encode(digest))


ClientAuth.register_signature_method("HMAC-SHA256", sign_hmac_sha256)


class OAuth1Signer(OAuth1Auth):
    """OAuth 1.0a request signing that keeps JSON bodies.

    authlib signs a non-form body as empty (right: OneRoster providers sign no body hash) but then also
    *sends* it empty, which would turn every gradebook PUT into an empty PUT. This sends the original body.
    """

    def __init__(self, client_id: str, client_secret: str, signature_method: str) -> None:
        if signature_method not in OAUTH1_SIGNATURE_METHODS:
            raise ValueError(
                f"OAuth 1 signature method must be one of {', '.join(OAUTH1_SIGNATURE_METHODS)}, "
                f"got {signature_method!r}"
            )
        super().__init__(client_id, client_secret, signature_method=signature_method)

    def __repr__(self) -> str:
        return f"OAuth1Signer(signature_method={self.signature_method!r})"

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        # Query parameters are in the URL, so they are part of the signature base string.
        _, headers, _ = self.sign(request.method, str(request.url), dict(request.headers), b"")
        request.headers["Authorization"] = headers["Authorization"]
        yield request


def encode_client_secret_basic(client, method, uri, headers, body):
    """HTTP Basic client authentication as RFC 6749 §2.3.1 says: id and secret form-urlencoded first.

    (authlib's built-in skips the encoding, which breaks secrets holding `+`, `%`, `:` or spaces.)
    """
    pair = f"{quote_plus(client.client_id)}:{quote_plus(client.client_secret or '')}"
    headers["Authorization"] = f"Basic {to_unicode(b64encode(to_bytes(pair)))}"
    return uri, headers, body


class TokenRequestError(Exception):
    """The token endpoint refused the client credentials or answered something that is not a token."""

    def __init__(self, message: str, *, status_code: int | None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class AccessToken:
    value: OAuth2Token = field(repr=False)  # the bearer token itself
    renew_at: float  # time.monotonic() after which the token is renewed before use

    @property
    def scopes(self) -> list[str] | None:
        """Scopes the provider says it granted, or None when its token response does not say."""
        scope = self.value.get("scope")
        if scope is None:
            return None
        return scope.split() if isinstance(scope, str) else [str(s) for s in scope]


class ClientCredentialsTokens:
    """A cached OAuth 2 client-credentials token, renewed before expiry and on demand after a 401.

    `post_token_request(request)` sends the token request (the session passes its retrying sender, so a
    busy token endpoint gets the same backoff as the API).
    """

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str,
        token_auth_method: str,
        post_token_request: Callable[[httpx2.Request], httpx2.Response],
    ) -> None:
        if token_auth_method not in TOKEN_AUTH_METHODS:
            raise ValueError(
                "token endpoint auth method must be client_secret_basic (basic) or client_secret_post "
                f"(post), got {token_auth_method!r}"
            )
        self.token_url = token_url
        self._scope = " ".join(scope.split())
        method = TOKEN_AUTH_METHODS[token_auth_method]
        self._client_auth = OAuth2ClientAuth(
            client_id, client_secret, encode_client_secret_basic if method == "client_secret_basic" else method
        )
        self._post = post_token_request
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        # Every bearer value this session received, for redaction. A tuple replaced whole (under the
        # lock) and read without it: error messages are built while a token fetch holds the lock.
        self._issued: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"ClientCredentialsTokens(token_url={self.token_url!r}, scope={self._scope!r})"

    def current(self) -> AccessToken:
        """The cached token, fetched first or renewed if it is about to expire."""
        with self._lock:
            if self._token is None or time.monotonic() >= self._token.renew_at:
                self._token = self._fetch()
            return self._token

    def issued_values(self) -> tuple[str, ...]:
        """Every access token issued to this session: a provider may echo one back in an error body.

        Lock-free on purpose: a failing token request redacts its message while `current()` holds the lock.
        """
        return self._issued

    def renew(self, rejected: AccessToken) -> AccessToken:
        """A new token after the provider rejected `rejected`; threads that saw the same 401 share one renewal."""
        with self._lock:
            if self._token is rejected or self._token is None:
                self._token = self._fetch()
            return self._token

    def _fetch(self) -> AccessToken:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        request = httpx2.Request("POST", self.token_url, data=form, headers={"Accept": "application/json"})
        # OAuth2ClientAuth puts the credentials in the Basic header or the form, as configured.
        request = next(self._client_auth.auth_flow(request))
        response = self._post(request)
        token = _parse_token_response(response, self.token_url)
        self._issued = (*self._issued, str(token["access_token"]))
        lifetime = _expires_in(token)
        margin = min(RENEW_MARGIN_SECONDS, lifetime / 10) if lifetime is not None else 0.0
        renew_at = time.monotonic() + lifetime - margin if lifetime is not None else float("inf")
        return AccessToken(value=token, renew_at=renew_at)


def _parse_token_response(response: httpx2.Response, token_url: str) -> OAuth2Token:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code != 200 or not isinstance(payload, dict) or "access_token" not in payload:
        detail = ""
        if isinstance(payload, dict) and payload.get("error"):
            detail = f": {payload['error']}"
            if payload.get("error_description"):
                detail += f" ({payload['error_description']})"
        if response.status_code in (400, 401, 403):
            hint = "check ONEROSTER_CLIENT_ID, ONEROSTER_CLIENT_SECRET, ONEROSTER_SCOPE and ONEROSTER_TOKEN_AUTH_METHOD"
        else:
            hint = "check ONEROSTER_TOKEN_URL"
        raise TokenRequestError(
            f"token request to {token_url} failed with HTTP {response.status_code}{detail}; {hint}",
            status_code=response.status_code,
        )
    token_type = str(payload.get("token_type", "bearer")).lower()
    if token_type != "bearer":
        raise TokenRequestError(
            f"token endpoint {token_url} issued a {token_type!r} token; OneRoster needs a bearer token",
            status_code=response.status_code,
        )
    return OAuth2Token.from_dict(payload)


def _expires_in(token: OAuth2Token) -> float | None:
    try:
        return float(token["expires_in"])
    except (KeyError, TypeError, ValueError):
        return None


class BearerTokenAuth(httpx2.Auth):
    """Sends the cached bearer token; on a 401, renews it once and re-sends the request."""

    def __init__(self, tokens: ClientCredentialsTokens) -> None:
        self.tokens = tokens

    def __repr__(self) -> str:
        return f"BearerTokenAuth({self.tokens!r})"

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        token = self.tokens.current()
        response = yield _with_bearer(request, token)
        if response.status_code == 401:
            renewed = self.tokens.renew(token)
            yield _with_bearer(request, renewed)


def _with_bearer(request: httpx2.Request, token: AccessToken) -> httpx2.Request:
    _, headers, _ = OAuth2Auth(token.value).prepare(str(request.url), dict(request.headers), b"")
    request.headers["Authorization"] = headers["Authorization"]
    return request


@dataclass(frozen=True)
class Credentials:
    """Which scheme to authenticate with, and its parameters (the secret stays out of repr)."""

    scheme: str  # "oauth2" | "oauth1"
    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)
    token_url: str = ""
    scope: str = ""
    token_auth_method: str = "client_secret_basic"
    signature_method: str = "HMAC-SHA256"


def request_auth(
    credentials: Credentials, post_token_request: Callable[[httpx2.Request], httpx2.Response]
) -> tuple[httpx2.Auth, ClientCredentialsTokens | None]:
    """The httpx2 auth for API requests, plus the token cache when the scheme has one."""
    if credentials.scheme == "oauth1":
        return OAuth1Signer(credentials.client_id, credentials.client_secret, credentials.signature_method), None
    tokens = ClientCredentialsTokens(
        token_url=credentials.token_url,
        client_id=credentials.client_id,
        client_secret=credentials.client_secret,
        scope=credentials.scope,
        token_auth_method=credentials.token_auth_method,
        post_token_request=post_token_request,
    )
    return BearerTokenAuth(tokens), tokens
