"""The coalition point's outstanding liability: points members hold × the value of a point.

Live, it is the lots' outstanding total (``exchange ledger verify`` shows it). At a period's
closing it is taken from the ledger, which is final for a closed period: the ``member-points``
balance of the point over that period and every earlier one, valued at the point's value at
the closing (``ROUND_MONEY``: half-even to the currency's minor unit), and recorded once.

That balance is the points recorded at the latest earlier closing plus the entries of the
periods since (through this one), not a sum of the entries from the beginning: an archived
period's entries have left the ledger (``settlement.archive``), and every closing after it
must still count them. Before the first closing that recorded a liability, the entries from
the beginning are the balance.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.coalition.models import CoalitionLiability
from exchange.coalition.rules import declared_point
from exchange.db import dialects
from exchange.ledger.accounts import ChartOfAccounts

#: The points recorded at the latest closing before ``:period``, plus the entries since.
HELD_THROUGH = text(
    """
    WITH recorded AS (
        SELECT period, points FROM coalition_liability
         WHERE program_id = :program AND period < :period
         ORDER BY period DESC LIMIT 1
    )
    SELECT coalesce((SELECT points FROM recorded), 0)
           + coalesce((SELECT sum(e.amount)
                         FROM ledger_entry e JOIN ledger_account a ON a.id = e.account_id
                        WHERE a.code = :code AND e.period <= :period
                          AND e.period > coalesce((SELECT period FROM recorded), '')), 0)
    """
)


async def record_liability(session: AsyncSession, period: str, now: datetime) -> None:
    """Record the point's liability at the end of ``period`` (its closing; a no-op when no point
    is declared, or when it is recorded already)."""
    rules = await declared_point(session)
    if rules is None:
        return
    code = ChartOfAccounts(rules.currency.code).member_points(rules.program_id).code
    held = await session.exec(HELD_THROUGH, params={"program": rules.program_id, "code": code, "period": period})  # type: ignore[call-overload]
    points = int(held.scalar_one())
    await session.exec(
        dialects.insert(session, CoalitionLiability.__table__)  # type: ignore[attr-defined]
        .values(
            period=period,
            program_id=rules.program_id,
            points=points,
            point_value=rules.point_value,
            liability_minor=rules.value_minor(points),
            recorded_at=now,
        )
        .on_conflict_do_nothing()
    )


async def liability_at(session: AsyncSession, period: str) -> CoalitionLiability | None:
    """The liability recorded at ``period``'s closing, if any."""
    return await session.get(CoalitionLiability, period)
