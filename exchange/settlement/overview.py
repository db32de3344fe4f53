"""A partner's settlement at a glance: each closed period it took part in, its position, and
where the reconciliation of its records stands (for the partner console's statements page)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.settlement.models import BreakResolution, Reconciliation, ReconciliationBreak, SettlementPosition


@dataclass(frozen=True, slots=True)
class PartnerPeriod:
    position: SettlementPosition
    reconciliation: Reconciliation | None
    """The latest import of the partner's records for the period (``None``: none yet)."""
    unresolved: int
    """Breaks of that import no one has resolved yet."""


async def partner_periods(session: AsyncSession, partner: str, *, first: int) -> Sequence[PartnerPeriod]:
    """The partner's ``first`` latest closed periods, newest first, in three queries."""
    positions = (
        await session.exec(
            select(SettlementPosition)
            .where(SettlementPosition.participant == partner)
            .order_by(col(SettlementPosition.period).desc())
            .limit(first)
        )
    ).all()
    periods = [position.period for position in positions]
    latest: dict[str, Reconciliation] = {}
    for row in await session.exec(
        select(Reconciliation)
        .where(Reconciliation.partner == partner, col(Reconciliation.period).in_(periods))
        .order_by(col(Reconciliation.period), col(Reconciliation.sequence))
    ):
        latest[row.period] = row
    unresolved = dict(
        (
            await session.exec(
                select(ReconciliationBreak.reconciliation_id, func.count())
                .join(BreakResolution, col(BreakResolution.break_id) == col(ReconciliationBreak.id), isouter=True)
                .where(
                    col(ReconciliationBreak.reconciliation_id).in_([row.id for row in latest.values()]),
                    col(BreakResolution.break_id).is_(None),
                )
                .group_by(col(ReconciliationBreak.reconciliation_id))
            )
        ).all()
    )
    return [
        PartnerPeriod(
            position,
            latest.get(position.period),
            int(unresolved.get(latest[position.period].id, 0)) if position.period in latest else 0,
        )
        for position in positions
    ]
