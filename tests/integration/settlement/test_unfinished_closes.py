"""A period whose closer stopped after recording CLOSING (a ``settle close`` killed, a console job
that died and was not taken again) is closed by the gateways' own job once the closing grace is
over: with the figures and statements a clean close gives, once, however many gateways try."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlmodel import col, select

from exchange.cli import load_settings
from exchange.db.database import Database
from exchange.ledger.periods import PeriodStatus
from exchange.observability.metrics import REGISTRY
from exchange.programs.declarations import read_partners_directory
from exchange.services.container import build_services
from exchange.services.settlement import SettlementService
from exchange.settlement.models import IssuedStatement
from exchange.settlement.participants import EXCHANGE
from exchange.testing.clock import FrozenClock
from exchange.webhooks.models import WebhookEvent
from tests.conftest import SAMPLE_PARTNERS
from tests.integration.settlement.conftest import NOVEMBER, conversion, post, ready_service

PERIOD = "2026-11"
GRACE = timedelta(minutes=10)
#: What a clean close of the postings below gives (see test_closing).
NET = {EXCHANGE: 20, "fresh-mart": 1_980, "wallet-pay": -2_000}


class Killed(Exception):
    """The closer's process ends here."""


async def killed_after_closing_recorded(settlement: SettlementService, clock: FrozenClock) -> None:
    """Post the month, then start closing it and stop once CLOSING is committed, before netting:
    the database is left as a killed closer leaves it."""
    await post(settlement, [conversion("c1", "wallet-pay", "fresh-mart", 2_000, fee=20)])
    clock.advance(days=20)

    async def dies_when_netting(percent: int, step: str) -> None:
        if step == "netting":
            raise Killed

    with pytest.raises(Killed):
        await settlement.close(PERIOD, by="staff", progress=dies_when_netting)
    assert (await settlement.period(PERIOD)).status is PeriodStatus.CLOSING


def recovered_closes() -> float:
    return REGISTRY.get_sample_value("exchange_recovered_closes_total") or 0.0


async def assert_closed_as_a_clean_close_leaves_it(settlement: SettlementService) -> None:
    """Its positions, one statement per participant listing the ledger's lines, one
    ``period.closed`` event: nothing lost, nothing doubled."""
    report = await settlement.period(PERIOD)
    assert report.status is PeriodStatus.CLOSED
    assert report.row is not None and report.row.closed_by == "staff"  # who started it stays
    assert {p.participant: p.net for p in report.positions} == NET
    assert report.not_issued == []
    async with settlement.db.transaction() as session:
        statements = (await session.exec(select(IssuedStatement).order_by(col(IssuedStatement.participant)))).all()
        closed_events = (await session.exec(select(WebhookEvent).where(WebhookEvent.type == "period.closed"))).all()
    assert [s.participant for s in statements] == sorted(NET)
    for participant in NET:
        issued = await settlement.statement(participant, PERIOD)
        ledger = await settlement.ledger_lines(participant, PERIOD)
        assert issued.net == NET[participant]
        assert [(x.transaction_id, x.counterparty, x.amount) for x in issued.lines] == [
            (x.transaction_id, x.counterparty, x.amount) for x in ledger
        ]
    assert len(closed_events) == 1


async def test_a_period_left_closing_is_finished_by_the_gateway_job_once_the_grace_is_over(
    settlement: SettlementService, clock: FrozenClock
) -> None:
    await killed_after_closing_recorded(settlement, clock)
    before = recovered_closes()

    clock.advance(minutes=9)  # a closer this recent may still be netting: left to it
    waiting = await settlement.finish_unfinished_closes(grace=GRACE)
    assert (waiting.finished, waiting.closed_meanwhile, waiting.refused) == ([], [], [])
    assert (await settlement.period(PERIOD)).status is PeriodStatus.CLOSING

    clock.advance(minutes=2)
    done = await settlement.finish_unfinished_closes(grace=GRACE)
    assert (done.finished, done.closed_meanwhile, done.refused) == ([PERIOD], [], [])
    assert recovered_closes() - before == 1
    await assert_closed_as_a_clean_close_leaves_it(settlement)

    again = await settlement.finish_unfinished_closes(grace=GRACE)
    assert (again.finished, again.closed_meanwhile, again.refused) == ([], [], [])
    assert recovered_closes() - before == 1


@pytest.mark.postgres_only
async def test_two_gateways_finishing_one_period_at_once_close_it_once(
    pg_settlement: SettlementService, pg_database_url: str, clock: FrozenClock
) -> None:
    await killed_after_closing_recorded(pg_settlement, clock)
    clock.advance(minutes=11)
    other_db = Database.from_url(pg_database_url)  # another gateway: its own pool
    try:
        other = await ready_service(other_db, clock)
        passes = await asyncio.gather(
            pg_settlement.finish_unfinished_closes(grace=GRACE), other.finish_unfinished_closes(grace=GRACE)
        )
    finally:
        await other_db.dispose()
    assert sorted((p.finished, p.closed_meanwhile, p.refused) for p in passes) == [
        ([], [PERIOD], []),
        ([PERIOD], [], []),
    ]
    await assert_closed_as_a_clean_close_leaves_it(pg_settlement)


async def test_a_started_gateway_runs_the_job_with_the_grace_its_setting_names(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXCHANGE_CLOSING_GRACE_SECONDS", "120")
    clock = FrozenClock(NOVEMBER)
    services = build_services(load_settings(database_url=database_url), clock=clock)
    try:
        await services.catalog.load_partners(read_partners_directory(SAMPLE_PARTNERS))
        await services.settlement.ensure_signing_key()
        await killed_after_closing_recorded(services.settlement, clock)
        job = next(job for job in services.periodic_jobs() if job.name == "unfinished-closes")

        clock.advance(seconds=100)
        await job.run_once()
        assert (await services.settlement.period(PERIOD)).status is PeriodStatus.CLOSING
        clock.advance(seconds=30)
        await job.run_once()
        await assert_closed_as_a_clean_close_leaves_it(services.settlement)
    finally:
        await services.aclose()
