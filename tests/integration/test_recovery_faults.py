"""The recovery worker meets an unexpected error (a bug: a plain ``RuntimeError``, neither a
partner's error nor a database outage) while driving a conversion against real sandbox
partners, on SQLite and PostgreSQL: the row is put off, not held, and finished once it works."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from exchange.connectors.connector import PartnerConnector
from exchange.connectors.registry import ConnectorRegistry
from exchange.conversions.models import Conversion, ConversionStatus, SagaStep
from exchange.conversions.saga import ConversionSaga, SagaPolicy
from exchange.db.database import Database
from exchange.ledger.posting import Ledger
from exchange.loading import load_directory
from exchange.observability.metrics import REGISTRY
from exchange.programs.catalog import CatalogCache
from exchange.programs.declarations import PartnersDirectory
from exchange.programs.models import Program
from exchange.sagas.recovery import RecoveryPass, RecoveryWorker
from exchange.sandbox.faults import FaultKind
from exchange.services.container import risk_gates
from exchange.settings import Settings
from exchange.testing.clock import FrozenClock
from exchange.testing.sandboxes import SandboxFleet
from tests.factories import member_with_accounts
from tests.integration.test_conversions_with_sandboxes import PROGRAMS, Exchange, ledger_balances, partner_net

#: What the injected bug says: two lines, so that its record must be escaped to stay one.
BUG = "a bug\nin the exchange"
KEPT = "internal error: RuntimeError: a bug\\nin the exchange"
FOREVER = -1


class Bug:
    """fresh-mart's connector, as the saga calls it, with bugs to inject: its next ``remaining``
    calls (``FOREVER``: every one) raise :data:`BUG` as a plain ``RuntimeError``, after running
    ``meanwhile`` (what happens while the step is under way), before reaching the partner."""

    def __init__(self) -> None:
        self.remaining = 0
        self.raised = 0
        self.meanwhile: Callable[[], Awaitable[None]] | None = None

    def wrapping(self, connector: PartnerConnector) -> PartnerConnector:
        bug = self

        class Buggy:
            def __getattr__(self, name: str) -> Any:
                method = getattr(connector, name)

                async def call(*args: Any, **kwargs: Any) -> Any:
                    if bug.remaining:
                        bug.remaining -= bug.remaining > 0
                        bug.raised += 1
                        if bug.meanwhile is not None:
                            await bug.meanwhile()
                        raise RuntimeError(BUG)
                    return await method(*args, **kwargs)

                return call

        return cast(PartnerConnector, Buggy())


@pytest.fixture
async def bug() -> Bug:
    return Bug()


@pytest.fixture
async def exchange(
    db: Database, sandboxes: SandboxFleet, sample_partners: PartnersDirectory, bug: Bug
) -> AsyncIterator[Exchange]:
    await sandboxes.start(*PROGRAMS)
    clock = FrozenClock(datetime.now(UTC))
    settings = Settings(partner_retry_attempts=1)
    async with db.transaction() as session:
        await load_directory(session, sample_partners, clock.now())
    await member_with_accounts(db, dict.fromkeys(PROGRAMS, "alice"), clock.now(), member_id="alice")
    registry: ConnectorRegistry = sandboxes.registry(settings)

    def connector_for(program: Program) -> PartnerConnector:
        connector = registry.for_program(program)
        return bug.wrapping(connector) if program.id == "fresh-mart" else connector

    saga = ConversionSaga(
        db=db,
        connector_for=connector_for,
        catalog=CatalogCache(db, ttl=0),
        ledger=Ledger(timezone=settings.timezone, clock=clock),
        clock=clock,
        policy=SagaPolicy(timezone=settings.timezone),
        gates=risk_gates(),
    )
    try:
        yield Exchange(db, saga, clock, sandboxes, settings)
    finally:
        await registry.aclose()


async def credit_in_doubt(exchange: Exchange) -> Conversion:
    """A conversion debited at happy-card whose credit at fresh-mart failed (a 500, nothing
    applied), left PENDING for the recovery worker, which may take it now."""
    await exchange.sandboxes["fresh-mart"].admin.set_faults(script=[FaultKind.ERROR])
    conversion = await exchange.convert(1000, "happy-card", "fresh-mart", "k1")
    assert (conversion.status, conversion.step, conversion.in_doubt) == (
        ConversionStatus.PENDING,
        SagaStep.CREDIT,
        True,
    )
    exchange.clock.advance(minutes=10)
    return conversion


def faults_counted() -> float:
    return REGISTRY.get_sample_value("exchange_saga_faults_total", {"saga": "conversion"}) or 0.0


async def completed_once(exchange: Exchange, conversion_id: str) -> None:
    """The conversion COMPLETED, its points moved once, and the ledger agreeing with both partners."""
    assert await exchange.status(conversion_id) == ConversionStatus.COMPLETED
    debited = await partner_net(exchange.sandboxes, "happy-card", "alice")
    credited = await partner_net(exchange.sandboxes, "fresh-mart", "alice")
    assert (debited, credited) == (-1000, 2450)
    credits = [op for op in await exchange.sandboxes["fresh-mart"].admin.operations() if op["kind"] == "credit"]
    assert len(credits) == 1
    balances = await ledger_balances(exchange)
    assert (balances["member-points:happy-card"], balances["member-points:fresh-mart"]) == (debited, credited)


async def test_a_row_that_raises_once_is_put_off_with_its_error_and_completes_after_the_backoff(
    exchange: Exchange, bug: Bug, caplog: pytest.LogCaptureFixture
) -> None:
    conversion = await credit_in_doubt(exchange)
    before = await exchange.saga.reload(conversion.id)
    counted = faults_counted()
    bug.remaining = 1
    worker = RecoveryWorker(exchange.saga)

    with caplog.at_level(logging.ERROR, logger="exchange.sagas.recovery"):
        assert await worker.run_pass() == RecoveryPass(driven=1, faulted=(conversion.id,))
    row = await exchange.saga.reload(conversion.id)
    retry_at = exchange.clock.now() + exchange.saga.policy.backoff(before.attempts + 1)
    assert (row.status, row.step, row.in_doubt) == (ConversionStatus.PENDING, SagaStep.CREDIT, True)
    assert row.lease_until is None  # free at once, not after the lease
    assert (row.attempts, row.last_error, row.next_attempt_at) == (before.attempts + 1, KEPT, retry_at)
    assert faults_counted() - counted == 1
    [logged] = [record for record in caplog.records if record.name == "exchange.sagas.recovery"]
    assert f"conversion {conversion.id}" in logged.getMessage() and retry_at.isoformat() in logged.getMessage()
    assert logged.exc_info is not None and isinstance(logged.exc_info[1], RuntimeError)

    assert await worker.run_pass() == RecoveryPass(driven=0)  # not due before its back-off: no spinning
    exchange.clock.advance(seconds=exchange.saga.policy.backoff(row.attempts).total_seconds())
    assert await worker.run_pass() == RecoveryPass(driven=1)
    finished = await exchange.saga.reload(conversion.id)
    assert (finished.last_error, finished.lease_until) == (None, None)
    await completed_once(exchange, conversion.id)
    assert bug.raised == 1


async def test_a_row_that_always_raises_backs_off_further_each_time_and_exchange_recover_names_it(
    exchange: Exchange, bug: Bug
) -> None:
    conversion = await credit_in_doubt(exchange)
    bug.remaining = FOREVER
    worker = RecoveryWorker(exchange.saga)
    waits = []
    for _ in range(3):
        assert await worker.run_pass() == RecoveryPass(driven=1, faulted=(conversion.id,))
        assert await worker.run_pass() == RecoveryPass(driven=0)
        row = await exchange.saga.reload(conversion.id)
        assert (row.lease_until, row.last_error) == (None, KEPT)
        waits.append(row.next_attempt_at - exchange.clock.now())
        exchange.clock.advance(seconds=waits[-1].total_seconds())
    assert waits[0] < waits[1] < waits[2]
    assert bug.raised == 3

    report = await exchange.recover_all()  # `exchange recover`: taken at once, due or not
    assert (report.driven, report.pending, report.leased, report.faulted) == (1, 1, 0, (conversion.id,))

    bug.remaining = 0  # the bug fixed
    assert (await exchange.recover_all()).pending == 0
    await completed_once(exchange, conversion.id)


async def test_a_driver_whose_lease_ran_out_leaves_the_row_to_the_one_that_took_it_over(
    exchange: Exchange, bug: Bug
) -> None:
    """The step takes longer than the lease; another worker claims the row meanwhile; then the
    first driver's step raises. Its guarded update finds another lease and changes nothing:
    the row stays the second worker's, and is driven by it alone."""
    conversion = await credit_in_doubt(exchange)
    before = await exchange.saga.reload(conversion.id)
    taken_over: list[str] = []

    async def second_worker_claims() -> None:
        exchange.clock.advance(seconds=exchange.saga.policy.lease.total_seconds() + 1)
        taken_over.extend(await exchange.saga.claim_due())

    bug.remaining, bug.meanwhile = 1, second_worker_claims
    assert await RecoveryWorker(exchange.saga).run_pass() == RecoveryPass(driven=1, faulted=(conversion.id,))
    assert taken_over == [conversion.id]
    row = await exchange.saga.reload(conversion.id)
    assert row.lease_until == exchange.clock.now() + exchange.saga.policy.lease  # the second worker's
    assert (row.attempts, row.last_error, row.next_attempt_at) == (
        before.attempts,
        before.last_error,
        before.next_attempt_at,
    )
    assert await RecoveryWorker(exchange.saga).run_pass() == RecoveryPass(driven=0)  # still the second's

    await exchange.saga.recover(conversion.id)  # the second worker drives what it claimed
    await completed_once(exchange, conversion.id)


async def test_two_workers_never_both_drive_a_row_that_raised(exchange: Exchange, bug: Bug) -> None:
    conversion = await credit_in_doubt(exchange)
    bug.remaining = 1
    first = await asyncio.gather(*(RecoveryWorker(exchange.saga).run_pass() for _ in range(2)))
    assert sorted(first, key=lambda recovery: recovery.driven) == [
        RecoveryPass(driven=0),
        RecoveryPass(driven=1, faulted=(conversion.id,)),
    ]
    exchange.clock.advance(minutes=10)
    second = await asyncio.gather(*(RecoveryWorker(exchange.saga).run_pass() for _ in range(2)))
    assert sorted(recovery.driven for recovery in second) == [0, 1]
    assert bug.raised == 1
    await completed_once(exchange, conversion.id)
