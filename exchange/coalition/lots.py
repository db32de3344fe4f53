"""Writes to the coalition point, in lots: the rules a partner's points system follows
(``partners/CONTRACT.md``), kept by the exchange in its own database.

Each function works in the caller's unit of work. Every write is keyed by its operation id: a
repeat with the same request returns the operation as first recorded; another request under
that id is refused (``OPERATION_CONFLICT``); an id a reversal voided is refused for good
(``OPERATION_VOIDED``). A refused write leaves no trace.

* A **credit** opens a lot that expires by the point's rule and records who funded it.
* A **debit** takes from the member's lots that have not expired, the soonest to expire first
  (then the oldest id), and records what it took from each (a draw).
* A **reversal** of a debit (a cancelled redemption, a conversion out of the point that
  failed) puts back exactly what the debit took, the last taken first when it reverses only
  part: into the same lots while they have not expired, so the points keep the expiry they
  had; what a lot that has expired since gave goes, for its funder, into a new lot that lives
  as points earned at the reversal do (:func:`~exchange.coalition.rules.expiry_of`), since
  points put back into an expired lot would be lost to the next expiry run. The expired lot's
  part is put back and drawn again at once by the reversal (a draw of its own), so every lot
  still adds up and the points that lapsed stay exactly those that lapsed. A reversal of a
  credit takes back what is left of that credit's lot (``INSUFFICIENT_POINTS`` when the member
  has spent it); a reversal of an id never seen voids it.

A member's lots are locked (``FOR UPDATE``, in the order they are spent) before any is changed,
so concurrent debits of one member queue instead of overdrawing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import and_, bindparam, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.coalition import errors
from exchange.coalition.models import CoalitionDraw, CoalitionLot, CoalitionOperation
from exchange.coalition.rules import PointRules
from exchange.db import dialects
from exchange.db.database import Database
from exchange.members.models import Member


class OperationKind(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"
    REVERSAL = "reversal"


class OperationStatus(StrEnum):
    APPLIED = "applied"
    REVERSED = "reversed"
    VOIDED = "voided"


@dataclass(frozen=True, slots=True)
class Recorded:
    """An operation as recorded; for a reversal, ``target`` is the reversed one as it now stands."""

    operation: CoalitionOperation
    target: CoalitionOperation | None = None


@dataclass(frozen=True, slots=True)
class ExpiringLots:
    """Points of a member's balance that expire together, at ``expires_at``."""

    points: int
    expires_at: datetime


def saga_of(operation_id: str) -> str:
    """The saga an operation belongs to: its id up to the first ``:`` (``<saga id>:<step>``)."""
    return operation_id.split(":", 1)[0]


# -- reading ----------------------------------------------------------------------------


async def operation(session: AsyncSession, operation_id: str) -> Recorded | None:
    """The operation recorded under ``operation_id`` (with its target, for a reversal)."""
    recorded = await _get(session, operation_id)
    if recorded is None:
        return None
    target = await _get(session, recorded.reverses) if recorded.reverses else None
    return Recorded(recorded, target)


#: A member's unexpired points by expiry instant (one row with a null instant if none; no row:
#: no such member); built once, as it is read on every federated view.
_HOLDINGS = (
    select(Member.id, CoalitionLot.expires_at, func.sum(CoalitionLot.remaining))
    .select_from(Member)
    .outerjoin(
        CoalitionLot,
        and_(
            col(CoalitionLot.member_id) == col(Member.id),
            col(CoalitionLot.expires_at) > bindparam("now"),
            col(CoalitionLot.remaining) > 0,
        ),
    )
    .where(Member.id == bindparam("member_ref"))
    .group_by(col(Member.id), col(CoalitionLot.expires_at))
    .order_by(col(CoalitionLot.expires_at))
)


async def holdings(db: Database, member_ref: str, now: datetime) -> list[ExpiringLots] | None:
    """The member's balance by expiry instant, soonest first (what expires, and when; the
    balance is their sum), in one statement on its own (:meth:`Database.read`); ``None`` if
    ``member_ref`` names no member (at the point, a member's ref is their own id)."""
    rows = await db.read(_HOLDINGS, {"member_ref": member_ref, "now": now})
    if not rows:
        return None
    return [
        ExpiringLots(points=int(points), expires_at=expires_at)
        for _, expires_at, points in rows
        if expires_at is not None
    ]


# -- writing ----------------------------------------------------------------------------


async def credit(
    session: AsyncSession,
    rules: PointRules,
    *,
    operation_id: str,
    member_ref: str,
    points: int,
    funded_by: str | None,
    now: datetime,
) -> Recorded:
    """Give the member ``points`` in a new lot, funded by ``funded_by`` (``None``: the operator)."""
    replay = await _replay(session, operation_id, OperationKind.CREDIT, member_ref=member_ref, points=points)
    if replay is not None:
        return replay
    await _require_member(session, member_ref)
    created = await _insert(session, operation_id, OperationKind.CREDIT, member_ref=member_ref, points=points, now=now)
    if created is None:  # a concurrent request with this id won
        return await _replayed(session, operation_id, OperationKind.CREDIT, member_ref=member_ref, points=points)
    session.add(
        CoalitionLot(
            member_id=member_ref,
            program_id=rules.program_id,
            funded_by=funded_by,
            opened_by=operation_id,
            points=points,
            remaining=points,
            earned_at=now,
            expires_at=rules.expiry_of(now),
        )
    )
    await session.flush()
    return Recorded(created)


async def debit(session: AsyncSession, *, operation_id: str, member_ref: str, points: int, now: datetime) -> Recorded:
    """Take ``points`` from the member's lots, the soonest to expire first."""
    replay = await _replay(session, operation_id, OperationKind.DEBIT, member_ref=member_ref, points=points)
    if replay is not None:
        return replay
    await _require_member(session, member_ref)
    lots = await _spendable(session, member_ref, now)
    held = sum(lot.remaining for lot in lots)
    if held < points:
        raise errors.insufficient(member_ref, held, points)
    created = await _insert(session, operation_id, OperationKind.DEBIT, member_ref=member_ref, points=points, now=now)
    if created is None:
        return await _replayed(session, operation_id, OperationKind.DEBIT, member_ref=member_ref, points=points)
    left = points
    for lot in lots:
        if left == 0:
            break
        taken = min(lot.remaining, left)
        lot.remaining -= taken
        left -= taken
        session.add(lot)
        session.add(CoalitionDraw(operation_id=operation_id, lot_id=_id(lot), points=taken))
    await session.flush()
    return Recorded(created)


async def reverse(
    session: AsyncSession, rules: PointRules, *, operation_id: str, reverses: str, points: int | None, now: datetime
) -> Recorded:
    """Undo ``reverses``: all that is left of it, or ``points`` of it (see the module docstring)."""
    if reverses == operation_id:
        raise errors.invalid("an operation cannot reverse itself")
    if points is not None and points < 1:
        # The connector refuses it first; here, so that no caller reverses a negative amount
        # into points the debit never took.
        raise errors.invalid(f"points to reverse must be at least 1, not {points}")
    target = await _target(session, reverses, now)
    # Asked after the target's lock: a request under this id that held it first has committed
    # its reversal now, and this one answers as it did instead of applying it a second time.
    replay = await _replay(session, operation_id, OperationKind.REVERSAL, points=points, reverses=reverses)
    if replay is not None:
        return replay
    if target.status == OperationStatus.VOIDED:
        return await _record_reversal(session, operation_id, target, 0, now)
    if target.kind == OperationKind.REVERSAL:
        raise errors.not_reversible(reverses)
    assert target.points is not None and target.member_ref is not None
    left = target.points - target.reversed_points
    amount = left if points is None else points
    if amount == 0 or amount > left:
        raise errors.exceeds(reverses, left)
    if target.kind == OperationKind.CREDIT:
        lot = (
            await session.exec(select(CoalitionLot).where(CoalitionLot.opened_by == reverses).with_for_update())
        ).one()
        if lot.remaining < amount:
            raise errors.insufficient(target.member_ref, lot.remaining, amount)
    recorded = await _record_reversal(session, operation_id, target, amount, now)
    if target.kind == OperationKind.CREDIT:
        lot.remaining -= amount
        session.add(lot)
        session.add(CoalitionDraw(operation_id=operation_id, lot_id=_id(lot), points=amount))
    else:
        await _restore(session, rules, recorded.operation, amount, now)
    target.reversed_points += amount
    if target.reversed_points == target.points:
        target.status = OperationStatus.REVERSED.value
    session.add(target)
    await session.flush()
    return Recorded(recorded.operation, target)


# -- parts ------------------------------------------------------------------------------


async def _target(session: AsyncSession, operation_id: str, now: datetime) -> CoalitionOperation:
    """The operation a reversal names, locked; one not (yet) here is voided first, so that it
    can never apply if it arrives late (a concurrent write of it and the void: one of them)."""
    target = await _get(session, operation_id, for_update=True)
    if target is not None:
        return target
    await session.exec(
        dialects.insert(session, CoalitionOperation.__table__)  # type: ignore[attr-defined]
        .values(
            operation_id=operation_id,
            saga_id=saga_of(operation_id),
            status=OperationStatus.VOIDED.value,
            reversed_points=0,
            created_at=now,
        )
        .on_conflict_do_nothing()
    )
    target = await _get(session, operation_id, for_update=True)
    assert target is not None, "inserted, or inserted meanwhile by a concurrent write"
    return target


def _id(lot: CoalitionLot) -> int:
    assert lot.id is not None
    return lot.id


async def _get(session: AsyncSession, operation_id: str, *, for_update: bool = False) -> CoalitionOperation | None:
    statement = select(CoalitionOperation).where(CoalitionOperation.operation_id == operation_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.exec(statement.execution_options(populate_existing=True))).first()


async def _require_member(session: AsyncSession, member_ref: str) -> None:
    """At the point, a member's ref is their own id."""
    if await session.get(Member, member_ref) is None:
        raise errors.unknown_member(member_ref)


async def _spendable(session: AsyncSession, member_id: str, now: datetime) -> list[CoalitionLot]:
    """The member's lots with points left that have not expired, locked, in the order they are spent."""
    rows = await session.exec(
        select(CoalitionLot)
        .where(CoalitionLot.member_id == member_id, col(CoalitionLot.remaining) > 0, col(CoalitionLot.expires_at) > now)
        .order_by(col(CoalitionLot.expires_at), col(CoalitionLot.id))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def _insert(
    session: AsyncSession,
    operation_id: str,
    kind: OperationKind,
    *,
    member_ref: str | None,
    points: int,
    now: datetime,
    reverses: str | None = None,
) -> CoalitionOperation | None:
    """Record the operation; ``None`` if its id was taken meanwhile (the unique key decides)."""
    inserted = await session.exec(
        dialects.insert(session, CoalitionOperation.__table__)  # type: ignore[attr-defined]
        .values(
            operation_id=operation_id,
            saga_id=saga_of(operation_id),
            kind=kind.value,
            status=OperationStatus.APPLIED.value,
            member_ref=member_ref,
            points=points,
            reversed_points=0,
            reverses=reverses,
            created_at=now,
        )
        .on_conflict_do_nothing()
        .returning(CoalitionOperation.__table__.c.operation_id)  # type: ignore[attr-defined]
    )
    if inserted.first() is None:
        return None
    return await _get(session, operation_id)


async def _record_reversal(
    session: AsyncSession, operation_id: str, target: CoalitionOperation, amount: int, now: datetime
) -> Recorded:
    created = await _insert(
        session,
        operation_id,
        OperationKind.REVERSAL,
        member_ref=target.member_ref,
        points=amount,
        now=now,
        reverses=target.operation_id,
    )
    if created is None:  # taken meanwhile by another request: the same one waits for the target's lock
        return await _replayed(
            session, operation_id, OperationKind.REVERSAL, points=amount, reverses=target.operation_id
        )
    return Recorded(created, target)


async def _restore(
    session: AsyncSession, rules: PointRules, reversal: CoalitionOperation, amount: int, now: datetime
) -> None:
    """Put ``amount`` of the debit ``reversal`` reverses back, the last taken first: into the lots
    it took it from that have not expired, and what expired lots gave into a new lot per funder
    (see the module's docstring)."""
    assert reversal.reverses is not None and reversal.member_ref is not None
    rows = await session.exec(
        select(CoalitionDraw, CoalitionLot)
        .join(CoalitionLot, col(CoalitionLot.id) == col(CoalitionDraw.lot_id))
        .where(CoalitionDraw.operation_id == reversal.reverses, col(CoalitionDraw.restored) < col(CoalitionDraw.points))
        .order_by(col(CoalitionLot.expires_at), col(CoalitionLot.id))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    left = amount
    renewed: dict[str | None, int] = defaultdict(int)  # points of expired lots, by funder
    # Locked in the order debits lock lots (no deadlock between them), put back in reverse.
    for draw, lot in reversed(rows.all()):
        if left == 0:
            break
        put_back = min(draw.points - draw.restored, left)
        draw.restored += put_back
        left -= put_back
        if lot.expires_at > now:
            lot.remaining += put_back
            session.add(lot)
        else:  # put back and taken again by the reversal: the lot's remaining stays as it is
            session.add(CoalitionDraw(operation_id=reversal.operation_id, lot_id=_id(lot), points=put_back))
            renewed[lot.funded_by] += put_back
        session.add(draw)
    assert left == 0, "a debit's draws hold all of what is left of it"
    for funder, points in renewed.items():
        session.add(
            CoalitionLot(
                member_id=reversal.member_ref,
                program_id=rules.program_id,
                funded_by=funder,
                opened_by=renewal_of(reversal.operation_id, funder),
                points=points,
                remaining=points,
                earned_at=now,
                expires_at=rules.expiry_of(now),
            )
        )


def renewal_of(reversal_id: str, funder: str | None) -> str:
    """What ``opened_by`` names the lot a reversal opens for what expired lots of ``funder`` gave:
    the reversal's id and the funder (none: the operator) after a ``#``, which no operation id
    holds, so it never names a credit."""
    return f"{reversal_id}#{funder or ''}"


async def _replay(
    session: AsyncSession,
    operation_id: str,
    kind: OperationKind,
    *,
    member_ref: str | None = None,
    points: int | None = None,
    reverses: str | None = None,
) -> Recorded | None:
    """The operation already recorded under ``operation_id``, if it is this same request."""
    existing = await _get(session, operation_id)
    if existing is None:
        return None
    if existing.status == OperationStatus.VOIDED and existing.kind is None:
        raise errors.voided(operation_id)
    same = existing.kind == kind and (
        (existing.reverses == reverses and (points is None or points == existing.points))
        if kind == OperationKind.REVERSAL
        else (existing.member_ref, existing.points) == (member_ref, points)
    )
    if not same:
        raise errors.conflict(operation_id)
    return await operation(session, operation_id)


async def _replayed(
    session: AsyncSession,
    operation_id: str,
    kind: OperationKind,
    *,
    member_ref: str | None = None,
    points: int | None = None,
    reverses: str | None = None,
) -> Recorded:
    replay = await _replay(session, operation_id, kind, member_ref=member_ref, points=points, reverses=reverses)
    assert replay is not None, "the id that was taken is recorded"
    return replay


async def outstanding(session: AsyncSession) -> int:
    """Every member's coalition points not yet spent or expired by the job (due ones included)."""
    return int((await session.exec(select(func.coalesce(func.sum(CoalitionLot.remaining), 0)))).one())
