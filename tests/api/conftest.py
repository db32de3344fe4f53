"""A real gateway on loopback, on a fresh PostgreSQL database with the sample programs loaded."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from exchange.app import create_app
from exchange.loading import load_partners_directory
from exchange.serving import serving
from exchange.settings import Settings
from tests.conftest import SAMPLE_PARTNERS


@pytest.fixture
def gateway_settings(pg_database_url: str) -> Settings:
    return Settings(database_url=pg_database_url, partners_dir=SAMPLE_PARTNERS)


@pytest.fixture
async def gateway(gateway_settings: Settings) -> AsyncIterator[str]:
    """Base URL of a running gateway."""
    await load_partners_directory(gateway_settings)
    async with serving(create_app(gateway_settings)) as server:
        yield server.url


@pytest.fixture
async def client(gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        yield http
