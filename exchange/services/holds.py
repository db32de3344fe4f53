"""Staff review of what the risk gates held, conversions and redemptions alike: approve (the saga
goes on from its first debit) or reject (it ends FAILED with nothing moved); and the end of a
hold nobody reviewed in time.

Each is one guarded update from HELD, so of two reviews of one row exactly one moves it, and the
decision is recorded in the same unit of work. Reviewing again with the same verdict returns the
row as it stands (idempotent); the other verdict after one was given is refused (``NOT_HELD``).
A rejection gives back what the row reserved (a conversion's limits; a redemption's stock and
the member's count) and tells subscribers (``conversion.failed``, ``redemption.failed``); a
consent it used stays used, as after any failure. A redemption's member or publisher may also
cancel it while it is held (:meth:`exchange.rewards.redemption.RedemptionSaga.cancel`): it
locks the row, so a review meeting it finds it no longer HELD and is refused ``NOT_HELD``.

A hold that waits past its ``next_attempt_at`` (set when it was held: the paying program's
``hold_expires_after_seconds``) is rejected by the exchange itself, ``HOLD_EXPIRED``, with no
staff named: nothing is kept reserved for a review that never came. Staff who approve it
afterwards are told ``NOT_HELD``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from sqlalchemy import case, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import Clock
from exchange.conversions import gates as conversion_gates
from exchange.conversions.errors import ConversionNotFound
from exchange.conversions.models import Conversion
from exchange.conversions.saga import ConversionSaga
from exchange.db.database import Database
from exchange.db.paging import Keyset, Page, read_page
from exchange.errors import BadUserInput, ErrorCode, ExchangeError, NotFound
from exchange.pricing import limits
from exchange.rewards import redemption as redemptions
from exchange.rewards.models import Redemption, RewardKind
from exchange.rewards.redemption import RedemptionSaga
from exchange.risk import reasons
from exchange.risk.gates import HELD, Outflow
from exchange.risk.models import Decision, RiskDecision, Subject
from exchange.sagas.engine import Saga, Transition
from exchange.sagas.state import DONE
from exchange.webhooks.events import conversion_finished
from exchange.webhooks.outbox import emit

#: The longest reason staff may give for a rejection.
REASON_MAX_LENGTH = 500
#: The failure code of a conversion or redemption staff rejected.
REJECTED = "RISK_REJECTED"
#: The failure code, and the decision's rule, of a hold that ended unreviewed.
EXPIRED = "HOLD_EXPIRED"
#: Why a hold that ended unreviewed failed, as its decision and its failure say.
UNREVIEWED = reasons.UNREVIEWED.text()
#: The rule a staff member's decision names.
STAFF_REVIEW = "STAFF_REVIEW"

Row = TypeVar("Row", Conversion, Redemption)


class NotHeld(ExchangeError):
    code = ErrorCode.NOT_HELD

    def __init__(self, label: str, row_id: str, status: str, verdict: Decision) -> None:
        super().__init__(
            f"{label} {row_id} is {status}, not held: it cannot be {_DONE[verdict]} now",
            field="id",
            status=status,
        )


_DONE = {Decision.APPROVE: "approved", Decision.REJECT: "rejected"}


@dataclass(frozen=True)
class Holds(Generic[Row]):
    """What reviewing one kind of held row needs: its saga, what it takes from the member's
    account (for the decisions), what approving it sets beyond the saga's restart, and what
    ending it gives back and tells subscribers."""

    model: type[Row]
    saga: Saga[Row]
    outflow: Callable[[Row], Outflow]
    approved: Callable[[datetime], dict[str, object]]
    ended: Callable[[AsyncSession, Row, Transition, datetime], Awaitable[None]]
    missing: Callable[[str], ExchangeError]
    #: How staff review a row of this kind, for a refusal given its id as the other kind's.
    reviewed_with: str
    #: Its held rows' order, oldest first (``heldConversions``, ``heldRedemptions``).
    queue: Keyset


async def _conversion_ended(session: AsyncSession, conversion: Conversion, ended: Transition, now: datetime) -> None:
    await limits.release(session, [limits.Usage(**usage) for usage in conversion.usages])
    await emit(session, conversion_finished(conversion, ended, now))  # as the saga's own ends do


async def _redemption_ended(session: AsyncSession, redemption: Redemption, ended: Transition, now: datetime) -> None:
    await redemptions.ended_unpaid(session, redemption, now)  # as a member's cancel of a hold does


@dataclass(frozen=True, slots=True)
class HoldExpiry:
    """What a pass over the holds did (``exchange recover``): ``expired`` ended unreviewed, their
    review time past; ``held`` still wait for staff, conversions and redemptions together."""

    expired: int
    held: int


@dataclass
class HoldReview:
    db: Database
    conversions: Holds[Conversion]
    redemptions: Holds[Redemption]
    clock: Clock

    @classmethod
    def of(
        cls, db: Database, conversion_saga: ConversionSaga, redemption_saga: RedemptionSaga, clock: Clock
    ) -> HoldReview:
        """The review of both sagas' holds."""

        def delivery_restarts(now: datetime) -> dict[str, object]:
            # A direct reward's delivery window starts when it is paid, not when it was held (a
            # lottery entry has none).
            direct = col(Redemption.kind) == RewardKind.DIRECT.value
            return {"deliver_by": case((direct, now + redemption_saga.delivery_window), else_=None)}

        return cls(
            db=db,
            conversions=Holds(
                model=Conversion,
                saga=conversion_saga,
                outflow=conversion_gates.outflow,
                approved=lambda now: {},
                ended=_conversion_ended,
                missing=ConversionNotFound,
                reviewed_with="without --redemption on the command line; approveConversion or rejectConversion",
                queue=Keyset("heldConversions", (col(Conversion.created_at), col(Conversion.id)), descending=False),
            ),
            redemptions=Holds(
                model=Redemption,
                saga=redemption_saga,
                outflow=redemptions.outflow,
                approved=delivery_restarts,
                ended=_redemption_ended,
                missing=lambda row_id: NotFound(f"no redemption has id {row_id!r}", field="id"),
                reviewed_with="with --redemption on the command line; approveRedemption or rejectRedemption",
                queue=Keyset("heldRedemptions", (col(Redemption.created_at), col(Redemption.id)), descending=False),
            ),
            clock=clock,
        )

    async def held(self, kind: Holds[Row], *, first: int, after: str | None = None) -> Page[Row]:
        """A page of the rows of ``kind`` waiting for review, oldest first, after the cursor
        ``after``."""
        if not 1 <= first <= 500:
            raise BadUserInput("first must be between 1 and 500", field="first")
        model = kind.model
        async with self.db.transaction() as session:
            statement = select(model).where(col(model.status) == HELD)
            return await read_page(session, statement, kind.queue, scope=None, first=first, after=after)

    async def approve(self, kind: Holds[Row], row_id: str, *, staff: str) -> Row:
        """Let a held row go on; it runs now, as far as it goes (as when it was asked for)."""
        now = self.clock.now()
        lease = kind.saga.policy.lease
        async with self.db.transaction() as session:
            row = await self._review(
                session,
                kind,
                row_id,
                Decision.APPROVE,
                {
                    "status": "PENDING",
                    "lease_until": now + lease,
                    "next_attempt_at": now + lease,
                    "updated_at": now,
                    **kind.approved(now),
                },
                staff=staff,
                reason=reasons.APPROVED.text(),
                now=now,
            )
        if row is None:
            return await self._as_reviewed(kind, row_id, Decision.APPROVE)
        return await kind.saga.drive(row)

    async def reject(self, kind: Holds[Row], row_id: str, *, staff: str, reason: str) -> Row:
        """End a held row FAILED with nothing moved, for ``reason``."""
        reason = reason.strip()
        if not reason or len(reason) > REASON_MAX_LENGTH:
            raise BadUserInput(f"reason must be 1 to {REASON_MAX_LENGTH} characters", field="reason")
        async with self.db.transaction() as session:
            row = await self._end(session, kind, row_id, REJECTED, STAFF_REVIEW, staff, reason)
        return row or await self._as_reviewed(kind, row_id, Decision.REJECT)

    async def expire_due(self, *, batch: int = 100) -> int:
        """End every hold, of conversions and redemptions, whose review time has passed
        (``HOLD_EXPIRED``); how many ended.

        Due rows are claimed ``FOR UPDATE SKIP LOCKED``, so several gateway processes share
        the work, and a review that reached a row first wins it (the guarded update then
        finds it no longer HELD)."""
        return await self._expire(self.conversions, batch) + await self._expire(self.redemptions, batch)

    async def expire_overdue(self) -> HoldExpiry:
        """:meth:`expire_due` now, as the gateway's ``hold-expiry`` job runs it, and how many holds
        are left for staff to review."""
        expired = await self.expire_due()
        async with self.db.transaction() as session:
            held = 0
            for kind in (self.conversions, self.redemptions):
                model = kind.model
                held += (await session.exec(select(func.count()).where(col(model.status) == HELD))).one()
        return HoldExpiry(expired, held)

    async def _expire(self, kind: Holds[Row], batch: int) -> int:
        model = kind.model
        ended = 0
        while True:
            now = self.clock.now()
            async with self.db.transaction() as session:
                due = (
                    await session.exec(
                        select(model.id)
                        .where(col(model.status) == HELD, col(model.next_attempt_at) <= now)
                        .order_by(col(model.next_attempt_at))
                        .limit(batch)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
                for row_id in due:
                    await self._end(session, kind, row_id, EXPIRED, EXPIRED, None, UNREVIEWED)
            ended += len(due)
            if len(due) < batch:
                return ended

    async def _end(
        self,
        session: AsyncSession,
        kind: Holds[Row],
        row_id: str,
        code: str,
        rule: str,
        staff: str | None,
        reason: str,
    ) -> Row | None:
        """End a held row FAILED (``code``) with nothing moved, what it reserved given back and
        subscribers told; ``None`` if it was not held (any more)."""
        now = self.clock.now()
        row = await self._review(
            session,
            kind,
            row_id,
            Decision.REJECT,
            {
                "status": "FAILED",
                "step": DONE,
                "failure_code": code,
                "failure_message": (reasons.REJECTED.text(reason=reason) if staff else reason)[:500],
                "lease_until": None,
                "updated_at": now,
                "finished_at": now,
            },
            rule=rule,
            staff=staff,
            reason=reason,
            now=now,
        )
        if row is not None:
            await kind.ended(session, row, Transition(DONE, "FAILED", code, reason), now)
        return row

    async def _review(
        self,
        session: AsyncSession,
        kind: Holds[Row],
        row_id: str,
        verdict: Decision,
        values: dict[str, object],
        *,
        rule: str = STAFF_REVIEW,
        staff: str | None,
        reason: str,
        now: datetime,
    ) -> Row | None:
        """Move the row from HELD with ``values`` and record ``verdict``; ``None`` if it was not
        held (any more)."""
        model = kind.model
        moved = await session.exec(
            update(model).where(col(model.id) == row_id, col(model.status) == HELD).values(**values)
        )
        if moved.rowcount != 1:
            return None
        row = await session.get(model, row_id, populate_existing=True)
        assert row is not None
        session.add(kind.outflow(row).verdict(verdict, reason, now, rule, decided_by=staff))
        return row

    async def _missing(self, session: AsyncSession, kind: Holds[Row], row_id: str) -> ExchangeError:
        """``kind``'s refusal of an id it has no row for, saying so when the id is the other
        kind's: `exchange risk approve ID` of a held redemption, without --redemption, said only
        "no conversion has id …"."""
        other: Holds[Conversion] | Holds[Redemption] = (
            self.redemptions if kind is self.conversions else self.conversions
        )
        missing = kind.missing(row_id)
        if await session.get(other.model, row_id) is None:
            return missing
        return NotFound(
            f"{missing.message}: it is a {other.saga.label}'s; review it as one ({other.reviewed_with} in GraphQL)",
            field="id",
        )

    async def _as_reviewed(self, kind: Holds[Row], row_id: str, verdict: Decision) -> Row:
        """A row that was not held: as it stands if it was given ``verdict`` already (a
        repeat), else ``NotHeld``."""
        async with self.db.transaction() as session:
            row = await session.get(kind.model, row_id)
            if row is None:
                raise await self._missing(session, kind, row_id)
            outflow = kind.outflow(row)
            about = (
                RiskDecision.conversion_id if outflow.way.subject is Subject.CONVERSION else RiskDecision.redemption_id
            )
            reviewed = (
                await session.exec(
                    select(RiskDecision.decision)
                    .where(
                        about == row_id,
                        col(RiskDecision.decision).in_([Decision.APPROVE.value, Decision.REJECT.value]),
                    )
                    .limit(1)
                )
            ).first()
        if reviewed != verdict.value:
            raise NotHeld(kind.saga.label, row_id, row.status, verdict)
        return row
