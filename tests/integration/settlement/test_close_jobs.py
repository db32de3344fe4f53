"""Closing a period as a background job: queued by staff, run by the job runner, with progress."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.cli import load_settings
from exchange.db.availability import DatabaseUnavailable
from exchange.db.database import Database
from exchange.ledger.errors import PeriodNotOver
from exchange.ledger.periods import PeriodStatus
from exchange.services.settlement import ISSUING_STATEMENTS, SettlementService, UnfinishedCloses
from exchange.settlement import closing, issued, jobs
from exchange.settlement.errors import JobNotFound
from exchange.settlement.models import JobState
from exchange.settlement.netting import Obligation
from exchange.testing.clock import FrozenClock
from tests.integration.settlement.conftest import conversion, post, served
from tests.outages import kill_connection_of

T = TypeVar("T")


@pytest.fixture
async def november(settlement: SettlementService, clock: FrozenClock) -> SettlementService:
    await post(settlement, [conversion("c1", "fresh-mart", "wallet-pay", 10_000, fee=200)])
    clock.current = settlement.calendar.ends_at("2026-11") + timedelta(days=1)
    return settlement


async def test_a_queued_close_runs_once_through_the_one_close_and_reports_progress(
    november: SettlementService, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = await november.request_close("2026-11", by="alice")
    assert (job.state, job.progress, job.requested_by) == (JobState.QUEUED, 0, "alice")
    assert (await november.request_close("2026-11", by="bob")).id == job.id  # one active job per period
    steps: list[tuple[str, int]] = []
    real = jobs.record_progress

    async def watched(session, job_id, percent, step, now):  # type: ignore[no-untyped-def]
        steps.append((step, percent))
        await real(session, job_id, percent, step, now)

    monkeypatch.setattr(jobs, "record_progress", watched)
    assert await november.run_next_job() is True
    assert steps == [("closing", 5), ("netting", 35), ("reporting", 90), ("issuing statements", 95)]
    done = await november.job(job.id)
    assert (done.state, done.progress, done.error, done.finished_at is not None) == (JobState.DONE, 100, None, True)
    report = await november.period("2026-11")
    assert report.status is PeriodStatus.CLOSED and report.row is not None and report.row.closed_by == "alice"
    assert await november.run_next_job() is False
    clock.advance(minutes=1)
    again = await november.request_close("2026-11", by="bob")
    assert again.id != job.id  # a new job; closing again changes nothing
    await november.run_jobs()
    assert (await november.job(again.id)).state == JobState.DONE
    assert [j.id for j in await november.recent_jobs()] == [again.id, job.id]


async def test_a_close_that_is_refused_fails_its_job_with_the_reason(
    november: SettlementService, clock: FrozenClock
) -> None:
    await post(november, [conversion("c2", "fresh-mart", "wallet-pay", 100, at=clock.now())])  # into December
    clock.current = november.calendar.ends_at("2027-01") + timedelta(days=1)
    job = await november.request_close("2027-01", by="alice")
    assert await november.run_next_job()
    failed = await november.job(job.id)
    assert failed.state == JobState.FAILED and failed.error is not None and "close it first" in failed.error


async def test_a_period_not_over_is_refused_before_any_job_is_queued(november: SettlementService) -> None:
    with pytest.raises(PeriodNotOver) as refused:
        await november.request_close("2026-12", by="alice")
    assert refused.value.field == "period"
    assert await november.recent_jobs() == []
    with pytest.raises(JobNotFound):
        await november.job("no-such-job")


async def test_a_job_whose_runner_went_silent_is_taken_again(november: SettlementService, clock: FrozenClock) -> None:
    job = await november.request_close("2026-11", by="alice")
    async with november.db.transaction() as session:
        assert (
            await jobs.claim(session, clock.now(), november.stale_after)
        ) is not None  # a runner takes it, then dies
    assert await november.run_next_job() is False
    clock.advance(minutes=3)
    assert await november.run_next_job() is True
    assert (await november.job(job.id)).state == JobState.DONE


async def test_a_job_whose_runner_died_is_taken_again_once_silent_longer_than_the_stale_time_set(
    november: SettlementService, clock: FrozenClock, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXCHANGE_SETTLEMENT_JOB_STALE_SECONDS", "30")
    set_so = SettlementService.for_settings(load_settings(database_url=database_url), db=november.db, clock=clock)
    runner = replace(november, stale_after=set_so.stale_after)
    job = await runner.request_close("2026-11", by="alice")
    async with runner.db.transaction() as session:
        assert (await jobs.claim(session, clock.now(), runner.stale_after)) is not None  # a runner takes it, then dies
    clock.advance(seconds=30)
    assert await runner.run_next_job() is False, "silent for the stale time, not longer"
    clock.advance(seconds=1)
    assert await runner.run_next_job() is True
    assert (await runner.job(job.id)).state == JobState.DONE


class SteppedHeartbeats:
    """The pause between a job runner's heartbeats, stepped by the test instead of by time: each
    pause lasts until :meth:`beat` lets it end."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        """How long each pause was asked to last (seconds)."""
        self._paused: asyncio.Queue[None] = asyncio.Queue()
        self._go = asyncio.Semaphore(0)

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        self._paused.put_nowait(None)
        await self._go.acquire()

    async def beat(self) -> None:
        """End the pause the runner waits in, and return once the heartbeat that follows is
        recorded (the runner waits in its next pause)."""
        await self._paused.get()
        self._go.release()
        await self._paused.get()
        self._paused.put_nowait(None)  # that next pause still waits


@pytest.mark.postgres_only
async def test_a_live_runner_keeps_its_job_through_a_close_step_longer_than_the_stale_time(
    pg_settlement: SettlementService, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The netting takes three times the stale time (30 s here) while the runner lives: it beats
    the job's heartbeat every quarter of the stale time, so another gateway's runner, looking
    all along, never takes the live run, and the run closes the month once."""
    await post(pg_settlement, [conversion("c1", "fresh-mart", "wallet-pay", 10_000, fee=200)])
    clock.current = pg_settlement.calendar.ends_at("2026-11") + timedelta(days=1)
    stale = timedelta(seconds=30)
    heartbeats = SteppedHeartbeats()
    runner = replace(pg_settlement, stale_after=stale, pause=heartbeats)
    other = replace(pg_settlement, stale_after=stale)  # another gateway's runner, on the same database
    real = closing.netting.obligations
    netting, netted = asyncio.Event(), asyncio.Event()

    async def slow(session, period, currency):  # type: ignore[no-untyped-def]
        netting.set()
        await netted.wait()
        return await real(session, period, currency)

    job = await runner.request_close("2026-11", by="alice")
    with monkeypatch.context() as slowed:
        slowed.setattr(closing.netting, "obligations", slow)
        running = asyncio.create_task(runner.run_next_job())
        await netting.wait()
        assert heartbeats.asked == [7.5], "the runner beats four times within the stale time"
        for _ in range(12):
            clock.advance(seconds=7.5)
            await heartbeats.beat()
            assert await other.run_next_job() is False
        taken = await runner.job(job.id)
        assert (taken.state, taken.step, taken.heartbeat_at) == (JobState.RUNNING, "netting", clock.now())
        netted.set()
        assert await running is True
    done = await runner.job(job.id)
    assert (done.state, done.started_at, done.error) == (JobState.DONE, taken.started_at, None)
    assert (await runner.period("2026-11")).status is PeriodStatus.CLOSED


async def test_a_close_stopped_with_its_gateway_is_queued_again_for_the_next_pass(
    november: SettlementService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway stopping (SIGTERM) cancels its background jobs: the runner's close, cancelled
    while netting, left its job RUNNING, with nobody running it, until its heartbeat was stale
    (the stale time); it is queued again at once, and the next pass closes the period once."""
    real = closing.netting.obligations
    netting = asyncio.Event()

    async def endless(session, period, currency):  # type: ignore[no-untyped-def]
        netting.set()
        await asyncio.Event().wait()

    job = await november.request_close("2026-11", by="alice")
    with monkeypatch.context() as stopping:
        stopping.setattr(closing.netting, "obligations", endless)
        runner = asyncio.create_task(november.run_next_job())
        await netting.wait()
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    queued = await november.job(job.id)
    assert (queued.state, queued.step, queued.progress, queued.error) == (JobState.QUEUED, "", 0, None)
    assert closing.netting.obligations is real
    assert await november.run_next_job() is True
    assert (await november.job(job.id)).state == JobState.DONE
    assert (await november.period("2026-11")).status is PeriodStatus.CLOSED


async def test_a_close_whose_connection_is_killed_while_netting_is_queued_again_and_the_next_pass_closes_it(
    pg_settlement: SettlementService, pg_db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The netting's connection is killed (``pg_terminate_backend``) after the period switched
    to CLOSING: the runner meets the outage and, the database answering again, puts its job
    back in the queue (not RUNNING for the stale time with nobody running it, nor FAILED with the
    outage for its reason); the period stays CLOSING with no figures, and the runner's next
    pass, at once, closes the period once."""
    await post(pg_settlement, [conversion("c1", "fresh-mart", "wallet-pay", 10_000, fee=200)])
    clock.current = pg_settlement.calendar.ends_at("2026-11") + timedelta(days=1)
    real = closing.netting.obligations

    async def killed(session, period, currency):  # type: ignore[no-untyped-def]
        await kill_connection_of(session, pg_db)
        return await real(session, period, currency)

    job = await pg_settlement.request_close("2026-11", by="alice")
    with monkeypatch.context() as dying:
        dying.setattr(closing.netting, "obligations", killed)
        with pytest.raises(DatabaseUnavailable):
            await pg_settlement.run_next_job()
    queued = await pg_settlement.job(job.id)
    assert (queued.state, queued.step, queued.progress, queued.error) == (JobState.QUEUED, "", 0, None)
    report = await pg_settlement.period("2026-11")
    assert (report.status, report.positions, report.obligations) == (PeriodStatus.CLOSING, [], [])

    assert await pg_settlement.run_next_job() is True
    assert (await pg_settlement.job(job.id)).state == JobState.DONE
    report = await pg_settlement.period("2026-11")
    assert report.status is PeriodStatus.CLOSED
    assert report.obligations == [
        Obligation("fresh-mart", "EXCHANGE", 200),
        Obligation("fresh-mart", "wallet-pay", 9_800),
    ]
    assert sum(position.net for position in report.positions) == 0


async def test_a_close_whose_connection_is_killed_while_issuing_says_so_and_is_taken_again(
    pg_settlement: SettlementService, pg_db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection is killed while the second statement is issued, after the period is
    CLOSED: the job is queued again, the period names the statements not issued yet, and the
    job taken again issues exactly those, leaving the first as it was."""
    await post(pg_settlement, [conversion("c1", "fresh-mart", "wallet-pay", 10_000, fee=200)])
    clock.current = pg_settlement.calendar.ends_at("2026-11") + timedelta(days=1)
    real = issued.encode_statement
    built: list[str] = []

    async def killed(session, **what):  # type: ignore[no-untyped-def]
        built.append(what["participant"])
        if len(built) == 2:
            await kill_connection_of(session, pg_db)
        return await real(session, **what)

    job = await pg_settlement.request_close("2026-11", by="alice")
    with monkeypatch.context() as dying:
        dying.setattr(issued, "encode_statement", killed)
        with pytest.raises(DatabaseUnavailable):
            await pg_settlement.run_next_job()
    assert (await pg_settlement.job(job.id)).state == JobState.QUEUED
    report = await pg_settlement.period("2026-11")
    assert report.status is PeriodStatus.CLOSED
    assert list(report.not_issued) == [p.participant for p in report.positions if p.participant != built[0]]
    first = await served(pg_settlement, built[0], "2026-11")

    clock.advance(minutes=1)
    assert await pg_settlement.run_next_job() is True
    assert (await pg_settlement.job(job.id)).state == JobState.DONE
    assert list((await pg_settlement.period("2026-11")).not_issued) == []
    again = await served(pg_settlement, built[0], "2026-11")
    assert (again.json(), again.jws, again.row.issued_at) == (first.json(), first.jws, first.row.issued_at)


def killing(real: Callable[..., Awaitable[T]], db: Database) -> Callable[..., Awaitable[T]]:
    """``real`` (which takes a session first), called after that session's connection is killed."""

    async def killed(session: AsyncSession, *arguments: Any) -> T:
        await kill_connection_of(session, db)
        return await real(session, *arguments)

    return killed


async def test_a_close_cut_off_without_a_job_is_finished_by_recovery_once(
    pg_settlement: SettlementService, pg_db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`exchange settle close` (no job) loses its connection while netting: the period stays
    CLOSING, and no job runner will take it. The recovery pass closes it (its closer stays who
    started it), its statements issued, and a second pass finds nothing left."""
    await post(pg_settlement, [conversion("c1", "fresh-mart", "wallet-pay", 10_000, fee=200)])
    clock.current = pg_settlement.calendar.ends_at("2026-11") + timedelta(days=1)
    with monkeypatch.context() as dying:
        dying.setattr(closing.netting, "obligations", killing(closing.netting.obligations, pg_db))
        with pytest.raises(DatabaseUnavailable):
            await pg_settlement.close("2026-11", by="alice")
    assert (await pg_settlement.period("2026-11")).status is PeriodStatus.CLOSING

    assert await pg_settlement.finish_unfinished_closes() == UnfinishedCloses(finished=["2026-11"], refused=[])
    report = await pg_settlement.period("2026-11")
    assert report.status is PeriodStatus.CLOSED and report.row is not None and report.row.closed_by == "alice"
    assert report.obligations == [
        Obligation("fresh-mart", "EXCHANGE", 200),
        Obligation("fresh-mart", "wallet-pay", 9_800),
    ]
    assert list(report.not_issued) == []
    assert await pg_settlement.finish_unfinished_closes() == UnfinishedCloses(finished=[], refused=[])


async def test_a_close_that_lost_the_database_until_the_next_pass_is_queued_again_by_that_pass(
    pg_settlement: SettlementService, pg_db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The netting's connection is killed, and so is the one the runner then puts its job back
    in the queue with (the database not answering yet): the job shows RUNNING until the runner's
    next pass, which queues it again first thing and then runs it to the end."""
    await post(pg_settlement, [conversion("c1", "fresh-mart", "wallet-pay", 10_000, fee=200)])
    clock.current = pg_settlement.calendar.ends_at("2026-11") + timedelta(days=1)
    job = await pg_settlement.request_close("2026-11", by="alice")
    with monkeypatch.context() as dying:
        dying.setattr(closing.netting, "obligations", killing(closing.netting.obligations, pg_db))
        dying.setattr(jobs, "requeue", killing(jobs.requeue, pg_db))
        with pytest.raises(DatabaseUnavailable):
            await pg_settlement.run_next_job()
    assert (await pg_settlement.job(job.id)).state == JobState.RUNNING
    assert await pg_settlement.run_next_job() is True
    assert (await pg_settlement.job(job.id)).state == JobState.DONE
    assert (await pg_settlement.period("2026-11")).status is PeriodStatus.CLOSED


async def test_a_runner_that_lost_the_database_never_queues_a_run_another_runner_took_since(
    pg_settlement: SettlementService, pg_db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner cannot put its job back (the database does not answer it), and before it
    can, another runner takes the job, its heartbeat stale: the first runner's next pass leaves
    that run alone (no two runners close one period at once), and takes nothing."""
    await post(pg_settlement, [conversion("c1", "fresh-mart", "wallet-pay", 10_000, fee=200)])
    clock.current = pg_settlement.calendar.ends_at("2026-11") + timedelta(days=1)
    job = await pg_settlement.request_close("2026-11", by="alice")
    with monkeypatch.context() as dying:
        dying.setattr(closing.netting, "obligations", killing(closing.netting.obligations, pg_db))
        dying.setattr(jobs, "requeue", killing(jobs.requeue, pg_db))
        with pytest.raises(DatabaseUnavailable):
            await pg_settlement.run_next_job()
    clock.advance(minutes=3)
    async with pg_db.transaction() as session:
        taken = await jobs.claim(
            session, clock.now(), pg_settlement.stale_after
        )  # another runner, which goes on closing
    assert taken is not None and taken.id == job.id
    assert await pg_settlement.run_next_job() is False
    running = await pg_settlement.job(job.id)
    assert (running.state, running.started_at) == (JobState.RUNNING, taken.started_at)


async def test_a_close_job_that_fails_while_issuing_fails_at_that_step_and_closing_again_issues_the_rest(
    november: SettlementService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error while issuing: the job FAILED at its last step (its page then says
    the period is closed), and a new close job issues the statements still missing."""
    real = issued.issue
    calls: list[str] = []

    async def failing(*arguments):  # type: ignore[no-untyped-def]
        calls.append(arguments[2])
        if len(calls) == 2:
            raise RuntimeError("a bug while issuing")
        await real(*arguments)

    job = await november.request_close("2026-11", by="alice")
    with monkeypatch.context() as patched:
        patched.setattr(issued, "issue", failing)
        with pytest.raises(RuntimeError):
            await november.run_next_job()
    failed = await november.job(job.id)
    assert (failed.state, failed.step) == (JobState.FAILED, ISSUING_STATEMENTS)
    assert (await november.period("2026-11")).status is PeriodStatus.CLOSED
    assert calls[1] in (await november.period("2026-11")).not_issued
    again = await november.request_close("2026-11", by="alice")
    assert again.id != job.id and await november.run_next_job() is True
    assert (await november.job(again.id)).state == JobState.DONE
    assert list((await november.period("2026-11")).not_issued) == []
