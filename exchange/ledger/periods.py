"""Settlement periods: calendar months in the settlement time zone, named ``YYYY-MM``.

Periods close in order. A posting falls in the period of its effective time unless that
period is closing or closed; then it falls in the first period after the last closed one,
keeping its effective time. Postings and closings both hold the chain head's lock when they
read or change period states, so a posting never lands in a period that is closing.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.ledger.models import SettlementPeriod


class PeriodStatus(StrEnum):
    OPEN = "OPEN"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"


def period_of(moment: datetime, timezone: ZoneInfo) -> str:
    """The period a moment falls in, read on the settlement time zone's calendar."""
    local = moment.astimezone(timezone)
    return f"{local.year:04d}-{local.month:02d}"


def next_period(period: str) -> str:
    year, month = int(period[:4]), int(period[5:])
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


async def last_closed_period(session: AsyncSession) -> str | None:
    """The latest period that is closing or closed (periods close in order)."""
    return (
        await session.exec(
            select(func.max(SettlementPeriod.period)).where(col(SettlementPeriod.status) != PeriodStatus.OPEN)
        )
    ).one()


def posting_period(natural: str, last_closed: str | None) -> str:
    """Where a posting whose effective time falls in ``natural`` goes."""
    if last_closed is None or natural > last_closed:
        return natural
    return next_period(last_closed)
