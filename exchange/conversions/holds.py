"""Staff review of held conversions: approve (the saga goes on from its first debit) or reject
(it ends FAILED with nothing moved); and the end of a hold nobody reviewed in time.

Each is one guarded update from HELD, so of two reviews of one conversion exactly one moves it,
and the decision is recorded in the same unit of work. Reviewing again with the same verdict
returns the conversion as it stands (idempotent); the other verdict after one was given is
refused (``NOT_HELD``). A rejection gives back the limits the conversion reserved; a consent it
used stays used, as after any failure.

A hold that waits past its ``next_attempt_at`` (set when it was held: the source program's
``hold_expires_after_seconds``) is rejected by the exchange itself, ``HOLD_EXPIRED``, with no
staff named: the member's limits are not kept reserved for a review that never came. Staff
who approve it afterwards are told ``NOT_HELD``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import Clock
from exchange.conversions.errors import ConversionNotFound
from exchange.conversions.models import Conversion, ConversionStatus, SagaStep
from exchange.conversions.saga import ConversionSaga
from exchange.db.database import Database
from exchange.errors import BadUserInput, ErrorCode, ExchangeError
from exchange.pricing import limits
from exchange.risk.decisions import decision
from exchange.risk.models import Decision, RiskDecision, Subject
from exchange.sagas.engine import Transition
from exchange.webhooks.events import conversion_finished
from exchange.webhooks.outbox import emit

#: The longest reason staff may give for a rejection.
REASON_MAX_LENGTH = 500
#: The failure code of a conversion staff rejected.
REJECTED = "RISK_REJECTED"
#: The failure code, and the decision's rule, of a hold that ended unreviewed.
EXPIRED = "HOLD_EXPIRED"
#: Why a hold that ended unreviewed failed, as its decision and its failure say.
UNREVIEWED = "held for staff review, and not reviewed before the hold ended: nothing moved"
#: The rule a staff member's decision names.
STAFF_REVIEW = "STAFF_REVIEW"


class NotHeld(ExchangeError):
    code = ErrorCode.NOT_HELD

    def __init__(self, conversion_id: str, status: str, verdict: Decision) -> None:
        super().__init__(
            f"conversion {conversion_id} is {status}, not held: it cannot be {_DONE[verdict]} now",
            field="id",
            status=status,
        )


_DONE = {Decision.APPROVE: "approved", Decision.REJECT: "rejected"}


@dataclass
class HoldReview:
    db: Database
    saga: ConversionSaga
    clock: Clock

    async def held(self, *, first: int) -> Sequence[Conversion]:
        """Conversions waiting for review, oldest first."""
        if not 1 <= first <= 500:
            raise BadUserInput("first must be between 1 and 500", field="first")
        async with self.db.transaction() as session:
            rows = await session.exec(
                select(Conversion)
                .where(Conversion.status == ConversionStatus.HELD.value)
                .order_by(col(Conversion.created_at), col(Conversion.id))
                .limit(first)
            )
            return rows.all()

    async def approve(self, conversion_id: str, *, staff: str) -> Conversion:
        """Let a held conversion go on; it runs now, as far as it goes (as ``executeConversion``)."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            conversion = await self._review(
                session,
                conversion_id,
                Decision.APPROVE,
                {
                    "status": ConversionStatus.PENDING.value,
                    "lease_until": now + self.saga.policy.lease,
                    "next_attempt_at": now + self.saga.policy.lease,
                    "updated_at": now,
                },
                staff=staff,
                reason="approved by staff",
                now=now,
            )
        if conversion is None:
            return await self._as_reviewed(conversion_id, Decision.APPROVE)
        return await self.saga.drive(conversion, recovering=False)

    async def reject(self, conversion_id: str, *, staff: str, reason: str) -> Conversion:
        """End a held conversion FAILED with nothing moved, for ``reason``."""
        reason = reason.strip()
        if not reason or len(reason) > REASON_MAX_LENGTH:
            raise BadUserInput(f"reason must be 1 to {REASON_MAX_LENGTH} characters", field="reason")
        async with self.db.transaction() as session:
            conversion = await self._end(session, conversion_id, REJECTED, STAFF_REVIEW, staff, reason)
        return conversion or await self._as_reviewed(conversion_id, Decision.REJECT)

    async def expire_due(self, *, batch: int = 100) -> int:
        """End every hold whose review time has passed (``HOLD_EXPIRED``); how many ended.

        Due rows are claimed ``FOR UPDATE SKIP LOCKED``, so several gateway processes share
        the work, and a review that reached a row first wins it (the guarded update then
        finds it no longer HELD)."""
        ended = 0
        while True:
            now = self.clock.now()
            async with self.db.transaction() as session:
                due = (
                    await session.exec(
                        select(Conversion.id)
                        .where(Conversion.status == ConversionStatus.HELD.value, col(Conversion.next_attempt_at) <= now)
                        .order_by(col(Conversion.next_attempt_at))
                        .limit(batch)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
                for conversion_id in due:
                    await self._end(session, conversion_id, EXPIRED, EXPIRED, None, UNREVIEWED)
            ended += len(due)
            if len(due) < batch:
                return ended

    async def _end(
        self, session: AsyncSession, conversion_id: str, code: str, rule: str, staff: str | None, reason: str
    ) -> Conversion | None:
        """End a held conversion FAILED (``code``) with nothing moved, its limits given back and
        subscribers told; ``None`` if it was not held (any more)."""
        now = self.clock.now()
        conversion = await self._review(
            session,
            conversion_id,
            Decision.REJECT,
            {
                "status": ConversionStatus.FAILED.value,
                "step": SagaStep.DONE.value,
                "failure_code": code,
                "failure_message": (f"rejected by staff: {reason}" if staff else reason)[:500],
                "lease_until": None,
                "updated_at": now,
                "finished_at": now,
            },
            rule=rule,
            staff=staff,
            reason=reason,
            now=now,
        )
        if conversion is not None:
            await limits.release(session, [limits.Usage(**usage) for usage in conversion.usages])
            ended = Transition(SagaStep.DONE.value, ConversionStatus.FAILED.value, code, reason)
            await emit(session, conversion_finished(conversion, ended, now))  # as the saga's own ends do
        return conversion

    async def _review(
        self,
        session: AsyncSession,
        conversion_id: str,
        verdict: Decision,
        values: dict[str, object],
        *,
        rule: str = STAFF_REVIEW,
        staff: str | None,
        reason: str,
        now: datetime,
    ) -> Conversion | None:
        """Move the conversion from HELD with ``values`` and record ``verdict``; ``None`` if it
        was not held (any more)."""
        moved = await session.exec(
            update(Conversion)
            .where(col(Conversion.id) == conversion_id, col(Conversion.status) == ConversionStatus.HELD.value)
            .values(**values)
        )
        if moved.rowcount != 1:
            return None
        conversion = await session.get(Conversion, conversion_id, populate_existing=True)
        assert conversion is not None
        session.add(
            decision(
                Subject.CONVERSION,
                verdict,
                reason=reason,
                rule=rule,
                member_id=conversion.member_id,
                program_id=conversion.from_program,
                member_ref=conversion.source_ref,
                conversion_id=conversion.id,
                points=conversion.points_in,
                decided_by=staff,
                now=now,
            )
        )
        return conversion

    async def _as_reviewed(self, conversion_id: str, verdict: Decision) -> Conversion:
        """A conversion that was not held: as it stands if it was given ``verdict`` already (a
        repeat), else ``NotHeld``."""
        async with self.db.transaction() as session:
            conversion = await session.get(Conversion, conversion_id)
            if conversion is None:
                raise ConversionNotFound(conversion_id)
            reviewed = (
                await session.exec(
                    select(RiskDecision.decision)
                    .where(
                        RiskDecision.conversion_id == conversion_id,
                        col(RiskDecision.decision).in_([Decision.APPROVE.value, Decision.REJECT.value]),
                    )
                    .limit(1)
                )
            ).first()
        if reviewed != verdict.value:
            raise NotHeld(conversion_id, conversion.status, verdict)
        return conversion
