"""A participant's position in a closed period: read it, or lock it to change what hangs on it.

The position row is the lock of a partner's settlement of one period: importing records,
resolving a break and signing off all lock it first, so they happen one at a time, and none
happens after sign-off.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db import dialects
from exchange.ledger.errors import PeriodNotClosed
from exchange.ledger.models import SettlementPeriod
from exchange.ledger.periods import PeriodStatus, last_closed_period
from exchange.programs.models import Program
from exchange.programs.service import ProgramNotFound, program_ids
from exchange.settlement.errors import PERIODS_NAMED, NoSuchParticipant, PositionBusy
from exchange.settlement.models import SettlementPosition
from exchange.settlement.participants import EXCHANGE


async def require_closed(session: AsyncSession, period: str) -> SettlementPeriod:
    row = await session.get(SettlementPeriod, period)
    if row is None or row.status != PeriodStatus.CLOSED:
        raise PeriodNotClosed(
            f"period {period} is not closed: settlement staff close a period once it is over (closePeriod, or "
            "exchange settle close); partners hear of it by the period.closed webhook",
            period=period,
        )
    return row


async def _closed_without_postings(session: AsyncSession, period: str) -> bool:
    """A period that never had a row but lies before the last closed one: nothing was ever
    posted into it, and it counts as closed (with no participant)."""
    last_closed = await last_closed_period(session)
    return last_closed is not None and period < last_closed


async def position_of(
    session: AsyncSession, participant: str, period: str, *, for_update: bool = False, reconciled: bool = False
) -> SettlementPosition:
    """The participant's position in the closed ``period``. A period closed without postings
    has no participant: asking for one there is :class:`NoSuchParticipant`, not a period that
    is not closed. ``reconciled``: asked for a partner's reconciliation, which the exchange has
    none of, so an unknown id is not said to have perhaps meant the exchange's."""
    if await session.get(SettlementPeriod, period) is not None or not await _closed_without_postings(session, period):
        await require_closed(session, period)
    row = await session.get(SettlementPosition, (period, participant), with_for_update=for_update)
    if row is None:
        # A mistyped id is named as such, not as a program that happened to have no business;
        # the ids it could have meant include the exchange's own (``exchange`` is not it),
        # unless it is asked for what the exchange has none of.
        if participant != EXCHANGE and await session.get(Program, participant) is None:
            known = [*await program_ids(session), *(() if reconciled else (EXCHANGE,))]
            raise ProgramNotFound(participant, field="partnerId", known=known)
        took_part = await session.exec(
            select(SettlementPosition.period)
            .where(SettlementPosition.participant == participant)
            .order_by(col(SettlementPosition.period).desc())
            .limit(PERIODS_NAMED + 1)
        )
        raise NoSuchParticipant(participant, period, took_part=took_part.all())
    return row


async def position_locked_within(
    session: AsyncSession, partner: str, period: str, wait: timedelta
) -> SettlementPosition:
    """The position of the partner's reconciliation, locked, waiting at most ``wait`` for
    another unit of work that holds it, then :class:`PositionBusy`."""
    try:
        async with dialects.lock_wait(session, wait):
            return await position_of(session, partner, period, for_update=True, reconciled=True)
    except DBAPIError as error:
        if dialects.lock_not_available(error):
            raise PositionBusy(partner, period) from None
        raise
