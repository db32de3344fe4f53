"""Resolving a reconciliation's breaks: accept the ledger's figure, or post an adjustment.

An adjustment is a new, balanced ledger transaction between the partner and one counterparty
(another partner, or the exchange), posted now, so into the next open period; it never touches
the closed period. Its id is ``adjustment:break:<break id>`` (resolving the same break the same
way again posts nothing new) and its reference ``break:<break id>``, which is how it appears on
both parties' next statements. Unless staff name them, the adjustment's amount makes the ledger
agree with the partner's line (the partner's amount minus the ledger's), and its counterparty is
the one the partner's line names, else the only one the reference's transactions have.

A break is resolved once, by one person, for one reason, all recorded; repeating the same
resolution returns the first one, and any other is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.errors import BadUserInput
from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.models import LedgerAccount
from exchange.ledger.posting import Ledger, Leg, TransactionRequest
from exchange.money import Currency
from exchange.programs.models import Program
from exchange.settlement.errors import BadAdjustment, BreakNotFound, ResolutionConflict
from exchange.settlement.models import (
    BreakKind,
    BreakResolution,
    Reconciliation,
    ReconciliationBreak,
    Resolution,
)
from exchange.settlement.netting import SPOKES_OF_ACCOUNT
from exchange.settlement.participants import EXCHANGE, account_of, settled_accounts
from exchange.settlement.positions import open_position
from exchange.settlement.reconciliation import current_reconciliation

ADJUSTMENT_KIND = "adjustment"
MAX_REASON = 500

COUNTERPARTIES = text(
    f"""
    SELECT DISTINCT spokes.spoke_account, spokes.hub_account
      FROM ({SPOKES_OF_ACCOUNT}) spokes JOIN ledger_transaction t ON t.seq = spokes.transaction_seq
     WHERE t.reference = :reference
    """
)


@dataclass(frozen=True)
class ResolveRequest:
    break_id: int
    resolution: Resolution
    reason: str
    actor: str
    amount: Decimal | None = None
    """ADJUST only: added to the partner's position, in the settlement currency (default: what
    makes the ledger agree with the partner's line)."""
    counterparty: str | None = None
    """ADJUST only: who takes the other side (default: see the module's docstring)."""


def adjustment_id(break_id: int) -> str:
    return f"adjustment:break:{break_id}"


def default_amount(row: ReconciliationBreak) -> int | None:
    """What makes the ledger agree with the partner's line; a duplicate line has none."""
    if row.kind == BreakKind.DUPLICATE:
        return None
    return (row.partner_amount or 0) - (row.ledger_amount or 0)


async def _default_counterparty(
    session: AsyncSession, row: ReconciliationBreak, period: str, currency: Currency, account: int
) -> str | None:
    if row.counterparty is not None:
        return row.counterparty
    accounts = await settled_accounts(session, currency.code)
    found = {
        accounts[hub if spoke == account else spoke]
        for spoke, hub in await session.exec(  # type: ignore[call-overload]
            COUNTERPARTIES,
            params={"period": period, "unit": currency.code, "reference": row.reference, "account": account},
        )
    }
    return found.pop() if len(found) == 1 else None


async def _adjustment(
    session: AsyncSession,
    request: ResolveRequest,
    row: ReconciliationBreak,
    reconciliation: Reconciliation,
    currency: Currency,
) -> tuple[int, str]:
    """The adjustment's amount and counterparty: as asked, or by default; checked."""
    chart = ChartOfAccounts(currency.code)
    partner = reconciliation.partner
    try:
        amount = currency.to_minor(request.amount) if request.amount is not None else default_amount(row)
    except ValueError as exc:
        raise BadAdjustment(str(exc), field="adjustment.amount") from None
    if not amount:
        raise BadAdjustment(
            f"break {row.id} ({row.kind}) needs the adjustment's non-zero amount", field="adjustment.amount"
        )
    counterparty = request.counterparty
    if counterparty is None:
        account = (
            await session.exec(select(LedgerAccount.id).where(LedgerAccount.code == chart.clearing(partner).code))
        ).one()
        assert account is not None
        counterparty = await _default_counterparty(session, row, reconciliation.period, currency, account)
    if counterparty is None:
        raise BadAdjustment(
            f"name the adjustment's counterparty: break {row.id}'s reference {row.reference!r} does not say who it is",
            field="adjustment.counterparty",
        )
    if counterparty == partner:
        raise BadAdjustment("a partner cannot adjust against itself", field="adjustment.counterparty")
    if counterparty != EXCHANGE and await session.get(Program, counterparty) is None:
        raise BadAdjustment(f"no program has id {counterparty!r}", field="adjustment.counterparty")
    return amount, counterparty


async def resolve_break(
    session: AsyncSession, ledger: Ledger, currency: Currency, request: ResolveRequest, now: datetime
) -> tuple[ReconciliationBreak, BreakResolution, str]:
    """Resolve a break of a partner's current reconciliation (see the module's docstring);
    returns the break, its resolution and the partner."""
    row = await session.get(ReconciliationBreak, request.break_id)
    if row is None:
        raise BreakNotFound(request.break_id)
    reconciliation = await session.get(Reconciliation, row.reconciliation_id)
    assert reconciliation is not None
    await open_position(session, reconciliation.partner, reconciliation.period)
    current = await current_reconciliation(session, reconciliation.partner, reconciliation.period)
    if current is None or current.id != reconciliation.id:
        raise BadUserInput(f"break {row.id} belongs to a reconciliation a later import replaced", field="breakId")
    reason = request.reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise BadUserInput(f"give the reason, in 1 to {MAX_REASON} characters", field="reason")
    amount: int | None = None
    counterparty: str | None = None
    if request.resolution is Resolution.ADJUST:
        amount, counterparty = await _adjustment(session, request, row, reconciliation, currency)
    elif request.amount is not None or request.counterparty is not None:
        raise BadUserInput("accepting the ledger's figure posts nothing: give no adjustment", field="adjustment")

    asked = (request.resolution.value, reason, amount, counterparty)
    existing = await session.get(BreakResolution, request.break_id)
    if existing is not None:
        if (existing.resolution, existing.reason, existing.amount, existing.counterparty) != asked:
            raise ResolutionConflict(request.break_id)
        return row, existing, reconciliation.partner

    transaction_id = None
    if amount is not None and counterparty is not None:
        chart = ChartOfAccounts(currency.code)
        posted = await ledger.post(
            session,
            TransactionRequest(
                id=adjustment_id(request.break_id),
                kind=ADJUSTMENT_KIND,
                reference=f"break:{request.break_id}",
                effective_at=now,
                legs=(
                    Leg(account_of(chart, reconciliation.partner), amount),
                    Leg(account_of(chart, counterparty), -amount),
                ),
            ),
        )
        transaction_id = posted.id
    resolution = BreakResolution(
        break_id=request.break_id,
        resolution=request.resolution.value,
        reason=reason,
        resolved_by=request.actor,
        resolved_at=now,
        amount=amount,
        counterparty=counterparty,
        transaction_id=transaction_id,
    )
    session.add(resolution)
    await session.flush()
    return row, resolution, reconciliation.partner


async def list_breaks(
    session: AsyncSession,
    reconciliation_id: str,
    *,
    kind: BreakKind | None = None,
    unresolved_only: bool = False,
    first: int = 100,
    after: int | None = None,
) -> list[tuple[ReconciliationBreak, BreakResolution | None]]:
    """Breaks of a reconciliation by id, ``first`` of them after the id ``after``."""
    statement = (
        select(ReconciliationBreak, BreakResolution)
        .join(BreakResolution, col(BreakResolution.break_id) == col(ReconciliationBreak.id), isouter=True)
        .where(ReconciliationBreak.reconciliation_id == reconciliation_id)
        .order_by(col(ReconciliationBreak.id))
        .limit(first)
    )
    if kind is not None:
        statement = statement.where(ReconciliationBreak.kind == kind.value)
    if unresolved_only:
        statement = statement.where(col(BreakResolution.break_id).is_(None))
    if after is not None:
        statement = statement.where(col(ReconciliationBreak.id) > after)
    return list((await session.exec(statement)).all())
