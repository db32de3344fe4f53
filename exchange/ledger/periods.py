"""Settlement periods: blocks of calendar months in the settlement time zone, named ``YYYY-MM``.

A period is one calendar month by default; a coalition may settle every 2, 3, 4, 6 or 12
months instead, and a period is then named by its first month (quarterly: ``2026-01``,
``2026-04``, …). Periods close in order. A posting falls in the period of its effective time
unless that period is closing or closed; then it falls in the first period after the last
closed one, keeping its effective time. Postings hold a shard's lock and closings every shard's
when they read or change period states, so a posting never lands in a period that is closing.
Switching a period to closing records its close anchor: the heads of its chains, final from then.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.ledger.chain import SHARDS, lock_all_shards, record_last_closed
from exchange.ledger.errors import InvalidPeriod, NothingToClose, PeriodNotClosed, PeriodNotOver
from exchange.ledger.hashing import anchor_digest, anchor_heads
from exchange.ledger.models import (
    GENESIS_HASH,
    LedgerChainHead,
    LedgerCloseAnchor,
    LedgerTransaction,
    SettlementPeriod,
)
from exchange.text import quoted

#: Period lengths that tile a calendar year, so every period starts in the same months each year.
PERIOD_MONTHS = (1, 2, 3, 4, 6, 12)
#: The years a period may fall in: each period's bounds, in any time zone, stay on the calendar
#: (``0001-01`` would start before year 1 in UTC; ``9999-12`` would end in year 10000).
FIRST_YEAR = 1970
LAST_YEAR = 8999
_PERIOD_NAME = re.compile(r"^(\d{4})-(\d{2})$")
#: How long a period's name is: ``YYYY-MM``.
PERIOD_LENGTH = 7
#: How a period is written, as every refusal of one says it.
PERIOD_FORM = "a period is written YYYY-MM, such as 2026-11"
#: How much of an overlong period a refusal quotes.
_QUOTED = 20


def overlong_period(text: str) -> str | None:
    """Why ``text`` is refused before any calendar reads it, when it is longer than a period's
    name (a day, ``2026-11-01``, or a name with a space, ``' 2026-11'``): the form a period is
    written in, as :meth:`SettlementCalendar.parse` says it, not only a length, so that the
    caller learns what to write. A long text is quoted in part."""
    if len(text) <= PERIOD_LENGTH:
        return None
    return f"{PERIOD_FORM}; got {quoted(text, most=_QUOTED)}"


class PeriodStatus(StrEnum):
    OPEN = "OPEN"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"


@dataclass(frozen=True, slots=True)
class SettlementCalendar:
    """Where period boundaries fall: every ``months`` months, on ``timezone``'s calendar."""

    timezone: ZoneInfo
    months: int = 1

    def __post_init__(self) -> None:
        if self.months not in PERIOD_MONTHS:
            raise ValueError(f"a settlement period is one of {PERIOD_MONTHS} months, not {self.months}")

    def period_of(self, moment: datetime) -> str:
        """The period a moment falls in."""
        local = moment.astimezone(self.timezone)
        first_month = (local.month - 1) // self.months * self.months + 1
        return f"{local.year:04d}-{first_month:02d}"

    def next(self, period: str) -> str:
        return self._shift(period, self.months)

    def previous(self, period: str) -> str:
        return self._shift(period, -self.months)

    def within_years(self, period: str) -> str | None:
        """``period`` if it falls in the years a period may (:meth:`parse` takes it), else
        ``None``: what a page links to as the period before or after another, where the
        calendar ends (:meth:`next` of ``8999-12`` is ``9000-01``, which no page shows)."""
        return period if FIRST_YEAR <= int(period[:4]) <= LAST_YEAR else None

    def latest_over(self, moment: datetime) -> str:
        """The last period that is over at ``moment``: the one before the period it falls in."""
        return self.previous(self.period_of(moment))

    @staticmethod
    def _shift(period: str, months: int) -> str:
        index = int(period[:4]) * 12 + int(period[5:]) - 1 + months
        return f"{index // 12:04d}-{index % 12 + 1:02d}"

    def parse(self, text: str, *, field: str = "period") -> str:
        """``text`` if it names a period (``YYYY-MM``, starting a block of this calendar)."""
        match = _PERIOD_NAME.fullmatch(text) if text.isascii() else None
        if match is None or not 1 <= int(match[2]) <= 12:
            raise InvalidPeriod(f"{PERIOD_FORM}; got {text!r}", field=field)
        if not FIRST_YEAR <= int(match[1]) <= LAST_YEAR:
            raise InvalidPeriod(f"a period falls in the years {FIRST_YEAR} to {LAST_YEAR}; got {text!r}", field=field)
        if (int(match[2]) - 1) % self.months:
            raise InvalidPeriod(
                f"periods are {self.months} months long and start in months "
                f"{', '.join(f'{month:02d}' for month in range(1, 13, self.months))}; {text!r} does not",
                field=field,
            )
        return text

    def starts_at(self, period: str) -> datetime:
        """The first instant of ``period`` (local midnight of its first day), in UTC."""
        return datetime(int(period[:4]), int(period[5:]), 1, tzinfo=self.timezone).astimezone(UTC)

    def ends_at(self, period: str) -> datetime:
        """The first instant after ``period``, in UTC."""
        return self.starts_at(self.next(period))

    def posting_period(self, natural: str, last_closed: str | None) -> str:
        """Where a posting whose effective time falls in ``natural`` goes."""
        if last_closed is None or natural > last_closed:
            return natural
        return self.next(last_closed)


async def last_closed_period(session: AsyncSession) -> str | None:
    """The latest period that is closing or closed (periods close in order), as the shards
    record it."""
    last_closed: str | None = (await session.exec(select(SHARDS.c.last_closed).where(SHARDS.c.id == 1))).one()
    return last_closed


async def period_status(session: AsyncSession, period: str) -> PeriodStatus:
    """Where ``period`` stands: its row's state; with no row, OPEN, unless a later period has
    closed: then nothing was ever posted into it, and it is CLOSED."""
    row = await session.get(SettlementPeriod, period)
    if row is not None:
        return PeriodStatus(row.status)
    last_closed = await last_closed_period(session)
    return PeriodStatus.CLOSED if last_closed is not None and period < last_closed else PeriodStatus.OPEN


async def _first_unclosed_before(session: AsyncSession, period: str, last_closed: str | None) -> str | None:
    """The earliest period before ``period`` that has postings but is not CLOSED.

    Postings never land at or before the last closing or closed period, so such a period is
    either one still CLOSING, or one with postings after the last closed period: two lookups
    that each end at the first index entry they find.
    """
    closing = (
        await session.exec(
            select(func.min(SettlementPeriod.period)).where(
                col(SettlementPeriod.status) == PeriodStatus.CLOSING, col(SettlementPeriod.period) < period
            )
        )
    ).one()
    with_postings = select(func.min(LedgerTransaction.period)).where(col(LedgerTransaction.period) < period)
    if last_closed is not None:
        with_postings = with_postings.where(col(LedgerTransaction.period) > last_closed)
    active = (await session.exec(with_postings)).one()
    return min((found for found in (closing, active) if found is not None), default=None)


def refuse_if_nothing_to_close(period: str, row: SettlementPeriod | None, last_closed: str | None) -> None:
    """Raises :class:`~exchange.ledger.errors.NothingToClose` for ``period`` (its ``row``, if
    any) if nothing was ever posted into it and ``last_closed``, after it, has closed."""
    if row is None and last_closed is not None and period < last_closed:
        raise NothingToClose(period, last_closed)


async def start_closing(
    session: AsyncSession, calendar: SettlementCalendar, period: str, *, by: str, now: datetime
) -> SettlementPeriod:
    """Switch ``period`` to CLOSING, under every shard's lock, record its close anchor, and
    return its row.

    A period closes once it is over, and after every earlier period with postings has closed.
    Once this unit of work commits, every posting sees the period as closed and goes to a
    later one; a posting that holds a shard now commits first. A period already closing or
    closed is returned as it is. One without a row before the last closed period was never
    posted into and reads CLOSED (:func:`period_status`): closing it is refused
    (:class:`~exchange.ledger.errors.NothingToClose`), rather than issue statements of nothing.
    """
    head = (await lock_all_shards(session))[0]
    row = await session.get(SettlementPeriod, period, with_for_update=True)
    if row is not None:
        return row
    if now < calendar.ends_at(period):
        raise PeriodNotOver(period, calendar.ends_at(period))
    refuse_if_nothing_to_close(period, row, head.last_closed)
    earlier = await _first_unclosed_before(session, period, head.last_closed)
    if earlier is not None:
        raise PeriodNotClosed(f"period {earlier} has postings and is not closed: close it first", period=earlier)
    row = SettlementPeriod(period=period, status=PeriodStatus.CLOSING, closing_started_at=now, closed_by=by)
    session.add(row)
    await session.flush()
    await record_last_closed(session, period)
    await _anchor(session, period)
    return row


async def _anchor(session: AsyncSession, period: str) -> None:
    """Record the heads of ``period``'s chains, final now that it is closing, chained to the
    previous close's anchor (closes are anchored in period order)."""
    heads = await session.exec(
        select(LedgerChainHead.shard, LedgerChainHead.transactions, LedgerChainHead.seq, LedgerChainHead.hash).where(
            LedgerChainHead.period == period
        )
    )
    previous = (
        await session.exec(select(LedgerCloseAnchor.hash).order_by(col(LedgerCloseAnchor.period).desc()).limit(1))
    ).first()
    prev_hash = previous or GENESIS_HASH
    canonical = anchor_heads(heads.all())
    session.add(
        LedgerCloseAnchor(
            period=period,
            heads=canonical,
            prev_hash=prev_hash,
            hash=anchor_digest(prev_hash=prev_hash, period=period, heads=canonical),
        )
    )
    await session.flush()
