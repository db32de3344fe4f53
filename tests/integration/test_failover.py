"""The gateway rides through a PostgreSQL failover (pg_auto_failover, see
deploy/postgresql-failover.md).

Members convert and redeem among four partners with random faults while the primary's node
is killed (its whole process group, as a crashed machine goes). Every request that meets the
outage is answered ``SERVICE_UNAVAILABLE`` (503 where GraphQL never ran), never an internal
error; clients ask again with the same idempotency key; once the standby is promoted the
gateway's connections find it through the multi-host URL, and the recovery workers finish
what was in flight. Afterwards nothing the gateway answered COMPLETED is lost or doubled,
the ledger agrees line by line with every partner and verifies on the new primary, and the
test reports how long writes were refused.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from exchange.db import migrate
from exchange.errors import ConfigurationError
from exchange.testing import failover as failover_cluster
from exchange.testing.failover import FailoverCluster
from exchange.testing.postgres import find_server_binaries
from exchange.testing.processes import EXCHANGE
from exchange.testing.sandboxes import SandboxFleet
from tests.integration.soaking import (
    Soak,
    check_ledger_agrees,
    clear_faults,
    convert,
    inject_faults,
    publish_reward,
    redeem,
    running_soak,
    until_final,
)

CONVERTING_CLIENTS = 6
REDEEMING_CLIENTS = 2
#: Answers before the primary is killed, and after writes are accepted again.
ANSWERS_BEFORE = 60
ANSWERS_AFTER = 60


@pytest.fixture
def failover() -> Iterator[FailoverCluster]:
    """A monitor, a primary and its synchronous standby, with the exchange's schema."""
    try:
        cluster = FailoverCluster.start()
    except ConfigurationError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        migrate.upgrade(cluster.url)
        yield cluster
    finally:
        cluster.stop()


def answers(soak: Soak) -> int:
    return sum(len(answered) for answered in soak.answered.values())


async def until(condition: Callable[[], bool], what: str, clients: list[asyncio.Task[None]]) -> None:
    """Wait for ``condition``; a client that failed fails the test with its own assertion."""
    deadline = time.monotonic() + 180
    while not condition():
        for client in clients:
            if client.done():
                client.result()
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


async def refused_outside_graphql(soak: Soak) -> None:
    """During the outage, readiness and the token endpoint answer 503 with Retry-After."""
    http = soak.kit.http
    deadline = time.monotonic() + 120
    while (ready := await http.get("/readyz")).status_code == 200:
        assert time.monotonic() < deadline, "readiness never noticed the outage"
        await asyncio.sleep(0.1)
    token = await soak.kit.request_token(await soak.kit.partner("wallet-pay"))
    for response in (ready, token):
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        assert response.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"


async def test_conversions_and_redemptions_ride_through_a_primary_failover(
    failover: FailoverCluster,
    sandboxes: SandboxFleet,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    assert failover.primary() is failover.nodes[0]
    assert [state for _, state in failover.synchronous_standbys()] in (["sync"], ["quorum"]), "commits wait for node2"

    # The gateway is given the URL as libpq writes it (several hosts, read-write wanted).
    async with running_soak(failover.url, sandboxes, tmp_path, EXCHANGE_DATABASE_URL=failover.url) as soak:
        rng = random.Random(20261201)
        await inject_faults(soak)
        reward = await publish_reward(soak)
        numbers = itertools.count()
        stop = asyncio.Event()

        async def converting() -> None:
            while not stop.is_set():
                await convert(soak, rng, next(numbers))

        async def redeeming() -> None:
            while not stop.is_set():
                await redeem(soak, rng, next(numbers), reward)

        clients = [asyncio.create_task(converting()) for _ in range(CONVERTING_CLIENTS)]
        clients += [asyncio.create_task(redeeming()) for _ in range(REDEEMING_CLIENTS)]
        try:
            await until(lambda: answers(soak) >= ANSWERS_BEFORE, "answers before the failover", clients)
            killed_at = time.monotonic()
            await asyncio.to_thread(failover.nodes[0].kill)  # with conversions, redemptions and postings in flight
            await refused_outside_graphql(soak)
            await until(lambda: soak.writes.refusal_window() is not None, "writes accepted again", clients)
            first_refused, first_accepted = soak.writes.refusal_window() or (0.0, 0.0)
            record_property("primary killed → first write refused (s)", round(first_refused - killed_at, 1))
            record_property("writes refused during the failover (s)", round(first_accepted - first_refused, 1))
            answered_then = answers(soak)
            await until(lambda: answers(soak) >= answered_then + ANSWERS_AFTER, "answers after the failover", clients)
            stop.set()
            await asyncio.gather(*clients)
        finally:
            for client in clients:
                client.cancel()

        await clear_faults(soak)
        statuses = await until_final(soak)
        await check_ledger_agrees(soak)

    assert failover.primary() is failover.nodes[1]
    assert statuses["conversion"]["COMPLETED"] > 0 and statuses["redemption"]["COMPLETED"] > 0, statuses
    verified = subprocess.run(
        [EXCHANGE, "ledger", "verify"],
        env={**os.environ, "EXCHANGE_DATABASE_URL": failover.url},
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr

    record_property("writes answered SERVICE_UNAVAILABLE", len(soak.writes.refused))
    record_property(
        "answered / final",
        {saga: f"{dict(Counter(soak.answered[saga].values()))} / {dict(statuses[saga])}" for saga in statuses},
    )


def test_missing_pg_auto_failover_fails_with_install_instructions(monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = find_server_binaries()
    monkeypatch.setattr(failover_cluster.shutil, "which", lambda name: None)
    with pytest.raises(ConfigurationError) as caught:
        failover_cluster.find_pg_autoctl(bin_dir)
    version = bin_dir.parent.name
    assert f"apt-get install postgresql-{version}-auto-failover pg-auto-failover-cli" in str(caught.value)
