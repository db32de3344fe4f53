"""Every way a bearer token can be wrong is refused before GraphQL runs: HTTP 401 with a
WWW-Authenticate challenge naming invalid_token and the reason."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from exchange.auth import clients, keys
from exchange.auth.scopes import Role, Scope
from exchange.auth.tokens import access_token_claims, sign_access_token
from exchange.testing.kit import ExchangeKit

VIEWER = "{ viewer { role } }"
Forge = Callable[..., str]


@pytest.fixture
async def signing_key(kit: ExchangeKit, gateway: str) -> RSAKey:
    """The gateway's own active private key, to forge tokens that differ in one respect."""
    async with kit.db.transaction() as session:
        row = await keys.active_key(session)
    assert row is not None
    return keys.decrypt_private_key(row, kit.settings.key_encryption_secret.get_secret_value())


@pytest.fixture
async def forge(kit: ExchangeKit, signing_key: RSAKey) -> Forge:
    client_id = (await kit.new_client(Role.ADMIN)).client.client_id  # a token's client must exist

    def make(*, key: Any = signing_key, header: dict[str, Any] | None = None, **claims: Any) -> str:
        now = datetime.now(UTC)
        payload = access_token_claims(
            issuer=kit.settings.issuer_url,
            audience=kit.settings.audience,
            client_id=client_id,
            role=Role.ADMIN,
            scopes=frozenset({Scope.ADMIN_READ}),
            subject=client_id,
            now=now,
            lifetime=timedelta(minutes=5),
        )
        payload.update(claims)
        if header is None:
            return sign_access_token(payload, key)
        return jwt.encode(header, payload, key, algorithms=[header["alg"]])

    return make


def _in(minutes: float) -> int:
    return int((datetime.now(UTC) + timedelta(minutes=minutes)).timestamp())


async def test_a_well_formed_token_is_accepted(kit: ExchangeKit, forge: Forge) -> None:
    response = await kit.graphql(VIEWER, forge())
    assert response.json() == {"data": {"viewer": {"role": "ADMIN"}}}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(token: str) -> str:
    return f"{_b64(json.dumps({'alg': 'none', 'typ': 'at+jwt'}).encode())}.{token.split('.')[1]}."


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "admin:read admin:write"
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def _hmac_with_public_key(forge: Forge, signing_key: RSAKey) -> str:
    """The algorithm-confusion attack: HS256 keyed with the published public key's PEM.

    Built by hand, because joserfc refuses to use an asymmetric key as an HMAC secret.
    """
    header = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": signing_key.kid}).encode())
    payload = forge().split(".")[1]
    mac = hmac.new(signing_key.as_pem(private=False), f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{_b64(mac.digest())}"


NOT_A_JWT = (
    "the token is not a JWT: send the access_token that /oauth/token answered, whole (a token of null means "
    "that request was refused: its error_description says why)"
)


@pytest.mark.parametrize(
    ("make_token", "description"),
    [
        (lambda forge, key: forge(exp=_in(-5), iat=_in(-10)), "the token has expired: request a new token"),
        (lambda forge, key: forge(nbf=_in(10)), "the token is not valid yet"),
        (lambda forge, key: forge(iat=_in(10), exp=_in(15)), "the token was issued in the future"),
        (
            lambda forge, key: forge(iss="https://impostor.example"),
            "the token was issued by another issuer: request a token from this exchange",
        ),
        (
            lambda forge, key: forge(aud="https://other-api.example"),
            "the token is meant for another audience: request a token from this exchange",
        ),
        (
            lambda forge, key: _tampered(forge()),
            "the token's signature does not verify: send the access_token that /oauth/token answered, whole, unchanged",
        ),
        (lambda forge, key: _unsigned(forge()), "unsigned tokens (alg none) are refused"),
        (_hmac_with_public_key, "the token is not signed with RS256"),
        (
            lambda forge, key: forge(key=RSAKey.generate_key(2048, parameters={"kid": "rogue"})),
            "the token is not signed by a published key of this exchange: request a new token from this exchange",
        ),
        (
            lambda forge, key: forge(header={"alg": "RS256", "typ": "JWT", "kid": key.kid}),
            "not an access token (typ must be at+jwt)",
        ),
        (lambda forge, key: forge(jti=None), "the token lacks a claim: Missing claim: 'jti'"),
        (lambda forge, key: forge(role="emperor"), "the token's role or scope is not one this exchange issues"),
        (
            lambda forge, key: forge(role="member", scope="member:read member:write", sub="mbr_1"),
            "the member token does not name the program that asserted it (asserted_by; it was issued "
            "before tokens carried it): request a new token",
        ),
        (lambda forge, key: "not-a-jwt", NOT_A_JWT),
        (lambda forge, key: "null", NOT_A_JWT),  # `jq -r .access_token` of a refused token request
    ],
    ids=[
        "expired",
        "not-yet-valid",
        "issued-in-the-future",
        "wrong-issuer",
        "wrong-audience",
        "tampered",
        "alg-none",
        "hs256-with-public-key",
        "unknown-kid",
        "not-an-access-token",
        "missing-claim",
        "unknown-role",
        "member-token-before-asserted-by",
        "malformed",
        "null-from-a-refused-token-request",
    ],
)
async def test_a_bad_token_is_401_invalid_token_naming_the_reason(
    kit: ExchangeKit,
    forge: Forge,
    signing_key: RSAKey,
    make_token: Callable[[Forge, RSAKey], str],
    description: str,
) -> None:
    response = await kit.graphql("{ programs { id } viewer { role } }", make_token(forge, signing_key))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer error="invalid_token", error_description="{description.replace(chr(34), "?")}"'
    )
    assert response.json() == {"errors": [{"message": description, "extensions": {"code": "UNAUTHENTICATED"}}]}


async def test_a_bad_token_is_refused_even_for_public_fields(kit: ExchangeKit, forge: Forge) -> None:
    response = await kit.graphql("{ programs { id } }", forge(exp=_in(-5), iat=_in(-10)))
    assert response.status_code == 401


async def test_a_revoked_token_is_401_invalid_token(kit: ExchangeKit) -> None:
    partner = await kit.partner("formosa-air")
    token = await kit.client_token(partner)
    await kit.http.post("/oauth/revoke", data={"token": token}, auth=(partner.client.client_id, partner.client_secret))
    response = await kit.graphql(VIEWER, token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["errors"][0]["message"] == "the token has been revoked: request a new token"


async def test_a_member_token_issued_before_the_account_it_names_was_linked_is_refused(
    kit: ExchangeKit, signing_key: RSAKey
) -> None:
    """As one is once that account was unlinked and linked again later: the link a member token
    stands on must be older than the token (give or take the clocks' leeway of 30 seconds)."""
    token = await kit.member_token("wallet-pay", "zoe")  # wallet-pay's assertion links zoe's account now
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert (await kit.graphql(VIEWER, token)).json() == {"data": {"viewer": {"role": "MEMBER"}}}
    issued_30_seconds_before = sign_access_token(claims | {"iat": claims["iat"] - 30}, signing_key)
    assert (await kit.graphql(VIEWER, issued_30_seconds_before)).status_code == 200  # within the leeway
    issued_a_minute_before = sign_access_token(claims | {"iat": claims["iat"] - 60}, signing_key)
    response = await kit.graphql(VIEWER, issued_a_minute_before)
    assert response.status_code == 401
    assert response.json()["errors"][0]["message"] == (
        "the member has unlinked their account at wallet-pay, on whose partner's word this token was issued: "
        "the token ended with the link (once the member links it again, the partner asserts them anew)"
    )


async def test_a_token_of_a_revoked_client_is_refused_saying_where_a_new_client_comes_from(kit: ExchangeKit) -> None:
    """A new token of that client cannot be had ("request a new token" would not help)."""
    partner = await kit.partner("formosa-air")
    token = await kit.client_token(partner)
    async with kit.db.transaction() as session:
        stored = await clients.get_client(session, partner.client.client_id)
        assert stored is not None
        await clients.delete_client(session, stored, datetime.now(UTC))
    response = await kit.graphql(VIEWER, token)
    assert response.status_code == 401
    assert response.json()["errors"][0]["message"] == (
        "the client this token was issued to has been revoked: request a token with another client's credentials "
        "(a partner creates a client on its console's Clients and keys page, or asks the exchange's operator for one)"
    )


@pytest.mark.parametrize("header", ["Basic YWRtaW46c2VjcmV0", "Bearer", "Token abc"])
async def test_a_credential_that_is_not_a_bearer_token_is_invalid_request(kit: ExchangeKit, header: str) -> None:
    response = await kit.http.post("/graphql", json={"query": VIEWER}, headers={"authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_request"')


async def test_two_authorization_headers_are_invalid_request_whichever_comes_first(kit: ExchangeKit) -> None:
    """The gateway read the first and ignored the second, where a proxy in front may read the
    last: a request that names two callers is refused, on every route that reads a token."""
    token = await kit.partner_token("formosa-air")
    for second in ("Bearer not-a-jwt", f"Bearer {token}"):
        for headers in (
            [("authorization", f"Bearer {token}"), ("authorization", second)],
            [("authorization", second), ("authorization", f"Bearer {token}")],
        ):
            for request in (
                kit.http.build_request("POST", "/graphql", json={"query": VIEWER}, headers=headers),
                kit.http.build_request("GET", "/settlement/books/formosa-air/2026-11.csv", headers=headers),
            ):
                response = await kit.http.send(request)
                assert response.status_code == 401, (request.url, response.text)
                assert response.headers["www-authenticate"].startswith('Bearer error="invalid_request"')


async def test_no_token_for_a_protected_field_is_401_with_a_bare_bearer_challenge(kit: ExchangeKit) -> None:
    response = await kit.graphql("{ programs { id } viewer { role } }")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}
    assert "Query.viewer" in error["message"]
    strict = await kit.graphql("{ viewer { role } }", accept="application/graphql-response+json")
    assert strict.status_code == 401 and "data" not in strict.json()
    assert strict.headers["content-type"].startswith("application/graphql-response+json")


async def test_no_token_for_a_protected_mutation_runs_nothing(kit: ExchangeKit) -> None:
    response = await kit.graphql('mutation { registerAssertionKey(programId: "wallet-pay", publicKey: "x") { kid } }')
    assert response.status_code == 401
    assert "Mutation.registerAssertionKey" in response.json()["errors"][0]["message"]


async def test_the_refusal_error_body_follows_the_accepted_media_type(kit: ExchangeKit) -> None:
    response = await kit.graphql(VIEWER, "not-a-jwt", accept="application/graphql-response+json")
    assert response.headers["content-type"].startswith("application/graphql-response+json")
