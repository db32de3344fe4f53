"""A gateway that keeps partners' answers for five minutes, against sandbox partners harbor-bank
and formosa-air: only the member's activity marker can refresh what the federated view shows.
Each test here runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchange.app import create_app
from exchange.members.models import LinkedAccount
from exchange.programs.declarations import read_partners_directory
from exchange.services.container import load_partners_directory
from exchange.serving import free_port, serving
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit
from exchange.testing.sandboxes import SandboxFleet
from tests.conftest import SAMPLE_PARTNERS


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[SandboxFleet]:
    sandboxes = SandboxFleet(read_partners_directory(SAMPLE_PARTNERS), tmp_path / "sandboxes")
    await sandboxes.start("harbor-bank", "formosa-air")
    try:
        yield sandboxes
    finally:
        await sandboxes.stop()


@pytest.fixture
def gateway_settings(database_url: str) -> Settings:
    """tests.api.conftest's settings, on a fresh SQLite or PostgreSQL database."""
    return Settings(database_url=database_url, partners_dir=SAMPLE_PARTNERS, port=free_port())


@pytest.fixture
async def gateway(gateway_settings: Settings, fleet: SandboxFleet) -> AsyncIterator[str]:
    """The gateway of tests.api.conftest, caching partners' answers for five minutes."""
    settings = gateway_settings.model_copy(
        update={"partner_retry_attempts": 1, "balance_cache_seconds": 300, "tier_cache_seconds": 300}
    )
    await load_partners_directory(settings)
    async with serving(create_app(settings, partner_base_urls=fleet.base_urls), port=settings.port) as server:
        yield server.url


@pytest.fixture
async def bob(kit: ExchangeKit) -> str:
    """bob at harbor-bank (25,000 points, Platinum Card), also linked as carol at formosa-air
    (3,000 miles, Base); his token."""
    token = await kit.member_token("harbor-bank", "bob")
    member_id = (await kit.data("{ me { id } }", token))["me"]["id"]
    async with kit.db.transaction() as session:
        session.add(
            LinkedAccount(
                member_id=member_id,
                program_id="formosa-air",
                member_ref="carol",
                linked_at=datetime.now(UTC),
                established_by="assertion",
            )
        )
    return token
