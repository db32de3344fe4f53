"""The risk decision log: recording decisions and reading them back for staff.

A decision that lets something happen (allow, hold, approve, reject) is recorded in the unit
of work that does it. A refusal changes nothing, so its unit of work is rolled back; it is
recorded afterwards, on its own (:func:`record_refusal`), so that staff see what was refused
and why even though nothing else was written.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db.database import Database
from exchange.db.paging import Keyset, Page, read_page
from exchange.errors import BadUserInput, ExchangeError
from exchange.risk.models import Decision, RiskDecision, Subject

#: The most decisions one read returns.
MAX_PAGE = 500


class GateRefusal(ExchangeError):
    """A refusal by a gate or a membership check, with the decision to record about it."""

    def __init__(self, message: str, *, decision: RiskDecision, field: str | None = None, **details: object) -> None:
        super().__init__(message, field=field, **details)
        self.decision = decision


def decision(
    subject: Subject,
    verdict: Decision,
    *,
    reason: str,
    member_id: str,
    program_id: str,
    member_ref: str,
    now: datetime,
    rule: str | None = None,
    conversion_id: str | None = None,
    redemption_id: str | None = None,
    points: int | None = None,
    decided_by: str | None = None,
) -> RiskDecision:
    return RiskDecision(
        subject=subject.value,
        decision=verdict.value,
        rule=rule,
        reason=reason[:500],
        member_id=member_id,
        program_id=program_id,
        member_ref=member_ref,
        conversion_id=conversion_id,
        redemption_id=redemption_id,
        points=points,
        decided_by=decided_by,
        decided_at=now,
    )


async def record_refusal(db: Database, refused: RiskDecision) -> None:
    """Record a refusal after its request's unit of work was rolled back."""
    async with db.transaction() as session:
        session.add(refused)


#: Decisions, newest first: later decisions have larger ids.
DECISIONS = Keyset("riskDecisions", (col(RiskDecision.id),), descending=True)


async def decisions(
    session: AsyncSession,
    *,
    conversion_id: str | None = None,
    redemption_id: str | None = None,
    member_id: str | None = None,
    first: int = 50,
    after: str | None = None,
) -> Page[RiskDecision]:
    """A page of decisions, newest first, after the cursor ``after``: about one conversion, one
    redemption, one member, or all (a cursor is of the filters it was given out for)."""
    if not 1 <= first <= MAX_PAGE:
        raise BadUserInput(f"first must be between 1 and {MAX_PAGE}", field="first")
    statement = select(RiskDecision)
    if conversion_id is not None:
        statement = statement.where(RiskDecision.conversion_id == conversion_id)
    if redemption_id is not None:
        statement = statement.where(RiskDecision.redemption_id == redemption_id)
    if member_id is not None:
        statement = statement.where(RiskDecision.member_id == member_id)
    scope = [conversion_id, redemption_id, member_id]
    return await read_page(session, statement, DECISIONS, scope=scope, first=first, after=after)
