"""The sandbox partner's token endpoint: its one client gets a token, anyone else a 401."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from exchange.sandbox.auth import TokenIssuer
from exchange.testing.clock import FrozenClock

CLIENT_ID, SECRET = "exchange", "sandbox-secret"


@pytest.fixture
async def sandbox() -> AsyncIterator[httpx.AsyncClient]:
    issuer = TokenIssuer(CLIENT_ID, SECRET, timedelta(minutes=5), FrozenClock(datetime(2026, 12, 4, tzinfo=UTC)))
    app = Starlette(routes=[Route("/oauth/token", issuer.token_endpoint, methods=["POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox.test") as http:
        yield http


async def test_the_declared_client_gets_a_token(sandbox: httpx.AsyncClient) -> None:
    response = await sandbox.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, SECRET))
    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer"


@pytest.mark.parametrize(
    "credentials",
    [
        {"client_id": CLIENT_ID, "client_secret": "wrong"},
        # Text that is not ASCII: compare_digest raised TypeError on it, a 500.
        {"client_id": CLIENT_ID, "client_secret": "sécret"},
        {"client_id": "échange", "client_secret": SECRET},
    ],
)
async def test_other_credentials_are_invalid_client(sandbox: httpx.AsyncClient, credentials: dict[str, str]) -> None:
    response = await sandbox.post("/oauth/token", data={"grant_type": "client_credentials", **credentials})
    assert (response.status_code, response.json()) == (401, {"error": "invalid_client"})
