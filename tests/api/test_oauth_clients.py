"""Real OAuth clients (Authlib's AsyncOAuth2Client and AsyncAssertionClient) obtain tokens
from a running exchange over HTTP and call GraphQL with them."""

from __future__ import annotations

import json

import httpx
from authlib.integrations.httpx_client import AsyncAssertionClient, AsyncOAuth2Client
from joserfc.jwk import ECKey

from exchange.testing.kit import ExchangeKit

VIEWER = "{ viewer { role subject clientId programId memberId scopes } }"


async def discover(gateway: str) -> dict[str, str]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway}/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    return dict(response.json())


async def test_a_partner_uses_authlibs_oauth2_client_for_client_credentials(gateway: str, kit: ExchangeKit) -> None:
    credentials = await kit.partner("formosa-air")
    metadata = await discover(gateway)
    async with AsyncOAuth2Client(
        client_id=credentials.client.client_id,
        client_secret=credentials.client_secret,
        token_endpoint=metadata["token_endpoint"],
        scope="partner:read",
    ) as oauth:
        token = await oauth.fetch_token(grant_type="client_credentials")
        assert token["token_type"] == "Bearer" and token["scope"] == "partner:read"
        assert token["expires_in"] == kit.settings.access_token_lifetime
        response = await oauth.post(f"{gateway}/graphql", json={"query": VIEWER})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["viewer"] == {
        "role": "PARTNER",
        "subject": credentials.client.client_id,
        "clientId": credentials.client.client_id,
        "programId": "formosa-air",
        "memberId": None,
        "scopes": ["partner:read"],
    }


async def test_a_partner_registers_its_key_then_obtains_a_member_token_with_authlibs_assertion_client(
    gateway: str, kit: ExchangeKit
) -> None:
    credentials = await kit.partner("wallet-pay")
    metadata = await discover(gateway)
    signing_key = ECKey.generate_key("P-256", parameters={"kid": "wallet-pay-2026"})

    async with AsyncOAuth2Client(
        client_id=credentials.client.client_id,
        client_secret=credentials.client_secret,
        token_endpoint=metadata["token_endpoint"],
    ) as partner:
        await partner.fetch_token(grant_type="client_credentials")
        registered = await partner.post(
            f"{gateway}/graphql",
            json={
                "query": 'mutation($key: String!) { registerAssertionKey(programId: "wallet-pay", '
                "publicKey: $key) { kid keyType } }",
                "variables": {"key": json.dumps(signing_key.as_dict(private=False))},
            },
        )
    assert registered.json()["data"]["registerAssertionKey"] == {"kid": "wallet-pay-2026", "keyType": "EC"}

    async with AsyncAssertionClient(
        token_endpoint=metadata["token_endpoint"],
        issuer=credentials.client.client_id,
        subject="alice",
        audience=metadata["issuer"],
        key=signing_key,
        header={"alg": "ES256", "kid": "wallet-pay-2026"},
    ) as member:
        response = await member.post(
            f"{gateway}/graphql",
            json={
                "query": "{ me { id linkedAccounts { memberRef establishedBy program { id } } } viewer { role memberId scopes } }"
            },
        )
        assert member.token["scope"] == "member:coalition member:read member:write"
    data = response.json()["data"]
    member_id = data["viewer"]["memberId"]
    assert data["me"]["linkedAccounts"] == [  # the coalition point's account every member has, then the asserted one
        {"memberRef": member_id, "establishedBy": "COALITION", "program": {"id": "coalition"}},
        {"memberRef": "alice", "establishedBy": "ASSERTION", "program": {"id": "wallet-pay"}},
    ]
    assert data["viewer"] == {
        "role": "MEMBER",
        "memberId": data["me"]["id"],
        "scopes": ["member:coalition", "member:read", "member:write"],
    }
