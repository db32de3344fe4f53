"""The soak: hundreds of conversions among four real partners with random faults, and the
gateway process killed (SIGKILL) and restarted mid-run. Two of the partners answer later:
happy-card accepts debits and credits pending and calls back (callbacks sent while the
gateway is down are lost: polling makes up for them), fresh-mart takes its credits as files;
both decline a few. Afterwards every conversion is final, members' points moved by exactly
the conversions' net effect, and the ledger agrees line by line with every partner's
operation log."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from exchange.testing.sandboxes import SandboxFleet
from tests.integration.soaking import (
    Soak,
    check_ledger_agrees,
    clear_faults,
    convert,
    inject_faults,
    running_soak,
    until_final,
)

CONVERSIONS = 320
CLIENTS = 8
#: Partners that answer later, and how.
MODES = {"happy-card": "async", "fresh-mart": "batch"}


@pytest.fixture
async def soak(pg_database_url: str, sandboxes: SandboxFleet, tmp_path: Path) -> AsyncIterator[Soak]:
    async with running_soak(
        pg_database_url,
        sandboxes,
        tmp_path,
        modes=MODES,
        EXCHANGE_BATCH_INTERVAL_SECONDS="0.5",
        EXCHANGE_PENDING_POLL_FIRST_SECONDS="0.5",
        EXCHANGE_PENDING_POLL_LONGEST_SECONDS="2",
    ) as running:
        yield running


async def test_soak_with_faults_and_a_hard_kill_ends_final_and_agreeing(soak: Soak) -> None:
    rng = random.Random(20261127)
    await inject_faults(soak, declines=3)
    numbers = iter(range(CONVERSIONS))

    async def client() -> None:
        for number in numbers:
            await convert(soak, rng, number)

    clients = [asyncio.create_task(client()) for _ in range(CLIENTS)]
    while len(soak.answered["conversion"]) < CONVERSIONS // 3:
        await asyncio.sleep(0.05)
    soak.gateway.kill()  # mid-run, with requests in flight
    await asyncio.sleep(0.5)
    await soak.gateway.start()
    await asyncio.gather(*clients)
    assert len(soak.answered["conversion"]) >= 300

    await clear_faults(soak)
    statuses = (await until_final(soak))["conversion"]
    assert statuses["COMPLETED"] > 200 and statuses["FAILED"] + statuses["REVERSED"] > 0, statuses
    await check_ledger_agrees(soak)
    # The partners that answer later did: by callback, and by settled credits files.
    assert 200 in {sent["answer"] for sent in await soak.sandboxes["happy-card"].admin.sent_callbacks()}
    async with soak.kit.db.transaction() as session:
        files = await session.exec(text("SELECT count(*) FROM credit_batch WHERE status = 'SETTLED'"))  # type: ignore[call-overload]
        assert files.one()[0] > 0
