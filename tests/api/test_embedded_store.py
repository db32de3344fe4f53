"""The OAuth endpoints on the embedded SQLite store, whose single connection a request's
unit of work holds: nothing inside the request may wait for a second one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from exchange.app import create_app
from exchange.auth import keys
from exchange.auth.scopes import Role
from exchange.db.database import Database
from exchange.services.container import load_partners_directory
from exchange.serving import free_port, serving
from exchange.settings import Settings
from exchange.testing.databases import SqliteDatabases
from exchange.testing.kit import ExchangeKit
from tests.clocks import MovableClock
from tests.conftest import SAMPLE_PARTNERS


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(datetime.now(UTC))


@pytest.fixture
def sqlite_settings(sqlite_databases: SqliteDatabases, tmp_path: object) -> Settings:
    url = sqlite_databases.create()
    return Settings(database_url=url, partners_dir=SAMPLE_PARTNERS, port=free_port())


@pytest.fixture
async def embedded_kit(sqlite_settings: Settings, clock: MovableClock) -> AsyncIterator[ExchangeKit]:
    await load_partners_directory(sqlite_settings)
    async with (
        serving(create_app(sqlite_settings, clock=clock), port=sqlite_settings.port) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        db = Database.from_url(sqlite_settings.database_url)
        try:
            yield ExchangeKit(settings=sqlite_settings, http=http, db=db)
        finally:
            await db.dispose()


async def test_issuing_introspecting_and_revoking_with_key_re_reads_inside_requests(
    embedded_kit: ExchangeKit, clock: MovableClock
) -> None:
    kit = embedded_kit
    partner = await kit.partner("wallet-pay")
    auth = (partner.client.client_id, partner.client_secret)
    clock.advance(keys.KEY_REFRESH)  # the next token request re-reads the keys mid-request
    token = await kit.client_token(partner)
    member = await kit.member_token("wallet-pay", "alice")

    async with kit.db.transaction() as session:
        await keys.rotate_signing_key(
            session, kit.settings.key_encryption_secret.get_secret_value(), clock.now(), keys.KEY_REFRESH
        )
    clock.advance(keys.KEY_REFRESH)  # introspection now re-reads the keys mid-request
    introspected = await kit.http.post("/oauth/introspect", data={"token": member}, auth=auth)
    assert introspected.status_code == 200 and introspected.json()["active"] is True

    assert (await kit.http.post("/oauth/revoke", data={"token": token}, auth=auth)).status_code == 200
    assert (await kit.graphql("{ viewer { role } }", token)).status_code == 401
    staff = await kit.new_client(Role.ADMIN)
    assert (await kit.data("{ clients { clientId } }", await kit.client_token(staff)))["clients"]
