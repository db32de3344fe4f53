"""Last month on a gateway's database, built through the services under a clock set in it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx

from exchange.services.container import open_services
from exchange.settings import Settings
from exchange.testing.clock import FrozenClock
from exchange.testing.databases import PostgresDatabases
from tests.factories import conversion
from tests.web.conftest import Gateway, run_async, start_gateway

#: (name, source, target, value in cents, fee in cents): a month in which netting saves payments.
CONVERSIONS = (
    ("c1", "wallet-pay", "fresh-mart", 10_000, 200),
    ("c2", "fresh-mart", "wallet-pay", 4_000, 80),
    ("c3", "formosa-air", "wallet-pay", 3_000, 60),
    ("c4", "fresh-mart", "formosa-air", 2_500, 50),
    ("c5", "tune-stream", "fresh-mart", 1_200, 0),
)
#: fresh-mart's file of the month: c1 agrees; c4 differs; two lines the ledger lacks; c2 and c5 left out.
RECORDS = (
    "reference,amount,counterparty\n"
    "conversion:c1,98.00,wallet-pay\n"
    "conversion:c4,-24.00,formosa-air\n"
    "conversion:x1,5.00,formosa-air\n"
    "conversion:x2,7.50,tune-stream\n"
)


def build_last_month(settings: Settings) -> str:
    """Post last month's conversions with the services' clock set in that month; its name."""
    now = datetime.now(UTC)

    async def build() -> str:
        async with open_services(settings, clock=FrozenClock(now)) as services:
            calendar = services.settlement.calendar
            current = calendar.period_of(now)
            previous = calendar.period_of(calendar.starts_at(current) - timedelta(seconds=1))
        during = calendar.starts_at(previous) + timedelta(days=10)
        async with open_services(settings, clock=FrozenClock(during)) as services, services.db.transaction() as session:
            await services.settlement.ledger.post_many(
                session,
                [
                    conversion(name, source, target, value, fee, at=during)
                    for name, source, target, value, fee in CONVERSIONS
                ],
            )
        return previous

    return run_async(build)


def settling_gateway(databases: PostgresDatabases) -> Iterator[tuple[Gateway, str]]:
    """A gateway of its own (its months belong to the tests that use it), with last month built
    and a job runner that looks for work five times a second; and last month's name."""
    for gateway in start_gateway(databases, settlement_job_interval_seconds=0.2):
        yield gateway, build_last_month(gateway.settings)


def wait_for_job(client: httpx.Client, job_path: str, timeout: float = 30) -> str:
    """Poll the job's progress fragment until it is no longer running; the fragment."""
    deadline = time.monotonic() + timeout
    while True:
        fragment = client.get(f"{job_path}/progress").text
        if "hx-trigger" not in fragment:
            return fragment
        assert time.monotonic() < deadline, fragment
        time.sleep(0.2)


CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
