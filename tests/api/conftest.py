"""A real gateway on loopback, on a fresh PostgreSQL database with the sample programs loaded,
a kit to act as its partners, staff and members over HTTP, and a webhook receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from exchange.app import create_app
from exchange.clock import Clock
from exchange.db.database import Database
from exchange.ledger.posting import Ledger
from exchange.services.container import load_partners_directory
from exchange.serving import RunningServer, free_port, serving
from exchange.settings import Settings
from exchange.testing.clock import FrozenClock
from exchange.testing.kit import ExchangeKit
from exchange.trust_store import trust_store
from tests.conftest import SAMPLE_PARTNERS
from tests.factories import conversion


@pytest.fixture
def gateway_settings(pg_database_url: str) -> Settings:
    # The port is chosen first: it is part of the issuer URL that tokens carry. No test waits for
    # coalition points to expire in the background (they call the expiry themselves), and its
    # pass at start-up would add statements to the ones test_query_counts counts.
    return Settings(
        database_url=pg_database_url,
        partners_dir=SAMPLE_PARTNERS,
        port=free_port(),
        coalition_expiry_interval_seconds=0,
    )


#: Runs a test on the embedded SQLite store too, in a module whose ``gateway_settings`` are
#: :func:`store_settings`; every test runs on PostgreSQL.
ON_SQLITE_TOO = pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def store(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "postgresql"))


@pytest.fixture
def store_settings(store: str, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """A gateway's settings on a fresh database of ``store``, each partner call tried once."""
    databases = request.getfixturevalue("sqlite_databases" if store == "sqlite" else "postgres_databases")
    url = databases.create()
    try:
        yield Settings(database_url=url, partners_dir=SAMPLE_PARTNERS, port=free_port(), partner_retry_attempts=1)
    finally:
        databases.drop(url)


@pytest.fixture
def partner_base_urls() -> dict[str, str]:
    """Where the gateway reaches partners; a module that needs real partners overrides this
    to start sandbox partners (see test_conversions_api.py)."""
    return {}


@pytest.fixture
async def gateway(gateway_settings: Settings, partner_base_urls: dict[str, str]) -> AsyncIterator[str]:
    """Base URL of a running gateway."""
    await load_partners_directory(gateway_settings)
    app = create_app(gateway_settings, partner_base_urls=partner_base_urls)
    async with serving(app, port=gateway_settings.port) as server:
        yield server.url


@asynccontextmanager
async def gateway_on_clock(settings: Settings, clock: Clock) -> AsyncIterator[str]:
    """Base URL of a running gateway on ``clock``, which the test moves (it decides token
    times, rotations and key re-reads), with no sandbox partners."""
    await load_partners_directory(settings)
    async with serving(create_app(settings, clock=clock), port=settings.port) as server:
        yield server.url


@pytest.fixture
async def client(gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway, timeout=30, verify=trust_store()) as http:
        yield http


@pytest.fixture
async def kit(gateway_settings: Settings, client: httpx.AsyncClient) -> AsyncIterator[ExchangeKit]:
    db = Database.from_url(gateway_settings.database_url)
    try:
        yield ExchangeKit(settings=gateway_settings, http=client, db=db)
    finally:
        await db.dispose()


@pytest.fixture
async def last_month(kit: ExchangeKit) -> str:
    """The period before the current one, holding two conversions; not closed yet."""
    return await post_last_month(kit)


async def post_last_month(kit: ExchangeKit) -> str:
    """Post two conversions into the period before the current one; its name."""
    ledger = Ledger.for_settings(kit.settings, FrozenClock(datetime.now(UTC)))
    current = ledger.calendar.period_of(datetime.now(UTC))
    previous = ledger.calendar.period_of(ledger.calendar.starts_at(current) - timedelta(seconds=1))
    during = ledger.calendar.starts_at(previous) + timedelta(days=3)
    async with kit.db.transaction() as session:
        await ledger.post_many(
            session,
            [
                conversion(name, source, target, value, fee, at=during)
                for name, source, target, value, fee in (
                    ("c1", "wallet-pay", "fresh-mart", 10_000, 200),
                    ("c2", "formosa-air", "wallet-pay", 3_000, 60),
                )
            ],
        )
    return previous


class Receiver:
    """A webhook receiver on loopback: answers 204 and keeps every request's headers and body."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Condition()

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        async with self.arrived:
            self.received.append((dict(request.headers), body))
            self.arrived.notify_all()
        return Response(status_code=204)

    async def wait_for(self, count: int) -> None:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.received) >= count), timeout=30)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, RunningServer]]:
    hooks = Receiver()
    async with serving(Starlette(routes=[Route("/hook", hooks.hook, methods=["POST"])])) as server:
        yield hooks, server
