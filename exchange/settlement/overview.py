"""A partner's settlement at a glance: each closed period it took part in, its position, whether
its statement was signed again, and where the reconciliation of its records stands (for the
partner console's statements page)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.settlement.models import (
    IssuedStatement,
    Reconciliation,
    SettlementPosition,
)


@dataclass(frozen=True, slots=True)
class PartnerPeriod:
    position: SettlementPosition
    reconciliation: Reconciliation | None
    """The latest import of the partner's records for the period (``None``: none yet)."""
    unresolved: int
    """Breaks of that import no one has resolved yet."""
    resigned: tuple[datetime, str] | None = None
    """When its issued statement was signed again, and the ``kid`` of the key that did, after
    the key that first signed it was withdrawn as compromised (``None``: signed once, or not
    issued yet)."""


async def partner_periods(session: AsyncSession, partner: str, *, first: int) -> Sequence[PartnerPeriod]:
    """The partner's ``first`` latest closed periods, newest first, in four queries."""
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
    resigned: dict[str, tuple[datetime, str]] = {
        period: (resigned_at, key_id)
        for period, resigned_at, key_id in await session.exec(
            select(IssuedStatement.period, IssuedStatement.resigned_at, IssuedStatement.key_id).where(
                IssuedStatement.participant == partner,
                col(IssuedStatement.period).in_(periods),
                col(IssuedStatement.resigned_at).is_not(None),
            )
        )
        if resigned_at is not None
    }
    return [
        PartnerPeriod(
            position,
            latest.get(position.period),
            latest[position.period].breaks - latest[position.period].resolved if position.period in latest else 0,
            resigned.get(position.period),
        )
        for position in positions
    ]
