"""Credentials in a URL: refused, with where to send them instead, and never written to the
access log of a running `exchange serve`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from exchange.auth import clients
from exchange.auth.scopes import Role
from exchange.db.database import Database
from exchange.serving import free_port
from exchange.testing.kit import ExchangeKit

EXCHANGE = str(Path(sys.executable).with_name("exchange"))
VIEWER = "{ viewer { role } }"


async def test_a_client_secret_in_the_url_is_refused_and_not_used(kit: ExchangeKit) -> None:
    partner = await kit.partner("formosa-air")
    query = f"client_id={partner.client.client_id}&client_secret={quote(partner.client_secret)}"
    response = await kit.http.post(f"/oauth/token?{query}", data={"grant_type": "client_credentials"})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_request" and "access_token" not in body
    assert body["error_description"].startswith("client_secret must not be sent in the URL")
    assert "request body or the Authorization header" in body["error_description"]
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/oauth/token", "assertion"),
        ("/oauth/token", "Password"),
        ("/oauth/introspect", "token"),
        ("/oauth/revoke", "token"),
    ],
)
async def test_oauth_endpoints_refuse_any_credential_in_the_url(kit: ExchangeKit, path: str, parameter: str) -> None:
    partner = await kit.partner("harbor-bank")
    token = await kit.client_token(partner)
    response = await kit.http.post(
        f"{path}?{parameter}={token}",
        data={"grant_type": "client_credentials", "token": token},
        auth=(partner.client.client_id, partner.client_secret),
    )
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    assert (await kit.graphql(VIEWER, token)).status_code == 200, "nothing was revoked"


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_graphql_refuses_an_access_token_in_the_url(kit: ExchangeKit, method: str) -> None:
    token = await kit.partner_token("wallet-pay")
    params = {"access_token": token} | ({"query": VIEWER} if method == "GET" else {})
    response = await kit.http.request(
        method, "/graphql", params=params, json={"query": VIEWER} if method == "POST" else None
    )
    assert response.status_code == 400
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_request"'
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "access_token"}
    assert error["message"].endswith("send the access token as Authorization: Bearer <token>")
    assert "data" not in response.json()


async def test_a_graphql_get_without_credentials_in_its_url_still_runs(kit: ExchangeKit) -> None:
    response = await kit.http.get("/graphql", params={"query": "{ programs { id } }"})
    assert response.status_code == 200 and len(response.json()["data"]["programs"]) == 7


@pytest.fixture
def served(pg_database_url: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`exchange serve` as an operator runs it, its standard output and error in one pipe."""
    port = free_port()
    process = subprocess.Popen(
        [EXCHANGE, "serve", "--port", str(port)],
        env={**os.environ, "EXCHANGE_DATABASE_URL": pg_database_url, "EXCHANGE_LOG_LEVEL": "info"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


async def test_the_access_log_of_a_running_gateway_never_shows_query_values(
    served: tuple[str, subprocess.Popen[str]], pg_database_url: str
) -> None:
    url, process = served
    db = Database.from_url(pg_database_url)
    try:
        async with db.transaction() as session:
            credentials = await clients.create_client(session, role=Role.SETTLEMENT, now=datetime.now(UTC))
    finally:
        await db.dispose()
    client_id, secret = credentials.client.client_id, credentials.client_secret
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for _ in range(200):
            try:
                if (await http.get("/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        else:
            pytest.fail("exchange serve did not start")
        leaked = await http.post(
            "/oauth/token",
            params={"client_id": client_id, "client_secret": secret},
            data={"grant_type": "client_credentials"},
        )
        assert leaked.status_code == 400
        token = (
            await http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))
        ).json()["access_token"]
        in_url = await http.get("/graphql", params={"query": VIEWER, "access_token": token})
        assert in_url.status_code == 400
        member_data = await http.get(
            "/graphql", params={"query": "query Alice42 { programs { id } }", "operationName": "Alice42"}
        )
        assert member_data.status_code == 200
    process.terminate()
    output, _ = process.communicate(timeout=30)

    assert secret not in output and quote(secret) not in output
    assert token not in output and "Alice42" not in output and "programs" not in output
    assert '"POST /oauth/token?client_id=***&client_secret=*** HTTP/1.1" 400' in output
    assert '"GET /graphql?query=***&access_token=*** HTTP/1.1" 400' in output
    assert '"GET /graphql?query=***&operationName=*** HTTP/1.1" 200' in output
