"""Closing a period: OPEN → CLOSING (under the ledger's chain-head lock) → figures → CLOSED.

First, the two periods after it get their ledger partitions (PostgreSQL). Then one unit of work
switches the period to CLOSING while holding every shard's lock (which postings take), records
the period's close anchor, and commits at once: from then on nothing posts into the period (late items go to the next open
one), so its rows are final. Then a last unit of work, holding the period's row, computes the
obligations from those rows (one aggregation, see ``netting``), stores them, the positions and the
coalition point's outstanding liability and every program's outstanding points (the books') at the
period's end, and marks the period CLOSED. If
that fails (or the process dies), the period stays CLOSING and closing it again finishes the
job (``exchange recover`` closes every period left so, :func:`left_unfinished`, and so does every
gateway's background job once a period has been CLOSING longer than its grace). The statements are issued after it (``issued``), each in a unit of work of its own: a
statement lists every line, which no aggregation can do, and the closing's unit of work, which
holds the period, stays one of set-based statements. A closer that stops while it issues them
leaves the period CLOSED with statements not issued: that too is unfinished, and the same
recovery finishes it. Closing a CLOSED period changes none of its figures and returns those
stored the first time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import and_, bindparam, exists, or_, text
from sqlalchemy import select as core_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import Clock
from exchange.coalition.liability import liability_at, record_liability
from exchange.coalition.models import CoalitionLiability
from exchange.db.bulk import bulk_insert
from exchange.db.database import Database
from exchange.ledger.models import LedgerCloseAnchor, SettlementPeriod
from exchange.ledger.outstanding import record_outstanding
from exchange.ledger.partitions import ensure_partitions
from exchange.ledger.periods import (
    PeriodStatus,
    SettlementCalendar,
    period_status,
    start_closing,
)
from exchange.money import Currency
from exchange.programs.valuation import fix_point_values
from exchange.settlement import netting
from exchange.settlement.errors import SettlementInvariantBroken
from exchange.settlement.models import IssuedStatement, SettlementObligation, SettlementPosition
from exchange.settlement.netting import NettingSaving, Obligation
from exchange.webhooks.events import period_closed
from exchange.webhooks.outbox import emit

OBLIGATIONS = SettlementObligation.__table__  # type: ignore[attr-defined]

Progress = Callable[[int, str], Awaitable[None]]
"""Told how far closing has come (percent, and the step it starts), between its units of work."""


async def no_progress(percent: int, step: str) -> None:
    """Tells no one."""


@dataclass(frozen=True)
class PeriodReport:
    """A period's state and, once it is closed, its figures."""

    period: str
    status: PeriodStatus
    row: SettlementPeriod | None
    positions: Sequence[SettlementPosition]
    obligations: Sequence[Obligation]
    currency: Currency
    coalition_liability: CoalitionLiability | None = None
    """The coalition point's outstanding liability at the period's end (closed periods)."""
    not_issued: Sequence[str] = ()
    """The participants whose statement is not issued yet (``issued``), in order: while closing
    issues them, or after a closing cut while issuing, until closing again or each one's first
    download issues it."""
    closed_now: bool = False
    """Whether the closing that returned this report netted the period and marked it CLOSED
    (False: it found it CLOSED already, by an earlier closer or by one it waited behind)."""
    issued_now: Sequence[str] = ()
    """The participants whose statement the closing that returned this report issued, in order
    (with ``closed_now`` False: those an earlier closer, cut while issuing, left unissued)."""
    archived_at: datetime | None = None
    """When its ledger rows were detached for archive (``settlement.archive``); ``None``: not."""

    @property
    def saving(self) -> NettingSaving | None:
        if self.status is not PeriodStatus.CLOSED:
            return None
        return NettingSaving.of(self.obligations, {p.participant: p.net for p in self.positions})


async def period_report(session: AsyncSession, period: str, currency: Currency) -> PeriodReport:
    """Where ``period`` stands. A period with no row is OPEN, unless a later period has
    closed: then nothing was ever posted into it, and it is CLOSED with no figures."""
    row = await session.get(SettlementPeriod, period)
    if row is None:
        return PeriodReport(period, await period_status(session, period), None, [], [], currency)
    positions = (
        await session.exec(
            select(SettlementPosition)
            .where(SettlementPosition.period == period)
            .order_by(col(SettlementPosition.participant))
        )
    ).all()
    obligations = [
        Obligation(o.debtor, o.creditor, o.amount)
        for o in await session.exec(
            select(SettlementObligation)
            .where(SettlementObligation.period == period)
            .order_by(col(SettlementObligation.debtor), col(SettlementObligation.creditor))
        )
    ]
    issued = set(
        (await session.exec(select(IssuedStatement.participant).where(IssuedStatement.period == period))).all()
    )
    anchor = await session.get(LedgerCloseAnchor, period)
    return PeriodReport(
        period,
        PeriodStatus(row.status),
        row,
        positions,
        obligations,
        currency,
        await liability_at(session, period),
        not_issued=[p.participant for p in positions if p.participant not in issued],
        archived_at=None if anchor is None else anchor.archived_at,
    )


async def left_unfinished(db: Database, *, started_before: datetime | None = None) -> list[tuple[str, PeriodStatus]]:
    """The periods a closer left unfinished, oldest first, each with its status: CLOSING (it
    crashed, or lost the database, before netting them), or CLOSED with a participant's
    statement not issued (it stopped while issuing them); with ``started_before``, only those
    whose closing started before then. One read, with no unit of work around it: every gateway
    process asks every second (a pass that finds nothing costs only it)."""
    if started_before is None:
        rows = await db.read(_UNFINISHED, {})
    else:
        rows = await db.read(_UNFINISHED_STARTED_BEFORE, {"started_before": started_before})
    return [(period, PeriodStatus(status)) for period, status in rows]


#: A participant of the period whose statement is not issued.
_UNISSUED = exists().where(
    col(SettlementPosition.period) == col(SettlementPeriod.period),
    ~exists().where(
        col(IssuedStatement.period) == col(SettlementPosition.period),
        col(IssuedStatement.participant) == col(SettlementPosition.participant),
    ),
)
_UNFINISHED = (
    core_select(col(SettlementPeriod.period), col(SettlementPeriod.status))
    .where(
        or_(
            col(SettlementPeriod.status) == PeriodStatus.CLOSING,
            and_(col(SettlementPeriod.status) == PeriodStatus.CLOSED, _UNISSUED),
        )
    )
    .order_by(col(SettlementPeriod.period))
)
_UNFINISHED_STARTED_BEFORE = _UNFINISHED.where(col(SettlementPeriod.closing_started_at) < bindparam("started_before"))


@dataclass(frozen=True, slots=True)
class ListedPeriod:
    """A period that has started closing, and when its ledger rows were detached for archive
    (``None``: they were not)."""

    row: SettlementPeriod
    archived_at: datetime | None


async def recent_periods(session: AsyncSession, first: int) -> list[ListedPeriod]:
    """The latest ``first`` periods that have started closing, newest first."""
    rows = await session.exec(
        select(SettlementPeriod, LedgerCloseAnchor.archived_at)
        .outerjoin(LedgerCloseAnchor, col(LedgerCloseAnchor.period) == col(SettlementPeriod.period))
        .order_by(col(SettlementPeriod.period).desc())
        .limit(first)
    )
    return [ListedPeriod(row, archived_at) for row, archived_at in rows.all()]


async def _finish(session: AsyncSession, period: str, currency: Currency, clock: Clock) -> bool:
    """Net a CLOSING period, store its figures and mark it CLOSED, unless another closer has
    (then False)."""
    row = await session.get(SettlementPeriod, period, with_for_update=True)  # one closer at a time
    assert row is not None
    if row.status == PeriodStatus.CLOSED:
        return False
    owed = await netting.obligations(session, period, currency.code)
    await bulk_insert(
        session,
        OBLIGATIONS,
        ("period", "debtor", "creditor", "amount"),
        [(period, o.debtor, o.creditor, o.amount) for o in owed],
    )
    await session.exec(netting.INSERT_POSITIONS, params={"period": period})  # type: ignore[call-overload]
    imbalance = (
        await session.exec(
            text("SELECT coalesce(sum(net), 0) FROM settlement_position WHERE period = :period"),
            params={"period": period},
        )  # type: ignore[call-overload]
    ).scalar_one()
    if imbalance:
        raise SettlementInvariantBroken(f"the net positions of {period} sum to {imbalance}, not zero")
    now = clock.now()  # one instant for the closing: its liability, its point values and closedAt
    await record_liability(session, period, now)
    await record_outstanding(session, period)
    await fix_point_values(session, period, now)
    row.status = PeriodStatus.CLOSED
    row.closed_at = now
    session.add(row)
    await session.flush()
    participants = await session.exec(
        select(SettlementPosition.participant)
        .where(SettlementPosition.period == period)
        .order_by(col(SettlementPosition.participant))
    )
    await emit(session, *period_closed(period, participants.all(), now))
    await session.flush()
    return True


async def close_period(
    db: Database,
    calendar: SettlementCalendar,
    clock: Clock,
    currency: Currency,
    period: str,
    *,
    by: str,
    progress: Progress = no_progress,
) -> PeriodReport:
    """Close ``period`` (or finish closing it) and return its figures; see the module's docstring."""
    period = calendar.parse(period)
    await progress(5, "closing")
    async with db.transaction() as session:  # before any shard is locked: attaching waits for postings
        following = calendar.next(period)
        await ensure_partitions(session, [following, calendar.next(following)])
    async with db.transaction() as session:
        row = await start_closing(session, calendar, period, by=by, now=clock.now())
        status = row.status
    closed_now = False
    if status != PeriodStatus.CLOSED:
        await progress(35, "netting")
        async with db.transaction() as session:
            closed_now = await _finish(session, period, currency, clock)
    await progress(90, "reporting")
    async with db.transaction() as session:
        return replace(await period_report(session, period, currency), closed_now=closed_now)
