"""OneRoster client pieces that need no server: statusInfoSet parsing, filters, configuration, and OAuth 1
signatures checked by an independent verifier (oauthlib)."""

from __future__ import annotations

import datetime as dt
import pickle

import dagster as dg
import httpx2
import pytest
from authlib.oauth2.rfc6749 import OAuth2Token
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA1, SIGNATURE_HMAC_SHA256, RequestValidator, SignatureOnlyEndpoint

from pipeline.resources.oneroster import (
    OneRosterClient,
    OneRosterError,
    StatusInfo,
    dateLastModified_filter,
    filter_expression,
    oneroster_from_env,
    parse_status_info,
    validate_base_url,
)
from pipeline.resources.oneroster_auth import AccessToken, OAuth1Signer

SECRET = "s3cr3t-consumer-secret"


# --- statusInfoSet -----------------------------------------------------------------------------------


def test_status_info_nested_code_minor():
    body = {
        "statusInfoSet": [
            {
                "imsx_codeMajor": "failure",
                "imsx_severity": "error",
                "imsx_CodeMinor": {
                    "imsx_codeMinorField": [
                        {"imsx_codeMinorFieldName": "TargetEndSystem", "imsx_codeMinorFieldValue": "invalid_filter_field"}
                    ]
                },
                "imsx_description": "filter field 'colour' is unknown",
            }
        ]
    }
    assert parse_status_info(body) == StatusInfo("failure", "error", "invalid_filter_field", "filter field 'colour' is unknown")


def test_status_info_flat_code_minor_and_single_object():
    body = {"statusInfoSet": {"imsx_codeMajor": "failure", "imsx_severity": "error", "imsx_codeMinor": "unknownobject"}}
    assert parse_status_info(body) == StatusInfo("failure", "error", "unknownobject", None)


def test_status_info_older_shape_at_top_level():
    body = {"CodeMajor": "failure", "Severity": "error", "CodeMinor": "unknown object", "Description": "no such user"}
    info = parse_status_info(body)
    assert info == StatusInfo("failure", "error", "unknown object", "no such user")
    assert str(info) == "codeMajor=failure, severity=error, codeMinor=unknown object, description=no such user"


def test_status_info_prefers_the_failure_among_warnings():
    body = {
        "statusInfoSet": [
            {"imsx_codeMajor": "success", "imsx_severity": "warning", "imsx_codeMinor": "invalid_sort_field"},
            {"imsx_codeMajor": "failure", "imsx_severity": "error", "imsx_codeMinor": "invaliddata"},
        ]
    }
    assert parse_status_info(body).code_minor == "invaliddata"


def test_error_survives_pickling():
    error = OneRosterError("GET /users failed", endpoint="/users", status_code=400,
                           status_info=StatusInfo("failure", "error", "invaliddata", None))
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.endpoint, copy.status_code, copy.status_info) == (
        str(error), "/users", 400, error.status_info)


@pytest.mark.parametrize("body", [None, [], "oops", {}, {"users": []}, {"statusInfoSet": "broken"}])
def test_status_info_absent(body):
    assert parse_status_info(body) is None


# --- filters -----------------------------------------------------------------------------------------


def test_date_last_modified_filter_is_utc_and_quoted():
    since = dt.datetime(2024, 5, 1, 14, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert dateLastModified_filter(since) == "dateLastModified>'2024-05-01T12:00:00Z'"


def test_date_last_modified_filter_cuts_fractions_downwards():
    since = dt.datetime(2024, 5, 1, 12, 0, 0, 999999, tzinfo=dt.timezone.utc)
    assert dateLastModified_filter(since) == "dateLastModified>'2024-05-01T12:00:00.999Z'"


def test_date_last_modified_filter_refuses_naive_datetimes():
    with pytest.raises(ValueError, match="timezone-aware"):
        dateLastModified_filter(dt.datetime(2024, 5, 1))


def test_filter_expression_doubles_quotes():
    assert filter_expression("familyName", "=", "O'Brien") == "familyName='O''Brien'"
    with pytest.raises(ValueError):
        filter_expression("status", "LIKE", "x")


# --- configuration -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://sis.example.org/ims/oneroster/v1p1/",
        "https://sis.example.org/district/ims/oneroster/v1p1",
        "http://127.0.0.1:8650/ims/oneroster/v1p1",
    ],
)
def test_base_url_accepted(url):
    assert validate_base_url(url) == url.rstrip("/")


@pytest.mark.parametrize(
    "url, message",
    [
        ("https://sis.example.org/ims/oneroster/v1p2", "ending in /ims/oneroster/v1p1"),
        ("https://sis.example.org", "ending in /ims/oneroster/v1p1"),
        ("http://sis.example.org/ims/oneroster/v1p1", "must use https"),
        ("https://user:pw@sis.example.org/ims/oneroster/v1p1", "credentials"),
    ],
)
def test_base_url_rejected(url, message):
    with pytest.raises(ValueError, match=message):
        validate_base_url(url)


@pytest.mark.parametrize("url", [
    "http://admin:hunter2@sis.example.org/ims/oneroster/v1p1",  # plain http
    "https://admin:hunter2@sis.example.org/oneroster",  # wrong path
])
def test_base_url_errors_never_quote_embedded_credentials(url):
    with pytest.raises(ValueError) as raised:
        validate_base_url(url)
    assert "hunter2" not in str(raised.value)


def test_resource_repr_hides_secrets():
    client = OneRosterClient(
        base_url="https://sis.example.org/ims/oneroster/v1p1",
        client_id="district-id",
        client_secret=SECRET,
        token_url="https://sis.example.org/token",
        extra_headers={"x-vendor-authorization": "vendor:key-secret"},
    )
    text = repr(client) + str(client)
    assert SECRET not in text and "key-secret" not in text and "district-id" not in text


def test_misconfiguration_is_listed_in_one_clear_error():
    client = OneRosterClient(
        base_url="https://sis.example.org/ims/oneroster/v1p1", auth="oauth3", client_id="a", page_size=0
    )
    with pytest.raises(ValueError) as caught:
        client.open()
    message = str(caught.value)
    assert "ONEROSTER_AUTH must be oauth2 or oauth1" in message
    assert "ONEROSTER_CLIENT_ID and ONEROSTER_CLIENT_SECRET must both be set" in message
    assert "ONEROSTER_PAGE_SIZE must be at least 1" in message


def test_bad_extra_headers_json_does_not_echo_the_value():
    client = OneRosterClient(
        base_url="https://sis.example.org/ims/oneroster/v1p1",
        auth="oauth1",
        client_id="id",
        client_secret=SECRET,
        extra_headers_json='{"x-vendor-authorization": vendor-key-secret}',
    )
    with pytest.raises(ValueError, match="ONEROSTER_EXTRA_HEADERS must be a JSON object") as caught:
        client.open()
    assert "vendor-key-secret" not in str(caught.value)


def test_from_env_passes_secrets_as_env_vars(monkeypatch):
    monkeypatch.setenv("ONEROSTER_BASE_URL", "https://sis.example.org/ims/oneroster/v1p1")
    monkeypatch.setenv("ONEROSTER_CLIENT_ID", "district-id")
    monkeypatch.setenv("ONEROSTER_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("ONEROSTER_EXTRA_HEADERS", '{"x-vendor-authorization": "k:s"}')
    monkeypatch.setenv("ONEROSTER_TOKEN_AUTH_METHOD", "post")
    monkeypatch.setenv("ONEROSTER_PAGE_SIZE", "250")
    client = oneroster_from_env()
    assert isinstance(client.client_secret, dg.EnvVar) and client.client_secret.env_var_name == "ONEROSTER_CLIENT_SECRET"
    assert isinstance(client.extra_headers_json, dg.EnvVar)
    assert client.token_auth_method == "client_secret_post" and client.page_size == 250
    resolved = client.process_config_and_initialize()
    assert resolved.client_secret == SECRET and resolved.extra_headers_json == '{"x-vendor-authorization": "k:s"}'


def test_from_env_without_base_url_is_the_demo(monkeypatch):
    monkeypatch.delenv("ONEROSTER_BASE_URL", raising=False)
    client = oneroster_from_env()
    assert client.base_url == "" and client.client_secret == ""


def test_from_env_names_a_bad_number(monkeypatch):
    monkeypatch.setenv("ONEROSTER_MAX_CONCURRENCY", "four")
    with pytest.raises(ValueError, match="ONEROSTER_MAX_CONCURRENCY must be a whole number, got 'four'"):
        oneroster_from_env()


# --- OAuth 1.0a signatures, checked by oauthlib ------------------------------------------------------


class _OneConsumer(RequestValidator):
    """oauthlib's view of one consumer: what a provider checks a signed request against."""

    nonces: set

    def __init__(self, signature_method: str) -> None:
        super().__init__()
        self.signature_method = signature_method
        self.nonces = set()

    @property
    def allowed_signature_methods(self):
        return (self.signature_method,)

    @property
    def enforce_ssl(self):
        return False

    def check_client_key(self, client_key):
        return True

    def check_nonce(self, nonce):
        return True

    def validate_client_key(self, client_key, request):
        return client_key == "consumer-key"

    def get_client_secret(self, client_key, request):
        return SECRET

    def validate_timestamp_and_nonce(self, client_key, timestamp, nonce, request, request_token=None, access_token=None):
        if nonce in self.nonces:
            return False
        self.nonces.add(nonce)
        return True


def _signed(signer: OAuth1Signer, request: httpx2.Request) -> httpx2.Request:
    return next(signer.auth_flow(request))


def _verify(validator: _OneConsumer, request: httpx2.Request, *, url: str | None = None) -> bool:
    valid, _ = SignatureOnlyEndpoint(validator).validate_request(
        url or str(request.url), http_method=request.method, body=None, headers=dict(request.headers)
    )
    return valid


@pytest.mark.parametrize(
    "method, oauthlib_method", [("HMAC-SHA256", SIGNATURE_HMAC_SHA256), ("HMAC-SHA1", SIGNATURE_HMAC_SHA1)]
)
def test_oauth1_signature_verifies_including_query(method, oauthlib_method):
    signer = OAuth1Signer("consumer-key", SECRET, method)
    url = "https://sis.example.org/ims/oneroster/v1p1/users?limit=100&offset=200&filter=status%3D%27active%27"
    request = _signed(signer, httpx2.Request("GET", url))
    assert f'oauth_signature_method="{method}"' in request.headers["Authorization"]
    assert _verify(_OneConsumer(oauthlib_method), request)
    # The query is part of what was signed: the same header on another offset does not verify.
    tampered = url.replace("offset=200", "offset=300")
    assert not _verify(_OneConsumer(oauthlib_method), request, url=tampered)


def test_oauth1_fresh_nonce_and_timestamp_each_send():
    signer = OAuth1Signer("consumer-key", SECRET, "HMAC-SHA256")
    validator = _OneConsumer(SIGNATURE_HMAC_SHA256)
    url = "https://sis.example.org/ims/oneroster/v1p1/orgs?limit=10&offset=0"
    first = _signed(signer, httpx2.Request("GET", url))
    second = _signed(signer, httpx2.Request("GET", url))
    assert first.headers["Authorization"] != second.headers["Authorization"]
    assert _verify(validator, first) and _verify(validator, second)  # a replayed nonce would fail the second


def test_oauth1_put_keeps_its_json_body_and_signs_without_body_hash():
    signer = OAuth1Signer("consumer-key", SECRET, "HMAC-SHA256")
    url = "https://sis.example.org/ims/oneroster/v1p1/results/r1"
    body = {"result": {"sourcedId": "r1", "score": 9.5}}
    request = _signed(signer, httpx2.Request("PUT", url, json=body))
    assert request.content == httpx2.Request("PUT", url, json=body).content
    assert "oauth_body_hash" not in request.headers["Authorization"]
    assert _verify(_OneConsumer(SIGNATURE_HMAC_SHA256), request)


def test_oauth1_rejects_unknown_signature_method():
    with pytest.raises(ValueError, match="HMAC-SHA256, HMAC-SHA1"):
        OAuth1Signer("consumer-key", SECRET, "RSA-SHA1")
    assert SECRET not in repr(OAuth1Signer("consumer-key", SECRET, "HMAC-SHA1"))


def test_access_token_repr_hides_the_token():
    token = AccessToken(OAuth2Token.from_dict({"access_token": "bearer-8d41", "token_type": "bearer", "scope": "a b"}), 1.0)
    assert token.scopes == ["a", "b"]
    assert "bearer-8d41" not in repr(token) + str(token)


@pytest.mark.parametrize("token_url, message", [
    ("http://sis.example.org/oauth/token", "ONEROSTER_TOKEN_URL must use https"),
    ("https://admin:hunter2@sis.example.org/oauth/token", "ONEROSTER_TOKEN_URL must not carry credentials"),
])
def test_token_url_must_keep_the_client_secret_safe(token_url, message):
    client = OneRosterClient(base_url="https://sis.example.org/ims/oneroster/v1p1", client_id="id",
                             client_secret=SECRET, token_url=token_url)
    with pytest.raises(ValueError, match=message) as raised:
        client.open()
    assert "hunter2" not in str(raised.value) and SECRET not in str(raised.value)
