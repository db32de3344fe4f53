"""The soak: hundreds of conversions among four real partners with random faults, and the
gateway process killed (SIGKILL) and restarted mid-run. Afterwards every conversion is
final, members' points moved by exactly the conversions' net effect, and the ledger agrees
line by line with every partner's operation log."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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


@pytest.fixture
async def soak(pg_database_url: str, sandboxes: SandboxFleet, tmp_path: Path) -> AsyncIterator[Soak]:
    async with running_soak(pg_database_url, sandboxes, tmp_path) as running:
        yield running


async def test_soak_with_faults_and_a_hard_kill_ends_final_and_agreeing(soak: Soak) -> None:
    rng = random.Random(20261127)
    await inject_faults(soak)
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
