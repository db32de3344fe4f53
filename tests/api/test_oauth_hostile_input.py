"""Hostile values sent to the OAuth endpoints are refused as OAuth errors (400 or 401), on
SQLite and PostgreSQL alike; none reaches the store."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jws, jwt
from joserfc.jwk import ECKey

from exchange.serving import free_port
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit
from tests.conftest import SAMPLE_PARTNERS

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def gateway_settings(database_url: str) -> Settings:
    """Every test here runs once on SQLite and once on PostgreSQL."""
    return Settings(database_url=database_url, partners_dir=SAMPLE_PARTNERS, port=free_port())


def oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.json()["error"] == error, response.text


NOT_TEXT_FORMS = [
    b"grant_type=client_credentials&client_id=%00&client_secret=x",  # NUL
    b"grant_type=client_credentials&client_id=%ED%A0%80&client_secret=x",  # a surrogate, as UTF-8
    b"grant_type=client_credentials&client_id=a&client_secret=%FF",  # not UTF-8 once decoded
    b"grant_type=client_credentials&scope=partner%3Aread%00&client_id=a&client_secret=b",
    b"token=%00&client_id=a&client_secret=b",
    b"grant_type=client_credentials&client_id=\xff",  # not UTF-8 as sent
]


async def test_form_values_that_are_not_text_are_an_invalid_request(client: httpx.AsyncClient) -> None:
    for path in ("/oauth/token", "/oauth/introspect", "/oauth/revoke"):
        for body in NOT_TEXT_FORMS:
            oauth_error(await client.post(path, content=body, headers=FORM), 400, "invalid_request")


async def test_oversized_form_bodies_are_refused_unread_even_in_chunks(client: httpx.AsyncClient) -> None:
    body = b"grant_type=client_credentials&pad=" + b"x" * (1 << 20)

    async def chunks() -> Any:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    oauth_error(await client.post("/oauth/token", content=body, headers=FORM), 400, "invalid_request")
    oauth_error(await client.post("/oauth/token", content=chunks(), headers=FORM), 400, "invalid_request")


MALFORMED_CREDENTIALS = [
    b"\x00:secret",
    b"a" * 300 + b":secret",
    "客户:secret".encode(),
    b"\xff\xfe:secret",
    b"no-colon",
    b":",
]


async def test_malformed_basic_credentials_are_an_invalid_client(client: httpx.AsyncClient) -> None:
    for credentials in MALFORMED_CREDENTIALS:
        header = "Basic " + base64.b64encode(credentials).decode()
        response = await client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, headers={"authorization": header}
        )
        assert response.status_code in (400, 401), response.text
        assert response.json()["error"] in ("invalid_client", "invalid_request"), response.text


async def test_basic_headers_that_are_not_base64_are_refused(client: httpx.AsyncClient) -> None:
    for header in ("Basic %%%", "Basic", "Basic " + "A" * 20_000):
        response = await client.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, headers={"authorization": header}
        )
        assert 400 <= response.status_code < 500, response.text


async def test_a_basic_header_whose_bytes_are_not_ascii_is_an_invalid_client(client: httpx.AsyncClient) -> None:
    """Base64 is ASCII: Authlib's decoder raised ValueError on such a header, a 500."""
    response = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers={"authorization": b"Basic \xe9\xe9"}
    )
    oauth_error(response, 401, "invalid_client")


#: RFC 6749 §5.2: the characters an error_description may hold.
OAUTH_DESCRIPTION = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]*")


async def test_what_a_refusal_quotes_back_is_written_as_an_error_description_may_be(kit: ExchangeKit) -> None:
    """A tab, a quote or a letter past ASCII where a refusal names what was sent (an unknown
    scope, a repeated parameter, one sent twice) was a 500: Authlib refuses to make an error
    whose description holds characters RFC 6749 does not allow."""
    partner = await kit.partner("wallet-pay")
    auth = (partner.client.client_id, partner.client_secret)
    form = "grant_type=client_credentials&"
    cases = [
        ("/oauth/token", form + "scope=partner%3Aread%09x", 400, "invalid_scope"),
        ("/oauth/token", form + "scope=%C3%A9", 400, "invalid_scope"),
        ("/oauth/token", form + "scope=%22", 400, "invalid_scope"),
        ("/oauth/token", form + "%C3%A9=1&%C3%A9=2", 400, "invalid_request"),
        ("/oauth/token?%09=1", form + "%09=1", 400, "invalid_request"),
        ("/oauth/token", "grant_type=%22%C3%A9", 400, "unsupported_grant_type"),
        ("/oauth/introspect", "token=t&%22=1&%22=2", 400, "invalid_request"),
    ]
    for path, body, status, error in cases:
        response = await kit.http.post(path, content=body.encode(), headers=FORM, auth=auth)
        oauth_error(response, status, error)
        assert OAUTH_DESCRIPTION.fullmatch(response.json()["error_description"]), (body, response.text)
    assertion = await _signed(kit, {})
    response = await kit.request_member_token(assertion, scope="member:read\u00e9")
    oauth_error(response, 400, "invalid_scope")
    assert OAUTH_DESCRIPTION.fullmatch(response.json()["error_description"]), response.text


async def _signed(kit: ExchangeKit, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    key = await kit.assertion_key("wallet-pay")
    client_id = (await kit.partner("wallet-pay")).client.client_id
    now = datetime.now(UTC)
    payload = {
        "iss": client_id,
        "sub": "alice",
        "aud": kit.token_endpoint,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "jti": f"jti-{now.timestamp()}",
        **claims,
    }
    return jwt.encode({"alg": "ES256", "kid": key.kid, **(header or {})}, payload, key, algorithms=["ES256"])


HOSTILE_CLAIMS: list[dict[str, Any]] = [
    {"jti": "j" * 129},
    {"jti": "j\x00"},
    {"jti": 5},
    {"sub": {"id": "alice"}},
    {"sub": "alice\x00"},
    {"sub": "a" * 129},
    {"iss": "w" * 100},
    {"iss": ["wallet-pay"]},
    {"exp": 1e300},
    {"exp": 10**400},  # past float's range: compared with the clock, it must not overflow
    {"exp": "soon"},
    {"iat": True},
]


async def test_assertions_with_hostile_claims_are_an_invalid_grant(kit: ExchangeKit) -> None:
    for claims in HOSTILE_CLAIMS:
        response = await kit.request_member_token(await _signed(kit, claims))
        assert response.status_code in (400, 401), (claims, response.text)
        assert response.json()["error"] in ("invalid_grant", "invalid_client", "invalid_request"), response.text


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


#: Deeper than Python's JSON reader recurses (it raises RecursionError, not ValueError).
TOO_DEEP = b"[" * 3_000 + b"]" * 3_000

NOT_JWTS = [
    "not-a-jwt",
    "a.b.c",
    "",
    "x" * 15_000,
    base64.urlsafe_b64encode(b'{"alg":"none"}').decode() + ".e30.",
    _b64(b'{"alg":"ES256"}') + "." + _b64(TOO_DEEP) + "." + _b64(b"signature"),
]


async def test_assertions_that_are_not_jwts_are_an_invalid_grant(kit: ExchangeKit) -> None:
    for assertion in NOT_JWTS:
        response = await kit.request_member_token(assertion)
        assert response.status_code in (400, 401), response.text


async def test_an_assertion_naming_a_hostile_kid_is_an_invalid_grant(kit: ExchangeKit) -> None:
    for kid in ("k" * 5000, "k\x00"):
        response = await kit.request_member_token(await _signed(kit, {}, {"kid": kid}))
        assert response.status_code == 400 and response.json()["error"] == "invalid_grant", response.text


async def test_assertion_keys_with_hostile_kids_are_refused(kit: ExchangeKit) -> None:
    key = (await kit.assertion_key("wallet-pay")).as_dict(private=False)
    token = await kit.partner_token("wallet-pay")
    register = 'mutation($key: String!) { registerAssertionKey(programId: "wallet-pay", publicKey: $key) { kid } }'
    for kid in ("k" * 129, "k\x00", ""):
        body = (await kit.graphql(register, token, key=json.dumps({**key, "kid": kid}))).json()
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body


async def test_json_nested_too_deeply_is_refused_where_a_partner_sends_it(kit: ExchangeKit) -> None:
    """A partner's own signed assertion, and a key it registers, are read as JSON too."""
    key = await kit.assertion_key("wallet-pay")
    signed = jws.serialize_compact({"alg": "ES256", "kid": key.kid}, TOO_DEEP, key, algorithms=["ES256"])
    oauth_error(await kit.request_member_token(signed), 400, "invalid_grant")
    token = await kit.partner_token("wallet-pay")
    register = 'mutation($key: String!) { registerAssertionKey(programId: "wallet-pay", publicKey: $key) { kid } }'
    body = (await kit.graphql(register, token, key='{"kty": ' + TOO_DEEP.decode() + "}")).json()
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "publicKey"}, body


def _signed_as_written(key: ECKey, header: bytes, payload: bytes) -> str:
    """A compact JWS over ``header`` and ``payload`` byte for byte, as no JOSE library writes
    them (a key named twice in one object)."""
    signing_input = f"{_b64(header)}.{_b64(payload)}"
    r, s = decode_dss_signature(key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


async def test_an_assertion_naming_a_header_or_claim_twice_is_an_invalid_grant(kit: ExchangeKit) -> None:
    """``{"sub": "alice", "sub": "bob"}`` vouches for whichever member a reader keeps: none."""
    key = await kit.assertion_key("wallet-pay")
    assert isinstance(key, ECKey)
    fair = jws.extract_compact((await _signed(kit, {})).encode())
    header, payload = json.dumps(fair.headers()).encode(), fair.payload
    cases = {
        "header": (header[:-1] + b', "alg": "ES256"}', payload),
        "claims": (header, payload[:-1] + b', "sub": "bob"}'),
    }
    for part, (written_header, written_payload) in cases.items():
        response = await kit.request_member_token(_signed_as_written(key, written_header, written_payload))
        oauth_error(response, 400, "invalid_grant")
        repeated = "alg" if part == "header" else "sub"
        assert response.json()["error_description"] == (
            f"the assertion's {part} is not JSON: the key '{repeated}' appears more than once in an object"
        )
    assert (await kit.request_member_token(_signed_as_written(key, header, payload))).status_code == 200


async def test_an_assertion_with_a_critical_extension_the_exchange_does_not_know_is_refused(kit: ExchangeKit) -> None:
    """RFC 7515 §4.1.11: a ``crit`` header naming an extension not understood is refused."""
    key = await kit.assertion_key("wallet-pay")
    assert isinstance(key, ECKey)
    fair = jws.extract_compact((await _signed(kit, {})).encode())
    for crit in (b'"crit": ["urn:example:must-check"], "urn:example:must-check": true', b'"crit": ["exp"], "exp": 1'):
        header = json.dumps(fair.headers()).encode()[:-1] + b", " + crit + b"}"
        oauth_error(await kit.request_member_token(_signed_as_written(key, header, fair.payload)), 400, "invalid_grant")


async def test_an_assertion_with_an_empty_critical_list_is_refused(kit: ExchangeKit) -> None:
    """RFC 7515 §4.1.11: the empty list must not be sent as ``crit``."""
    key = await kit.assertion_key("wallet-pay")
    fair = jws.extract_compact((await _signed(kit, {})).encode())
    header = json.dumps({**fair.headers(), "crit": []}).encode()
    response = await kit.request_member_token(_signed_as_written(key, header, fair.payload))
    oauth_error(response, 400, "invalid_grant")
    assert response.json()["error_description"] == "the assertion's crit header must not be an empty list"
    assert (await kit.request_member_token(await _signed(kit, {}))).status_code == 200


async def test_keys_an_assertion_points_to_in_its_header_are_never_used(kit: ExchangeKit) -> None:
    """Only the partner's registered keys verify its assertions: a key the assertion carries
    (``jwk``, ``x5c``) or points to (``jku``, ``x5u``) is no key of the partner's."""
    own = ECKey.generate_key("P-256", auto_kid=True)
    public = own.as_dict(private=False)
    registered = await kit.assertion_key("wallet-pay")
    for header in ({"jwk": public}, {"jku": "https://attacker.example/jwks"}, {"x5u": "https://attacker.example/c"}):
        fair = jws.extract_compact((await _signed(kit, {}, {"kid": registered.kid, **header})).encode())
        forged = _signed_as_written(own, json.dumps(fair.headers()).encode(), fair.payload)
        oauth_error(await kit.request_member_token(forged), 400, "invalid_grant")
