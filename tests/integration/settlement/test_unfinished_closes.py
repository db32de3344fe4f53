"""A period whose closer stopped after recording CLOSING (a ``settle close`` killed, a console job
that died and was not taken again) is closed by the gateways' own job once the closing grace is
over, or by ``exchange recover`` in another process: with the figures and statements a clean
close gives, once, however many gateways try."""

from __future__ import annotations

import asyncio
import os
from asyncio.subprocess import DEVNULL, PIPE
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlmodel import col, select

from exchange.cli import load_settings
from exchange.db.database import Database
from exchange.ledger.periods import PeriodStatus
from exchange.ledger.verify import verify_ledger
from exchange.observability.metrics import REGISTRY
from exchange.programs.declarations import read_partners_directory
from exchange.services.container import build_services
from exchange.services.settlement import SettlementService, settlement_currency
from exchange.settlement import issued
from exchange.settlement.models import IssuedStatement
from exchange.settlement.participants import EXCHANGE
from exchange.settlement.statements import encode_statement
from exchange.testing.clock import FrozenClock
from exchange.testing.processes import EXCHANGE as EXCHANGE_COMMAND
from exchange.webhooks.models import WebhookEvent
from tests.conftest import SAMPLE_PARTNERS
from tests.integration.locks import waiting_on_a_lock
from tests.integration.settlement.conftest import (
    ISSUER,
    NOVEMBER,
    SECRET,
    conversion,
    post,
    ready_service,
    redemption,
    served,
    settlement_on,
)
from tests.integration.test_cli import run_here

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


async def killed_while_issuing(
    settlement: SettlementService, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> IssuedStatement:
    """Post the month, then close it and stop while issuing its second statement: the period
    CLOSED, one statement issued (returned), the others not."""
    await post(settlement, [conversion("c1", "wallet-pay", "fresh-mart", 2_000, fee=20)])
    clock.advance(days=20)
    real = issued.issue
    issuing: list[str] = []

    async def dies_at_the_second(*arguments):  # type: ignore[no-untyped-def]
        issuing.append(arguments[2])
        if len(issuing) == 2:
            raise Killed
        return await real(*arguments)

    with monkeypatch.context() as dying, pytest.raises(Killed):
        dying.setattr(issued, "issue", dies_at_the_second)
        await settlement.close(PERIOD, by="staff")
    report = await settlement.period(PERIOD)
    assert report.status is PeriodStatus.CLOSED
    assert list(report.not_issued) == sorted(NET)[1:]
    first = await settlement.issued_statement(sorted(NET)[0], PERIOD)
    return first


async def assert_signed_as_an_uninterrupted_close_signs(settlement: SettlementService, period: str) -> None:
    """Every statement of ``period`` is the document the closed period gives, signed by the
    statement key as a close run to the end would have signed it (RS256 signs deterministically)."""
    key = await settlement.signing_key()
    async with settlement.db.transaction() as session:
        currency = await settlement_currency(session)
        rows = (await session.exec(select(IssuedStatement).where(IssuedStatement.period == period))).all()
        assert rows
        for row in rows:
            document = await encode_statement(
                session,
                issuer=settlement.issuer,
                calendar=settlement.calendar,
                currency=currency,
                participant=row.participant,
                period=period,
            )
            assert (row.document.encode(), row.key_id, row.jws) == (document, key.kid, issued.sign(document, key))


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
        issued = await served(settlement, participant, PERIOD)
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


async def test_a_close_cut_while_issuing_statements_is_finished_by_the_gateway_job_once_the_grace_is_over(
    settlement: SettlementService, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The closer stopped after the period was CLOSED, while issuing its statements: the period
    is unfinished as one left CLOSING is, and the gateway job issues the statements left (each
    once, as an uninterrupted close signs them) once the grace is over; the one issued before
    stays as it was."""
    first = await killed_while_issuing(settlement, clock, monkeypatch)
    before = recovered_closes()

    clock.advance(minutes=9)  # a closer this recent may still be issuing: left to it
    waiting = await settlement.finish_unfinished_closes(grace=GRACE)
    assert (waiting.finished, waiting.issued, waiting.closed_meanwhile, waiting.refused) == ([], [], [], [])
    assert list((await settlement.period(PERIOD)).not_issued) == sorted(NET)[1:]

    clock.advance(minutes=2)
    done = await settlement.finish_unfinished_closes(grace=GRACE)
    assert (done.finished, done.issued, done.closed_meanwhile, done.refused) == (
        [],
        [(PERIOD, sorted(NET)[1:])],
        [],
        [],
    )
    assert recovered_closes() == before, "no period was left CLOSING"
    await assert_closed_as_a_clean_close_leaves_it(settlement)
    await assert_signed_as_an_uninterrupted_close_signs(settlement, PERIOD)
    kept = await settlement.issued_statement(first.participant, PERIOD)
    assert (kept.jws, kept.issued_at) == (first.jws, first.issued_at)

    again = await settlement.finish_unfinished_closes(grace=GRACE)
    assert (again.finished, again.issued, again.closed_meanwhile, again.refused) == ([], [], [], [])


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


@pytest.mark.postgres_only
async def test_a_settle_close_killed_mid_way_is_finished_by_exchange_recover_and_a_reversal_meanwhile_is_next_months(
    pg_database_url: str,
) -> None:
    """`exchange settle close 2026-10` is SIGKILLed after it recorded CLOSING, while it waits to
    store the month's figures; meanwhile a redemption of October is reversed, dated October. The
    reversal lands in November (October takes nothing once CLOSING), and `exchange recover`, in
    another process, closes October once: the figures a clean close of October gives, the
    reversal in none of them, one statement per participant, the ledger whole."""
    env = {**os.environ, "EXCHANGE_DATABASE_URL": pg_database_url, "EXCHANGE_KEY_ENCRYPTION_SECRET": SECRET}
    assert run_here("db", "upgrade", env=env).returncode == 0
    assert run_here("partners", "load", "--dir", "partners", env=env).returncode == 0
    october = datetime(2026, 10, 10, 4, 0, tzinfo=UTC)
    db = Database.from_url(pg_database_url)
    clock = FrozenClock(october)
    try:
        service = await settlement_on(db, clock)
        await post(
            service,
            [
                conversion("c1", "wallet-pay", "fresh-mart", 2_000, fee=20, at=october),
                redemption("r1", "fresh-mart", "formosa-air", 1_500, at=october),
            ],
        )
        async with db.transaction() as holding:  # the figures' table, held: the closer waits to fill it
            await holding.exec(text("LOCK TABLE settlement_obligation IN EXCLUSIVE MODE"))  # type: ignore[call-overload]
            closer = await asyncio.create_subprocess_exec(
                EXCHANGE_COMMAND, "settle", "close", "2026-10", env=env, stdout=DEVNULL, stderr=DEVNULL
            )
            try:
                await waiting_on_a_lock(db)
                assert (await service.period("2026-10")).status is PeriodStatus.CLOSING
                clock.current = datetime(2026, 10, 31, 15, 59, tzinfo=UTC)  # the last minute of October in Taipei
                async with db.transaction() as session:
                    reversal = await service.ledger.reverse(
                        session, "t-r1", transaction_id="t-r1:reversal", effective_at=clock.now()
                    )
            finally:
                closer.kill()
                await closer.wait()
        assert reversal.period == "2026-11", "October took nothing once it was CLOSING"
        assert (await service.period("2026-10")).status is PeriodStatus.CLOSING

        recover = await asyncio.create_subprocess_exec(EXCHANGE_COMMAND, "recover", env=env, stdout=PIPE, stderr=PIPE)
        output, errors = await recover.communicate()
        assert recover.returncode == 0, errors
        assert output.decode().splitlines()[-1] == "1 settlement period left closing finished: 2026-10"

        report = await service.period("2026-10")
        assert report.status is PeriodStatus.CLOSED and report.not_issued == []
        net = {EXCHANGE: 20, "fresh-mart": 1_980 - 1_500, "wallet-pay": -2_000, "formosa-air": 1_500}
        assert {p.participant: p.net for p in report.positions} == net
        for participant in net:
            issued = await served(service, participant, "2026-10")
            assert "t-r1:reversal" not in {line.transaction_id for line in issued.lines}
        async with db.transaction() as session:
            statements = (await session.exec(select(IssuedStatement))).all()
            verification = await verify_ledger(session)
        assert sorted(s.participant for s in statements) == sorted(net)
        assert verification.ok, verification.problem
    finally:
        await db.dispose()


class Undone(Exception):
    """Rolls back the unit of work it leaves."""


@pytest.mark.postgres_only
@pytest.mark.parametrize(
    ("finisher", "says"),
    [
        (
            ("recover",),
            "0 settlement periods left closing finished; 2026-10 closed with statements left unissued, now issued: "
            "the statement of wallet-pay",
        ),
        (
            ("settle", "close", "2026-10"),
            "closed already; issued 1 statement left unissued by a closing cut while issuing them: "
            "the statement of wallet-pay",
        ),
    ],
    ids=["recover", "settle-close-again"],
)
async def test_a_settle_close_killed_while_issuing_statements_is_finished_once_by_the_next_run(
    pg_database_url: str, finisher: tuple[str, ...], says: str
) -> None:
    """`exchange settle close 2026-10` is SIGKILLed after October is CLOSED, while it issues the
    statements: two are issued, it waits to store the third. `exchange recover`, or the same
    `settle close` run again, issues the third and says so; the two stay as they were, and each
    is the document and signature an uninterrupted close gives."""
    env = {
        **os.environ,
        "EXCHANGE_DATABASE_URL": pg_database_url,
        "EXCHANGE_KEY_ENCRYPTION_SECRET": SECRET,
        "EXCHANGE_ISSUER": ISSUER,  # the service here signs as the commands do
    }
    assert run_here("db", "upgrade", env=env).returncode == 0
    assert run_here("partners", "load", "--dir", "partners", env=env).returncode == 0
    october = datetime(2026, 10, 10, 4, 0, tzinfo=UTC)
    db = Database.from_url(pg_database_url)
    try:
        service = await settlement_on(db, FrozenClock(october))
        await post(service, [conversion("c1", "wallet-pay", "fresh-mart", 2_000, fee=20, at=october)])
        with pytest.raises(Undone):
            async with db.transaction() as holding:  # wallet-pay's statement, being stored: the closer waits
                holding.add(
                    IssuedStatement(
                        period="2026-10",
                        participant="wallet-pay",
                        version=1,
                        document="{}",
                        key_id="held",
                        jws="held",
                        issued_at=october,
                    )
                )
                await holding.flush()
                closer = await asyncio.create_subprocess_exec(
                    EXCHANGE_COMMAND, "settle", "close", "2026-10", env=env, stdout=DEVNULL, stderr=DEVNULL
                )
                try:
                    await waiting_on_a_lock(db)
                finally:
                    closer.kill()
                    await closer.wait()
                raise Undone
        report = await service.period("2026-10")
        assert report.status is PeriodStatus.CLOSED and list(report.not_issued) == ["wallet-pay"]
        async with db.transaction() as session:
            first = {
                row.participant: (row.jws, row.issued_at) for row in (await session.exec(select(IssuedStatement))).all()
            }
        assert sorted(first) == [EXCHANGE, "fresh-mart"]

        run = await asyncio.create_subprocess_exec(EXCHANGE_COMMAND, *finisher, env=env, stdout=PIPE, stderr=PIPE)
        output, errors = await run.communicate()
        assert run.returncode == 0, errors
        assert says in output.decode().splitlines()

        report = await service.period("2026-10")
        assert report.not_issued == [] and {p.participant: p.net for p in report.positions} == NET
        async with db.transaction() as session:
            statements = (await session.exec(select(IssuedStatement))).all()
            closed_events = (await session.exec(select(WebhookEvent).where(WebhookEvent.type == "period.closed"))).all()
            verification = await verify_ledger(session)
        assert sorted(s.participant for s in statements) == sorted(NET) and len(closed_events) == 1
        assert {s.participant: (s.jws, s.issued_at) for s in statements if s.participant in first} == first
        await assert_signed_as_an_uninterrupted_close_signs(service, "2026-10")
        assert verification.ok, verification.problem
    finally:
        await db.dispose()
