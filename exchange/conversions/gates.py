"""The risk gates a conversion passes before its first debit, as its source program declares
them (``[risk]``): the cooling period after linking, the names on the two accounts, velocity
per member and per account, and a hold above an amount.

:func:`screen` runs in the unit of work that records the conversion, after its row is inserted
and before anything is sent to a partner. Velocity is counted in the database, in that unit
of work, after locking the member's row (``FOR UPDATE`` on PostgreSQL; SQLite has one writer
at a time): two conversions of one member started at once are counted one after the other,
each seeing the other if it committed first, so together they never pass a limit that each
alone would not. A refusal raises :class:`~exchange.risk.decisions.GateRefusal`, which rolls the
unit of work back: no conversion, nothing reserved, no consent used, no partner called.

Conversions that moved nothing in the end (FAILED, REVERSED, or a rejected hold) do not count
against velocity; held ones do. A program without ``[risk]`` costs nothing here: no query.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.conversions.models import Conversion, ConversionStatus
from exchange.errors import ErrorCode
from exchange.members.models import LinkedAccount, Member
from exchange.members.names import same_name
from exchange.programs.models import Program
from exchange.risk.decisions import GateRefusal, decision
from exchange.risk.models import Decision, RiskDecision, Subject
from exchange.risk.policy import Per, RiskPolicy, Velocity

#: The rule a hold names in the decision log.
HOLD_ABOVE = "HOLD_ABOVE"

#: Statuses of conversions that moved nothing in the end, left out of velocity.
_MOVED_NOTHING = (ConversionStatus.FAILED, ConversionStatus.REVERSED)


class CoolingPeriod(GateRefusal):
    code = ErrorCode.COOLING_PERIOD


class NamesDiffer(GateRefusal):
    code = ErrorCode.NAME_MISMATCH


class VelocityExceeded(GateRefusal):
    code = ErrorCode.VELOCITY_EXCEEDED


async def screen(session: AsyncSession, conversion: Conversion, source: Program, now: datetime) -> None:
    """Refuse, hold or allow ``conversion`` (just inserted, PENDING) under ``source``'s gates.

    A hold moves the conversion to HELD (``conversion`` too): the saga then waits for staff, until
    its ``next_attempt_at``, when it ends unreviewed (:mod:`exchange.conversions.holds`).
    Allows and holds are recorded here, in the caller's unit of work."""
    policy = RiskPolicy.of(source.risk)
    if policy is None:
        return
    links = {
        link.program_id: link
        for link in await session.exec(
            select(LinkedAccount).where(
                LinkedAccount.member_id == conversion.member_id,
                col(LinkedAccount.program_id).in_([conversion.from_program, conversion.to_program]),
            )
        )
    }

    def verdict(kind: Decision, reason: str, rule: str | None = None) -> RiskDecision:
        return decision(
            Subject.CONVERSION,
            kind,
            reason=reason,
            rule=rule,
            member_id=conversion.member_id,
            program_id=conversion.from_program,
            member_ref=conversion.source_ref,
            conversion_id=conversion.id,
            points=conversion.points_in,
            now=now,
        )

    source_link = links[conversion.from_program]
    open_at = source_link.linked_at + policy.cooling_period
    if now < open_at:
        reason = f"points of an account linked at {conversion.from_program} move only from {open_at.isoformat()}"
        raise CoolingPeriod(
            reason,
            decision=verdict(Decision.REFUSE, reason, ErrorCode.COOLING_PERIOD.value),
            field="quoteId",
            availableAt=open_at.isoformat(),
        )
    source_name, target_name = source_link.holder_name, links[conversion.to_program].holder_name
    if policy.refuse_name_mismatch and source_name and target_name and not same_name(source_name, target_name):
        reason = f"{conversion.from_program} and {conversion.to_program} have different names for the member"
        raise NamesDiffer(
            reason, decision=verdict(Decision.REFUSE, reason, ErrorCode.NAME_MISMATCH.value), field="quoteId"
        )
    if policy.velocity:
        await session.exec(select(Member.id).where(Member.id == conversion.member_id).with_for_update())
        for rule in policy.velocity:
            if (broken := await _velocity_breach(session, conversion, rule, now)) is not None:
                reason = f"{conversion.from_program} allows {rule.describe()}; {broken}"
                raise VelocityExceeded(
                    reason,
                    decision=verdict(Decision.REFUSE, reason, f"VELOCITY_{rule.per.name}"),
                    field="quoteId",
                    per=rule.per.value,
                    windowSeconds=int(rule.window.total_seconds()),
                )
    if policy.hold_above_points is not None and conversion.points_in > policy.hold_above_points:
        held = {
            "status": ConversionStatus.HELD.value,
            "lease_until": None,
            "next_attempt_at": now + policy.hold_expires_after,  # when it ends unreviewed
        }
        await session.exec(update(Conversion).where(col(Conversion.id) == conversion.id).values(held))
        for name, value in held.items():
            setattr(conversion, name, value)
        reason = f"above {policy.hold_above_points:,} points: waits for staff review"
        session.add(verdict(Decision.HOLD, reason, HOLD_ABOVE))
        return
    session.add(verdict(Decision.ALLOW, "every gate passed"))


async def _velocity_breach(session: AsyncSession, conversion: Conversion, rule: Velocity, now: datetime) -> str | None:
    """What ``conversion`` (counted with the others) breaks of ``rule``, or ``None``."""
    scope = (
        [col(Conversion.member_id) == conversion.member_id]
        if rule.per is Per.MEMBER
        else [
            col(Conversion.from_program) == conversion.from_program,
            col(Conversion.source_ref) == conversion.source_ref,
        ]
    )
    count, points = (
        await session.exec(
            select(func.count(), func.coalesce(func.sum(Conversion.points_in), 0)).where(
                *scope,
                col(Conversion.created_at) > now - rule.window,
                col(Conversion.status).not_in([status.value for status in _MOVED_NOTHING]),
            )
        )
    ).one()
    if rule.max_count is not None and count > rule.max_count:
        return f"this would be conversion {count}"
    if rule.max_points is not None and points > rule.max_points:
        return f"this would make {points:,} points"
    return None
