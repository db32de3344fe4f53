"""Expiring coalition points: lots whose instant has come lose what is left of them, and the
ledger records the breakage.

A batch locks due lots (in the order debits lock them: soonest to expire, then id), empties
them, records each expiry and posts one ledger transaction, all in the caller's unit of work.
A lot emptied is never due again, so a second run (or one in another process) finds nothing
to do; a lot refilled later by a debit's reversal is due again and expires in a later batch.

The transaction: the point's ``member-points`` account gives the points to ``points-expired``;
the value of those points (per leg, ``point_value × points`` rounded half-even) leaves the
point's clearing account, the float that backed them, for whoever keeps breakage: the
operator (``coalition-breakage``) or each lot's funding program (``partner-clearing``; lots
funded by nobody go to the operator).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.coalition.models import CoalitionExpiry, CoalitionLot
from exchange.coalition.rules import PointRules
from exchange.ledger.accounts import AccountRef, ChartOfAccounts
from exchange.ledger.posting import Ledger, Leg, TransactionRequest
from exchange.programs.declarations import BreakageKeeper

KIND = "coalition-expiry"


@dataclass(frozen=True, slots=True)
class ExpiredBatch:
    lots: int
    points: int
    transaction_id: str | None


def breakage_legs(rules: PointRules, chart: ChartOfAccounts, by_funder: dict[str | None, int]) -> list[Leg]:
    """The money legs of expiring ``by_funder`` points (points by funding program)."""
    keeps: dict[AccountRef, int] = defaultdict(int)
    for funder, points in sorted(by_funder.items(), key=lambda item: item[0] or ""):
        if rules.breakage == BreakageKeeper.FUNDING_PARTNERS and funder is not None:
            keeps[chart.clearing(funder)] += points
        else:
            keeps[chart.breakage()] += points
    values = {account: rules.value_minor(points) for account, points in keeps.items()}
    legs = [Leg(account, value) for account, value in values.items()]
    return [Leg(chart.clearing(rules.program_id), -sum(values.values())), *legs]


async def expire_batch(
    session: AsyncSession, rules: PointRules, ledger: Ledger, *, now: datetime, limit: int
) -> ExpiredBatch:
    """Expire up to ``limit`` lots due at ``now`` and post their breakage."""
    lots = list(
        await session.exec(
            select(CoalitionLot)
            .where(col(CoalitionLot.expires_at) <= now, col(CoalitionLot.remaining) > 0)
            .order_by(col(CoalitionLot.expires_at), col(CoalitionLot.id))
            .limit(limit)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )
    if not lots:
        return ExpiredBatch(0, 0, None)
    by_funder: dict[str | None, int] = defaultdict(int)
    for lot in lots:
        by_funder[lot.funded_by] += lot.remaining
    points = sum(by_funder.values())
    # The same lots with the same remains give the same id: a replay cannot post twice.
    fingerprint = ",".join(f"{lot.id}:{lot.remaining}:{lot.expired}" for lot in lots)
    transaction_id = f"{KIND}:{hashlib.sha256(fingerprint.encode()).hexdigest()[:40]}"
    chart = ChartOfAccounts(rules.currency.code)
    legs = [
        Leg(chart.member_points(rules.program_id), -points),
        Leg(chart.expired(rules.program_id), points),
        *breakage_legs(rules, chart, by_funder),
    ]
    await ledger.post(
        session,
        TransactionRequest.of_formula(
            id=transaction_id, kind=KIND, reference=f"{KIND}:{lots[0].id}", effective_at=now, legs=legs
        ),
    )
    for lot in lots:
        assert lot.id is not None
        session.add(
            CoalitionExpiry(lot_id=lot.id, points=lot.remaining, ledger_transaction_id=transaction_id, expired_at=now)
        )
        lot.expired += lot.remaining
        lot.remaining = 0
        session.add(lot)
    await session.flush()
    return ExpiredBatch(len(lots), points, transaction_id)
