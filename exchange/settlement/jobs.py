"""Settlement jobs: closing a period in the background, for the console.

Staff ask for a period to be closed (:func:`enqueue_close`); the gateway's job runner takes the
oldest queued job (:func:`claim`), runs the one close (``closing.close_period``) and records
its progress in the job's row as it goes, then DONE or FAILED with the reason. One job per
period is active at a time (a unique index over the active ones): asking again while one is
queued or running returns it.

A runner whose unit of work loses the database (a connection killed, a failover) stops
working on its job and puts it back in the queue (:func:`requeue`) as soon as the database
answers it again, so staff see it queued rather than running, and a runner's next pass takes
it again; closing again finishes what the first run left (closing is idempotent). A runner
beats a heartbeat (:func:`heartbeat`) every :func:`heartbeat_every` while it works, however
long one step of the close takes; a runner that dies leaves its job RUNNING with a heartbeat
that goes stale, and another runner takes it again once it is older than the stale time
(``EXCHANGE_SETTLEMENT_JOB_STALE_SECONDS``). Each run is known by when it was taken
(``started_at``): a runner puts back, or beats the heartbeat of, only its own run, never one
another runner has taken since.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Table, bindparam, or_, update
from sqlalchemy import select as core_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db.database import Database
from exchange.settlement.models import JobState, SettlementJob

CLOSE_PERIOD = "close-period"
#: How many heartbeats a live runner sends within the stale time: a beat late by a slow
#: database, or two, still leaves the run's heartbeat fresh.
HEARTBEATS_PER_STALE = 4
JOBS: Table = SettlementJob.__table__  # type: ignore[attr-defined]


async def active_job(session: AsyncSession, kind: str, subject: str) -> SettlementJob | None:
    return (
        await session.exec(
            select(SettlementJob).where(
                SettlementJob.kind == kind,
                SettlementJob.subject == subject,
                col(SettlementJob.state).in_([JobState.QUEUED.value, JobState.RUNNING.value]),
            )
        )
    ).first()


async def enqueue_close(session: AsyncSession, period: str, *, by: str, now: datetime) -> SettlementJob:
    """Queue closing ``period``, or return the job already queued or running for it."""
    if (found := await active_job(session, CLOSE_PERIOD, period)) is not None:
        return found
    job = SettlementJob(
        id=str(uuid.uuid4()),
        kind=CLOSE_PERIOD,
        subject=period,
        state=JobState.QUEUED.value,
        requested_by=by,
        requested_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(job)
            await session.flush()
    except IntegrityError:  # asked at the same moment by someone else: theirs stands
        found = await active_job(session, CLOSE_PERIOD, period)
        assert found is not None
        return found
    return job


def heartbeat_every(stale_after: timedelta) -> timedelta:
    """How often a runner beats its run's heartbeat, for runs taken again after ``stale_after``
    of silence."""
    return stale_after / HEARTBEATS_PER_STALE


async def any_to_take(db: Database, now: datetime, stale_after: timedelta) -> bool:
    """Whether :func:`claim` would find a job to take now: one read, committed on its own, which
    every gateway process's runner sends every second (a unit of work costs several times it)."""
    return bool(await db.read(_ANY_TAKEABLE, {"stale_before": now - stale_after}))


async def claim(session: AsyncSession, now: datetime, stale_after: timedelta) -> SettlementJob | None:
    """Take the oldest queued job (or a running one whose runner has been silent for longer than
    ``stale_after``) for this runner; None if there is none. Two runners racing for one job:
    the state check in the UPDATE lets one of them have it."""
    taken = (await session.exec(_CLAIM, params={"now": now, "stale_before": now - stale_after})).first()
    if taken is None:
        return None
    return await session.get(SettlementJob, taken[0], populate_existing=True)


#: A job a runner may take: queued, or running with a runner silent since before ``stale_before``.
_TAKEABLE = or_(
    JOBS.c.state == JobState.QUEUED.value,
    (JOBS.c.state == JobState.RUNNING.value) & (JOBS.c.heartbeat_at < bindparam("stale_before")),
)
_ANY_TAKEABLE = core_select(JOBS.c.id).where(_TAKEABLE).limit(1)
#: The oldest takeable job taken for a run that starts ``now``.
_CLAIM = (
    update(JOBS)
    .where(
        JOBS.c.id == core_select(JOBS.c.id).where(_TAKEABLE).order_by(JOBS.c.requested_at).limit(1).scalar_subquery(),
        _TAKEABLE,
    )
    .values(
        state=JobState.RUNNING.value,
        started_at=bindparam("now", type_=JOBS.c.started_at.type),
        heartbeat_at=bindparam("now", type_=JOBS.c.heartbeat_at.type),
        step="",
        progress=0,
    )
    .returning(JOBS.c.id)
)


async def requeue(session: AsyncSession, job_id: str, started_at: datetime) -> bool:
    """Put back in the queue the run of job ``job_id`` taken at ``started_at``, which its runner
    gave up on; False if that run is no longer the job's (it ended, or another runner took the
    job once its heartbeat was stale)."""
    moved = await session.exec(
        update(JOBS)
        .where(JOBS.c.id == job_id, JOBS.c.state == JobState.RUNNING.value, JOBS.c.started_at == started_at)
        .values(state=JobState.QUEUED.value, step="", progress=0, started_at=None, heartbeat_at=None)
    )
    return moved.rowcount == 1


async def heartbeat(session: AsyncSession, job_id: str, started_at: datetime, now: datetime) -> bool:
    """Record that the run of job ``job_id`` taken at ``started_at`` is alive at ``now``; False
    if that run is no longer the job's (it ended, or another runner took the job)."""
    beaten = await session.exec(
        update(JOBS)
        .where(JOBS.c.id == job_id, JOBS.c.state == JobState.RUNNING.value, JOBS.c.started_at == started_at)
        .values(heartbeat_at=now)
    )
    return beaten.rowcount == 1


async def record_progress(session: AsyncSession, job_id: str, percent: int, step: str, now: datetime) -> None:
    await session.exec(update(JOBS).where(JOBS.c.id == job_id).values(progress=percent, step=step, heartbeat_at=now))


async def finish(session: AsyncSession, job_id: str, now: datetime, *, error: str | None = None) -> None:
    """Mark the job DONE, or FAILED with ``error``."""
    values = {"state": JobState.DONE.value, "progress": 100, "step": "done"}
    if error is not None:
        values = {"state": JobState.FAILED.value, "error": error[:500]}
    await session.exec(update(JOBS).where(JOBS.c.id == job_id).values(finished_at=now, **values))


async def recent_jobs(session: AsyncSession, limit: int = 20) -> Sequence[SettlementJob]:
    return (
        await session.exec(select(SettlementJob).order_by(col(SettlementJob.requested_at).desc()).limit(limit))
    ).all()
