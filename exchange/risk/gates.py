"""The risk gates a program declares (``[risk]``) on every way points leave a member's account
there: a conversion out of it, and a redemption paid with its points. One code serves both: the
gates judge an :class:`Outflow`, the facts they need, whatever moves the points.

:meth:`Gates.screen` runs in the unit of work that records the conversion or redemption, after
its row is inserted and before anything is sent to a partner: the cooling period after linking,
the names on the two accounts, velocity per member and per account, then a hold above an amount.
Velocity is counted in the database, in that unit of work, after locking the member's row
(``FOR UPDATE`` on PostgreSQL; SQLite has one writer at a time): two outflows of one member
started at once are counted one after the other, each seeing the other if it committed first, so
together they never pass a limit that each alone would not. A window counts every :class:`Way`
out together (the exchange gives the gates all of them: conversions and redemptions), so a limit
of five a day cannot be doubled by alternating the two. Those that moved nothing in the end
(FAILED, REVERSED) do not count; held ones do.

A refusal raises :class:`~exchange.risk.decisions.GateRefusal`, which rolls the unit of work
back: nothing recorded, nothing reserved, no consent used, no partner called. What passes is
held above ``hold_above_points`` (HELD: its saga waits for staff, until its ``next_attempt_at``,
when it ends unreviewed, :mod:`exchange.services.holds`) or allowed; either is recorded in the
caller's unit of work. A program without ``[risk]`` costs nothing: no query. Every statement
is built once and sent by :func:`~exchange.db.direct.execute`, so the unit of work stays lean
(:meth:`~exchange.db.database.Database.run`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from sqlalchemy import Select, Table, Update, bindparam, func, insert, select, update
from sqlalchemy.orm import Mapped
from sqlmodel import SQLModel, col
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db import direct
from exchange.errors import ErrorCode
from exchange.members.models import LinkedAccount, Member
from exchange.members.names import same_name
from exchange.risk import reasons
from exchange.risk.decisions import GateRefusal, decision
from exchange.risk.models import Decision, RiskDecision, Subject
from exchange.risk.policy import Per, RiskPolicy, Velocity

#: The rule a hold names in the decision log.
HOLD_ABOVE = "HOLD_ABOVE"
#: The status of a conversion or redemption held for staff review (nothing debited yet).
HELD = "HELD"


class CoolingPeriod(GateRefusal):
    code = ErrorCode.COOLING_PERIOD


class NamesDiffer(GateRefusal):
    code = ErrorCode.NAME_MISMATCH


class VelocityExceeded(GateRefusal):
    code = ErrorCode.VELOCITY_EXCEEDED


@dataclass(frozen=True)
class Way:
    """One way points leave a member's account, as the gates count and hold it: its table and
    the columns they read. Each package describes its own (conversions out of a program,
    redemptions paid with its points); the exchange hands the gates every one of them."""

    subject: Subject
    table: type[SQLModel]
    id: Mapped[str]
    member_id: Mapped[str]
    #: The program whose points leave, and the member's id there.
    program: Mapped[str]
    member_ref: Mapped[str]
    points: Mapped[int]
    status: Mapped[str]
    created_at: Mapped[datetime]
    #: Final statuses of rows that moved nothing in the end: velocity leaves them out.
    moved_nothing: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Outflow:
    """Points about to leave a member's account at ``program_id``, as the gates judge them.

    ``id`` is the row's (a conversion's or redemption's: ``way``); ``to_program`` is the program
    whose account the points' value goes to, whose name for the member must match (``None``:
    no account to compare); ``field`` is the input a refusal names."""

    way: Way
    id: str
    member_id: str
    program_id: str
    member_ref: str
    points: int
    to_program: str | None
    field: str

    def verdict(
        self, kind: Decision, reason: str, now: datetime, rule: str | None = None, *, decided_by: str | None = None
    ) -> RiskDecision:
        """The decision ``kind`` about this outflow (by staff ``decided_by``; ``None``: the gates), to record."""
        subject = self.way.subject
        return decision(
            subject,
            kind,
            reason=reason,
            rule=rule,
            member_id=self.member_id,
            program_id=self.program_id,
            member_ref=self.member_ref,
            conversion_id=self.id if subject is Subject.CONVERSION else None,
            redemption_id=self.id if subject is Subject.REDEMPTION else None,
            points=self.points,
            decided_by=decided_by,
            now=now,
        )


@dataclass(frozen=True)
class Gates:
    """The risk gates, counting velocity over ``ways``: every way points leave an account."""

    ways: tuple[Way, ...]

    async def screen(
        self, session: AsyncSession, row: object, outflow: Outflow, policy: RiskPolicy | None, now: datetime
    ) -> None:
        """Refuse, hold or allow ``row`` (just inserted, PENDING; ``outflow`` says what it takes
        from the member's account) under ``policy``, the paying program's (``None``: it declares
        none). A hold moves it to HELD (``row`` too)."""
        if policy is None:
            return
        await self.refuse_if_barred(session, outflow, policy, now)
        if not policy.holds(outflow.points):
            await _record(session, outflow.verdict(Decision.ALLOW, reasons.ALLOWED.text(), now))
            return
        held = {"status": HELD, "lease_until": None, "next_attempt_at": now + policy.hold_expires_after}
        await direct.execute(session, _hold(outflow.way), {"row_id": outflow.id, **held})
        for name, value in held.items():
            setattr(row, name, value)
        reason = reasons.HELD_ABOVE.text(limit=policy.hold_above_points)
        await _record(session, outflow.verdict(Decision.HOLD, reason, now, HOLD_ABOVE))

    async def refuse_if_barred(
        self, session: AsyncSession, outflow: Outflow, policy: RiskPolicy, now: datetime
    ) -> None:
        """Raise the first refusal of ``policy``'s cooling period, names and velocity gates."""
        found = await direct.execute(
            session,
            _LINKS,
            {"member_id": outflow.member_id, "source": outflow.program_id, "target": outflow.to_program},
        )
        links = {link.program_id: link for link in (direct.loaded(LinkedAccount, row) for row in found)}
        source_link = links[outflow.program_id]
        open_at = source_link.linked_at + policy.cooling_period
        if now < open_at:
            reason = reasons.COOLING_PERIOD.text(program=outflow.program_id, opens_at=open_at.isoformat())
            raise CoolingPeriod(
                reason,
                decision=outflow.verdict(Decision.REFUSE, reason, now, ErrorCode.COOLING_PERIOD.value),
                field=outflow.field,
                availableAt=open_at.isoformat(),
            )
        target_link = links.get(outflow.to_program) if outflow.to_program is not None else None
        source_name, target_name = source_link.holder_name, target_link.holder_name if target_link else None
        if policy.refuse_name_mismatch and source_name and target_name and not same_name(source_name, target_name):
            reason = reasons.NAMES_DIFFER.text(program=outflow.program_id, other=str(outflow.to_program))
            raise NamesDiffer(
                reason,
                decision=outflow.verdict(Decision.REFUSE, reason, now, ErrorCode.NAME_MISMATCH.value),
                field=outflow.field,
            )
        if policy.velocity:
            await direct.execute(session, _LOCK_MEMBER, {"member_id": outflow.member_id})
            for rule in policy.velocity:
                if (broken := await self._velocity_breach(session, outflow, rule, now)) is not None:
                    raise VelocityExceeded(
                        broken,
                        decision=outflow.verdict(Decision.REFUSE, broken, now, f"VELOCITY_{rule.per.name}"),
                        field=outflow.field,
                        per=rule.per.value,
                        windowSeconds=int(rule.window.total_seconds()),
                    )

    async def _velocity_breach(
        self, session: AsyncSession, outflow: Outflow, rule: Velocity, now: datetime
    ) -> str | None:
        """Why ``outflow`` (counted with everything else that left the account or the member by
        every way, itself included) breaks ``rule`` (the reason to log), or ``None``."""
        count, points = 0, 0
        scope = (
            {"member_id": outflow.member_id}
            if rule.per is Per.MEMBER
            else {"program": outflow.program_id, "member_ref": outflow.member_ref}
        )
        for way in self.ways:
            counted, summed = (
                await direct.execute(session, _moved_out(way, rule.per), {**scope, "since": now - rule.window})
            ).one()
            count, points = count + counted, points + int(summed)  # PostgreSQL sums bigints as numeric
        if rule.max_count is not None and count > rule.max_count:
            return reasons.velocity(outflow.program_id, rule, made=count, over_points=False)
        if rule.max_points is not None and points > rule.max_points:
            return reasons.velocity(outflow.program_id, rule, made=points, over_points=True)
        return None


LINKS: Table = LinkedAccount.__table__  # type: ignore[attr-defined]
MEMBERS: Table = Member.__table__  # type: ignore[attr-defined]
DECISIONS: Table = RiskDecision.__table__  # type: ignore[attr-defined]

#: The member's accounts at the ``source`` and ``target`` programs (a null ``target``: none).
_LINKS = select(LINKS).where(
    LINKS.c.member_id == bindparam("member_id"),
    LINKS.c.program_id.in_(
        [bindparam("source", type_=LINKS.c.program_id.type), bindparam("target", type_=LINKS.c.program_id.type)]
    ),
)
#: The member's row, locked until the unit of work ends (velocity counts one outflow at a time).
_LOCK_MEMBER = select(MEMBERS.c.id).where(MEMBERS.c.id == bindparam("member_id")).with_for_update()
#: The columns a decision is recorded with: all but its id, which the database gives.
_DECIDED = tuple(column.name for column in DECISIONS.columns if column.name != "id")
_DECIDE = insert(DECISIONS).values({name: bindparam(name, type_=DECISIONS.c[name].type) for name in _DECIDED})


async def _record(session: AsyncSession, verdict: RiskDecision) -> None:
    """Record ``verdict`` in the unit of work."""
    await direct.execute(session, _DECIDE, {name: getattr(verdict, name) for name in _DECIDED})


@lru_cache(maxsize=16)
def _moved_out(way: Way, per: Per) -> Select[int, int]:
    """How many outflows ``way`` made, and how many points they took, from the member
    (``member_id``; :attr:`Per.MEMBER`) or from the account (``program``, ``member_ref``) since
    ``since``, less those that moved nothing in the end; built once."""
    scope = (
        [col(way.member_id) == bindparam("member_id")]
        if per is Per.MEMBER
        else [col(way.program) == bindparam("program"), col(way.member_ref) == bindparam("member_ref")]
    )
    return select(func.count(), func.coalesce(func.sum(way.points), 0)).where(
        *scope, col(way.created_at) > bindparam("since"), col(way.status).not_in(way.moved_nothing)
    )


@lru_cache(maxsize=4)
def _hold(way: Way) -> Update:
    """Row ``row_id`` of ``way`` held for staff: its status, lease and expiry set; built once."""
    table: Table = way.table.__table__  # type: ignore[attr-defined]  # a table model's
    return (
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values(
            {name: bindparam(name, type_=table.c[name].type) for name in ("status", "lease_until", "next_attempt_at")}
        )
    )
