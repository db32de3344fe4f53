"""The authorization server's endpoints over HTTP: metadata, JWKS, the token endpoint's
grants and refusals, introspection, revocation, rate limiting and transport rules."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from joserfc import jwt
from joserfc.jwk import KeySet

from exchange.auth.scopes import Role, Scope
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


async def test_metadata_describes_the_server(client: httpx.AsyncClient, gateway_settings: Settings) -> None:
    response = await client.get("/.well-known/oauth-authorization-server")
    metadata = response.json()
    issuer = gateway_settings.issuer_url
    assert metadata["issuer"] == issuer
    assert metadata["token_endpoint"] == f"{issuer}/oauth/token"
    assert metadata["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert metadata["introspection_endpoint"] == f"{issuer}/oauth/introspect"
    assert metadata["revocation_endpoint"] == f"{issuer}/oauth/revoke"
    assert metadata["grant_types_supported"] == ["client_credentials", JWT_BEARER]
    assert set(metadata["scopes_supported"]) == {scope.value for scope in Scope}
    # Authlib's RFC 8414 checks, except response types: with no authorization endpoint
    # there are none, which RFC 8414 lets us say with an empty list but Authlib refuses.
    checked = AuthorizationServerMetadata(metadata)
    for key in checked.REGISTRY_KEYS:
        if key != "response_types_supported":
            getattr(checked, f"validate_{key}")()


async def test_tokens_verify_with_the_published_keys(kit: ExchangeKit) -> None:
    response = await kit.http.get("/.well-known/jwks.json")
    assert response.headers["content-type"].startswith("application/jwk-set+json")
    assert "max-age" in response.headers["cache-control"]
    jwks = response.json()
    assert all("d" not in key and key["alg"] == "RS256" for key in jwks["keys"])
    token = await kit.partner_token("happy-card")
    decoded = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["RS256"])
    assert decoded.header["typ"] == "at+jwt" and decoded.header["kid"] == jwks["keys"][0]["kid"]
    claims = decoded.claims
    assert set(claims) == {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "role", "program_id"}
    assert claims["aud"] == kit.settings.audience and claims["iss"] == kit.settings.issuer_url


async def test_token_responses_are_never_cached(kit: ExchangeKit) -> None:
    response = await kit.request_token(await kit.partner("fresh-mart"))
    assert response.headers["cache-control"] == "no-store"


async def test_client_secret_post_works_too(kit: ExchangeKit) -> None:
    credentials = await kit.new_client(Role.SETTLEMENT)
    response = await kit.http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": credentials.client.client_id,
            "client_secret": credentials.client_secret,
        },
    )
    assert response.status_code == 200
    assert response.json()["scope"] == "settlement:read settlement:write"


async def test_a_wrong_secret_is_invalid_client_with_a_basic_challenge(kit: ExchangeKit) -> None:
    credentials = await kit.partner("formosa-air")
    response = await kit.http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(credentials.client.client_id, "not-the-secret"),
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith('Basic error="invalid_client"')


async def test_an_unknown_client_is_invalid_client(kit: ExchangeKit) -> None:
    response = await kit.http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=("nobody", "secret"))
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")


async def test_scopes_may_be_narrowed_but_not_widened(kit: ExchangeKit) -> None:
    credentials = await kit.new_client(Role.PARTNER, "tune-stream", frozenset({Scope.PARTNER_READ}))
    assert (await kit.request_token(credentials)).json()["scope"] == "partner:read"
    for scope in ("partner:write", "admin:read", "partner:read nonsense"):
        response = await kit.request_token(credentials, scope=scope)
        assert (response.status_code, response.json()["error"]) == (400, "invalid_scope"), scope


async def test_an_unknown_scope_is_named_with_what_the_client_may_ask_for(kit: ExchangeKit) -> None:
    """A typo in ``scope=`` says which word is wrong and what to ask for instead, as asking
    for too much does."""
    credentials = await kit.new_client(Role.PARTNER, "tune-stream", frozenset({Scope.PARTNER_READ}))
    response = await kit.request_token(credentials, scope="partner:read partner:raed")
    assert (response.status_code, response.json()["error"]) == (400, "invalid_scope")
    assert response.json()["error_description"] == (
        "unknown scope partner:raed: this grant allows at most: partner:read"
    )


async def test_unsupported_grants_and_missing_parameters_are_rfc_6749_errors(kit: ExchangeKit) -> None:
    credentials = await kit.partner("formosa-air")
    auth = (credentials.client.client_id, credentials.client_secret)
    password = await kit.http.post("/oauth/token", data={"grant_type": "password"}, auth=auth)
    assert (password.status_code, password.json()["error"]) == (400, "unsupported_grant_type")
    no_assertion = await kit.http.post("/oauth/token", data={"grant_type": JWT_BEARER})
    assert (no_assertion.status_code, no_assertion.json()["error"]) == (400, "invalid_request")


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"grant_type=client_credentials&grant_type=client_credentials", {}),
        (b'{"grant_type": "client_credentials"}', {"content-type": "application/json"}),
        (b"grant_type=" + b"x" * 20_000, {}),
        (b"grant_type=\xff\xfe", {}),
        (b"grant_type=client_credentials", {"authorization": "Basic " + base64.b64encode(b"\xff:\xfe").decode()}),
        (b"grant_type=client_credentials", {"authorization": "Basic !!!"}),
        (b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c", {}),
        (b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=%E2%9C%93", {}),
        (b"grant_type=client_credentials&scope=%E2%9C%93%22", {}),
    ],
)
async def test_malformed_requests_get_an_oauth_error_never_a_500(
    client: httpx.AsyncClient, content: bytes, headers: dict[str, str]
) -> None:
    response = await client.post(
        "/oauth/token",
        content=content,
        headers={"content-type": "application/x-www-form-urlencoded", **headers},
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"] in {"invalid_request", "invalid_client", "invalid_grant"}
    assert "Traceback" not in response.text


async def test_the_token_endpoint_takes_post_only(client: httpx.AsyncClient) -> None:
    assert (await client.get("/oauth/token")).status_code == 405


async def test_a_client_introspects_its_own_tokens_and_admins_any(kit: ExchangeKit) -> None:
    partner = await kit.partner("harbor-bank")
    token = await kit.client_token(partner)
    own = await kit.http.post(
        "/oauth/introspect", data={"token": token}, auth=(partner.client.client_id, partner.client_secret)
    )
    body = own.json()
    assert body["active"] is True
    assert (body["client_id"], body["sub"], body["scope"], body["token_type"]) == (
        partner.client.client_id,
        partner.client.client_id,
        "partner:read partner:write",
        "Bearer",
    )
    assert body["program_id"] == "harbor-bank" and body["exp"] - body["iat"] == kit.settings.access_token_lifetime

    other = await kit.partner("fresh-mart")
    foreign = await kit.http.post(
        "/oauth/introspect", data={"token": token}, auth=(other.client.client_id, other.client_secret)
    )
    assert foreign.json() == {"active": False}

    admin = await kit.new_client(Role.ADMIN)
    by_admin = await kit.http.post(
        "/oauth/introspect", data={"token": token}, auth=(admin.client.client_id, admin.client_secret)
    )
    assert by_admin.json()["active"] is True

    garbage = await kit.http.post(
        "/oauth/introspect", data={"token": "garbage"}, auth=(admin.client.client_id, admin.client_secret)
    )
    assert garbage.json() == {"active": False}


async def test_introspection_needs_client_authentication(kit: ExchangeKit) -> None:
    response = await kit.http.post("/oauth/introspect", data={"token": await kit.partner_token("formosa-air")})
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")


async def test_a_revoked_token_is_refused_and_inactive(kit: ExchangeKit) -> None:
    partner = await kit.partner("wallet-pay")
    auth = (partner.client.client_id, partner.client_secret)
    token = await kit.client_token(partner)
    assert (await kit.graphql("{ viewer { role } }", token)).status_code == 200

    revoked = await kit.http.post("/oauth/revoke", data={"token": token, "token_type_hint": "access_token"}, auth=auth)
    assert revoked.status_code == 200

    refused = await kit.graphql("{ viewer { role } }", token)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="the token has been revoked: request a new token"'
    )
    assert (await kit.http.post("/oauth/introspect", data={"token": token}, auth=auth)).json() == {"active": False}
    again = await kit.http.post("/oauth/revoke", data={"token": token}, auth=auth)
    assert again.status_code == 200, "revoking twice is harmless (RFC 7009)"
    unknown = await kit.http.post("/oauth/revoke", data={"token": "not-a-token"}, auth=auth)
    assert unknown.status_code == 200, "an invalid token is no error (RFC 7009 section 2.2)"


async def test_a_token_type_hint_that_does_not_help_is_ignored_as_rfc_7009_asks(kit: ExchangeKit) -> None:
    """The server searches every token type it has when the hint does not find the token."""
    partner = await kit.partner("wallet-pay")
    auth = (partner.client.client_id, partner.client_secret)
    for hint in ("refresh_token", "urn:example:unknown-type"):
        token = await kit.client_token(partner)
        introspected = await kit.http.post(
            "/oauth/introspect", data={"token": token, "token_type_hint": hint}, auth=auth
        )
        assert introspected.json()["active"] is True, introspected.text
        revoked = await kit.http.post("/oauth/revoke", data={"token": token, "token_type_hint": hint}, auth=auth)
        assert revoked.status_code == 200, revoked.text
        assert (await kit.graphql("{ viewer { role } }", token)).status_code == 401
    missing = await kit.http.post("/oauth/revoke", data={"token_type_hint": "access_token"}, auth=auth)
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_request")


async def test_a_partner_revokes_the_member_tokens_it_obtained_but_not_others_tokens(kit: ExchangeKit) -> None:
    member_token = await kit.member_token("wallet-pay", "bob")
    outsider = await kit.partner("fresh-mart")
    refused = await kit.http.post(
        "/oauth/revoke", data={"token": member_token}, auth=(outsider.client.client_id, outsider.client_secret)
    )
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    assert (await kit.graphql("{ me { id } }", member_token)).status_code == 200

    partner = await kit.partner("wallet-pay")
    revoked = await kit.http.post(
        "/oauth/revoke", data={"token": member_token}, auth=(partner.client.client_id, partner.client_secret)
    )
    assert revoked.status_code == 200
    assert (await kit.graphql("{ me { id } }", member_token)).status_code == 401


async def test_repeated_failures_lock_the_client_out_with_429_and_retry_after(
    kit: ExchangeKit, gateway_settings: Settings
) -> None:
    victim = await kit.partner("formosa-air")
    bystander = await kit.partner("fresh-mart")
    for _ in range(gateway_settings.token_failure_limit):
        failed = await kit.http.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(victim.client.client_id, "guess")
        )
        assert failed.status_code == 401
    locked = await kit.request_token(victim)
    assert locked.status_code == 429, "even the right secret waits out the window"
    assert locked.json()["error"] == "temporarily_unavailable"
    assert 0 < int(locked.headers["retry-after"]) <= gateway_settings.token_failure_window
    introspection = await kit.http.post(
        "/oauth/introspect", data={"token": "x"}, auth=(victim.client.client_id, victim.client_secret)
    )
    assert introspection.status_code == 429
    assert (await kit.request_token(bystander)).status_code == 200


async def test_wrong_secrets_from_one_address_do_not_lock_the_partner_out_from_another(
    kit: ExchangeKit, gateway_settings: Settings
) -> None:
    # The gateway trusts loopback as a proxy (uvicorn's default FORWARDED_ALLOW_IPS, and
    # `exchange serve` keeps proxy headers on), so X-Forwarded-For names the caller.
    victim = await kit.partner("formosa-air")
    client_id = victim.client.client_id

    async def request_token(secret: str, caller: str) -> httpx.Response:
        return await kit.http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
            headers={"x-forwarded-for": caller},
        )

    for _ in range(gateway_settings.token_failure_limit):
        assert (await request_token("guess", "203.0.113.7")).status_code == 401
    locked = await request_token(victim.client_secret, "203.0.113.7")
    assert locked.status_code == 429, "the attacker's address waits, right secret or not"
    served = await request_token(victim.client_secret, "198.51.100.9")
    assert served.status_code == 200, served.text


async def test_failed_assertions_count_against_the_issuing_client(kit: ExchangeKit, gateway_settings: Settings) -> None:
    partner = await kit.partner("tune-stream")
    await kit.assertion_key("tune-stream")
    stale = await kit.assertion("tune-stream", "carol", exp=int((datetime.now(UTC) - timedelta(hours=1)).timestamp()))
    for _ in range(gateway_settings.token_failure_limit):
        assert (await kit.request_member_token(stale)).status_code == 400
    fresh = await kit.assertion("tune-stream", "carol")
    assert (await kit.request_member_token(fresh)).status_code == 429
    assert (await kit.request_token(partner)).status_code == 429


async def test_plain_http_is_refused_off_loopback_unless_a_proxy_says_https(kit: ExchangeKit) -> None:
    credentials = await kit.partner("formosa-air")
    auth = (credentials.client.client_id, credentials.client_secret)
    data = {"grant_type": "client_credentials"}
    public = await kit.http.post("/oauth/token", data=data, auth=auth, headers={"host": "exchange.example"})
    assert (public.status_code, public.json()["error"]) == (400, "insecure_transport")
    proxied = await kit.http.post(
        "/oauth/token",
        data=data,
        auth=auth,
        headers={"host": "exchange.example", "x-forwarded-proto": "https"},
    )
    assert proxied.status_code == 200
