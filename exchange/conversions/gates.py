"""The risk gates a conversion passes before its first debit, as its source program declares
them (``[risk]``): the refusal gates every outflow of an account passes
(:mod:`exchange.risk.gates`: cooling period, names, velocity), then a hold above an amount.

:func:`screen` runs in the unit of work that records the conversion, after its row is inserted
and before anything is sent to a partner. A refusal rolls that unit of work back: no conversion,
nothing reserved, no consent used, no partner called. A program without ``[risk]`` costs
nothing here: no query.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.conversions.models import Conversion, ConversionStatus
from exchange.programs.models import Program
from exchange.risk.gates import HOLD_ABOVE, Outflow, refuse_if_barred
from exchange.risk.models import Decision, Subject
from exchange.risk.policy import RiskPolicy


async def screen(session: AsyncSession, conversion: Conversion, source: Program, now: datetime) -> None:
    """Refuse, hold or allow ``conversion`` (just inserted, PENDING) under ``source``'s gates.

    A hold moves the conversion to HELD (``conversion`` too): the saga then waits for staff, until
    its ``next_attempt_at``, when it ends unreviewed (:mod:`exchange.conversions.holds`).
    Allows and holds are recorded here, in the caller's unit of work."""
    policy = RiskPolicy.of(source.risk)
    if policy is None:
        return
    outflow = Outflow(
        subject=Subject.CONVERSION,
        id=conversion.id,
        member_id=conversion.member_id,
        program_id=conversion.from_program,
        member_ref=conversion.source_ref,
        points=conversion.points_in,
        to_program=conversion.to_program,
        field="quoteId",
    )
    await refuse_if_barred(session, outflow, policy, now)
    if policy.holds(conversion.points_in):
        held = {
            "status": ConversionStatus.HELD.value,
            "lease_until": None,
            "next_attempt_at": now + policy.hold_expires_after,  # when it ends unreviewed
        }
        await session.exec(update(Conversion).where(col(Conversion.id) == conversion.id).values(held))
        for name, value in held.items():
            setattr(conversion, name, value)
        reason = f"above {policy.hold_above_points:,} points: waits for staff review"
        session.add(outflow.verdict(Decision.HOLD, reason, now, HOLD_ABOVE))
        return
    session.add(outflow.verdict(Decision.ALLOW, "every gate passed", now))
