"""The refusal gates a program declares (``[risk]``) on every way points leave a member's account
there: a conversion out of it, and a redemption paid with its points. One code serves both: the
gates judge an :class:`Outflow`, the facts they need, whatever moves the points.

:func:`refuse_if_barred` runs in the unit of work that records the conversion or redemption,
after its row is inserted and before anything is sent to a partner: the cooling period after
linking, the names on the two accounts, and velocity per member and per account. Velocity is
counted in the database, in that unit of work, after locking the member's row (``FOR UPDATE``
on PostgreSQL; SQLite has one writer at a time): two outflows of one member started at once are
counted one after the other, each seeing the other if it committed first, so together they never
pass a limit that each alone would not. A window counts the member's conversions and redemptions
together: a limit of five a day cannot be doubled by alternating the two. Those that moved
nothing in the end (FAILED, REVERSED) do not count; held conversions do.

A refusal raises :class:`~exchange.risk.decisions.GateRefusal`, which rolls the unit of work
back: nothing recorded, nothing reserved, no consent used, no partner called. What passes is
for the caller to allow, hold or refuse above ``hold_above_points``
(:mod:`exchange.conversions.gates`, :mod:`exchange.rewards.redemption`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.conversions.models import Conversion, ConversionStatus
from exchange.errors import ErrorCode
from exchange.members.models import LinkedAccount, Member
from exchange.members.names import same_name
from exchange.rewards.models import Redemption, RedemptionStatus
from exchange.risk.decisions import GateRefusal, decision
from exchange.risk.models import Decision, RiskDecision, Subject
from exchange.risk.policy import Per, RiskPolicy, Velocity

#: The rule a hold (or a redemption refused for want of one) names in the decision log.
HOLD_ABOVE = "HOLD_ABOVE"


class CoolingPeriod(GateRefusal):
    code = ErrorCode.COOLING_PERIOD


class NamesDiffer(GateRefusal):
    code = ErrorCode.NAME_MISMATCH


class VelocityExceeded(GateRefusal):
    code = ErrorCode.VELOCITY_EXCEEDED


class ReviewRequired(GateRefusal):
    """More points than leave the account without staff review, by a way that cannot wait for one."""

    code = ErrorCode.REVIEW_REQUIRED


@dataclass(frozen=True, slots=True)
class Outflow:
    """Points about to leave a member's account at ``program_id``, as the gates judge them.

    ``id`` is the conversion's or redemption's (``subject``); ``to_program`` is the program
    whose account the points' value goes to, whose name for the member must match (``None``:
    no account to compare); ``field`` is the input a refusal names."""

    subject: Subject
    id: str
    member_id: str
    program_id: str
    member_ref: str
    points: int
    to_program: str | None
    field: str

    def verdict(self, kind: Decision, reason: str, now: datetime, rule: str | None = None) -> RiskDecision:
        """The decision ``kind`` about this outflow, to record."""
        return decision(
            self.subject,
            kind,
            reason=reason,
            rule=rule,
            member_id=self.member_id,
            program_id=self.program_id,
            member_ref=self.member_ref,
            conversion_id=self.id if self.subject is Subject.CONVERSION else None,
            redemption_id=self.id if self.subject is Subject.REDEMPTION else None,
            points=self.points,
            now=now,
        )


async def refuse_if_barred(session: AsyncSession, outflow: Outflow, policy: RiskPolicy, now: datetime) -> None:
    """Raise the first refusal of ``policy``'s cooling period, names and velocity gates."""
    programs = [outflow.program_id] if outflow.to_program is None else [outflow.program_id, outflow.to_program]
    links = {
        link.program_id: link
        for link in await session.exec(
            select(LinkedAccount).where(
                LinkedAccount.member_id == outflow.member_id, col(LinkedAccount.program_id).in_(programs)
            )
        )
    }
    source_link = links[outflow.program_id]
    open_at = source_link.linked_at + policy.cooling_period
    if now < open_at:
        reason = f"points of an account linked at {outflow.program_id} move only from {open_at.isoformat()}"
        raise CoolingPeriod(
            reason,
            decision=outflow.verdict(Decision.REFUSE, reason, now, ErrorCode.COOLING_PERIOD.value),
            field=outflow.field,
            availableAt=open_at.isoformat(),
        )
    target_link = links.get(outflow.to_program) if outflow.to_program is not None else None
    source_name, target_name = source_link.holder_name, target_link.holder_name if target_link else None
    if policy.refuse_name_mismatch and source_name and target_name and not same_name(source_name, target_name):
        reason = f"{outflow.program_id} and {outflow.to_program} have different names for the member"
        raise NamesDiffer(
            reason,
            decision=outflow.verdict(Decision.REFUSE, reason, now, ErrorCode.NAME_MISMATCH.value),
            field=outflow.field,
        )
    if policy.velocity:
        await session.exec(select(Member.id).where(Member.id == outflow.member_id).with_for_update())
        for rule in policy.velocity:
            if (broken := await _velocity_breach(session, outflow, rule, now)) is not None:
                reason = f"{outflow.program_id} allows {rule.describe()}; {broken}"
                raise VelocityExceeded(
                    reason,
                    decision=outflow.verdict(Decision.REFUSE, reason, now, f"VELOCITY_{rule.per.name}"),
                    field=outflow.field,
                    per=rule.per.value,
                    windowSeconds=int(rule.window.total_seconds()),
                )


async def _velocity_breach(session: AsyncSession, outflow: Outflow, rule: Velocity, now: datetime) -> str | None:
    """What ``outflow`` (counted with the member's other conversions and redemptions, itself
    included) breaks of ``rule``, or ``None``."""
    count, points = 0, 0
    for model, program, ref, amount, moved_nothing in _OUTFLOWS:
        scope = (
            [model.member_id == outflow.member_id]
            if rule.per is Per.MEMBER
            else [program == outflow.program_id, ref == outflow.member_ref]
        )
        counted, summed = (
            await session.exec(
                select(func.count(), func.coalesce(func.sum(amount), 0)).where(
                    *scope,
                    col(model.created_at) > now - rule.window,
                    col(model.status).not_in(moved_nothing),
                )
            )
        ).one()
        count, points = count + counted, points + summed
    if rule.max_count is not None and count > rule.max_count:
        return f"this would make {count}"
    if rule.max_points is not None and points > rule.max_points:
        return f"this would make {points:,} points"
    return None


#: How each way out of an account is counted: its table, the paying program and the member's
#: id there, the points, and the statuses of those that moved nothing in the end.
_OUTFLOWS = (
    (
        Conversion,
        col(Conversion.from_program),
        col(Conversion.source_ref),
        col(Conversion.points_in),
        [ConversionStatus.FAILED.value, ConversionStatus.REVERSED.value],
    ),
    (
        Redemption,
        col(Redemption.paying_program),
        col(Redemption.paying_ref),
        col(Redemption.points),
        [RedemptionStatus.FAILED.value, RedemptionStatus.REVERSED.value],
    ),
)
