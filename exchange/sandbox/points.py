"""The sandbox partner's points system: the contract's rules, apart from any transport.

Every write is keyed by the exchange's operation id. A repeat with the same request returns
the operation as recorded (``created`` False); the same id with another request is refused
(``OPERATION_CONFLICT``); an id a reversal voided is refused for good (``OPERATION_VOIDED``).
A refused request leaves no trace. Each call is one unit of work on the sandbox's storage.

A program whose connector ``mode`` is ``async`` answers every debit and credit "accepted,
pending" and settles it later (:meth:`PointsSystem.settle_pending`); one in ``batch`` mode
takes credits as a file (:meth:`PointsSystem.take_credits_file`) and settles them at once,
keeping the result file. Either way an operation settled later may be declined (status
``failed``): when the caller says so (the ``decline`` fault knob), or a debit the balance no
longer covers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import aiosqlite

from exchange.clock import Clock
from exchange.connectors.contract import (
    MAX_POINTS,
    MEMBER_REF_PATTERN,
    OPERATION_ID_PATTERN,
    ContractCode,
    Eligibility,
    ExpiringPoints,
    MemberAccount,
    Operation,
    OperationKind,
    OperationState,
    Verification,
)
from exchange.programs.declarations import ProgramDeclaration
from exchange.sandbox.storage import Storage
from exchange.text import counted

_OPERATION_ID = re.compile(OPERATION_ID_PATTERN)
_MEMBER_REF = re.compile(MEMBER_REF_PATTERN)


class Refusal(Exception):
    """A definite refusal with a contract code; nothing was applied."""

    def __init__(self, code: ContractCode, detail: str, **facts: Any) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.facts = facts


@dataclass(frozen=True)
class SeedMember:
    member_ref: str
    balance: int
    tier_index: int  # into the program's tiers; clamped, so -1 is the top tier
    verification: str
    expiring: tuple[tuple[int, int], ...]  # (points, days from seeding)
    name: str


#: The members every sandbox starts with; tiers are named from the program's declaration.
SEED_MEMBERS = (
    SeedMember("alice", 120_000, -1, "1111", ((5_000, 30),), "Alice Chen"),
    SeedMember("bob", 25_000, 1, "2222", ((2_000, 10), (1_000, 90)), "王小明"),
    SeedMember("carol", 3_000, 0, "3333", (), "Carol Lin"),
    SeedMember("dave", 0, 0, "4444", (), "Dave Wu"),
)


@dataclass(frozen=True)
class Written:
    """The answer to a write: the operation, and whether this request created it."""

    operation: Operation
    created: bool


@dataclass(frozen=True)
class MemberState:
    """A member as the admin API shows it: for comparing balances with the exchange."""

    member_ref: str
    balance: int
    opening_balance: int
    tier: str
    own_tier: str
    tier_expires_at: datetime | None


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _fingerprint(kind: OperationKind, **request: Any) -> str:
    return json.dumps({"kind": kind.value, **request}, sort_keys=True)


def _check_id(value: str, name: str) -> None:
    if not _OPERATION_ID.fullmatch(value):
        raise Refusal(ContractCode.INVALID_REQUEST, f"{name} must match {OPERATION_ID_PATTERN}")


def _check_member_ref(value: str) -> None:
    if not _MEMBER_REF.fullmatch(value):
        raise Refusal(ContractCode.INVALID_REQUEST, f"member_ref must match {MEMBER_REF_PATTERN}")


def _check_points(value: int) -> None:
    if not 0 < value <= MAX_POINTS:
        raise Refusal(ContractCode.INVALID_REQUEST, f"points must be from 1 to {MAX_POINTS}")


def expiring_view(balance: int, lots: list[tuple[int, date]], today: date) -> tuple[ExpiringPoints, ...]:
    """The lots still to expire, as far as the balance still holds them.

    Points spent are taken from the soonest-expiring lots first, so when the balance is below
    the lots' sum, the latest lots are the ones left.
    """
    left = balance
    kept: list[ExpiringPoints] = []
    for points, expires_on in sorted((lot for lot in lots if lot[1] >= today), key=lambda lot: lot[1], reverse=True):
        if left <= 0:
            break
        held = min(points, left)
        left -= held
        kept.append(ExpiringPoints(points=held, expires_on=expires_on))
    return tuple(reversed(kept))


class PointsSystem:
    def __init__(self, storage: Storage, program: ProgramDeclaration, clock: Clock) -> None:
        self.storage = storage
        self.program = program
        self.clock = clock
        self._tiers = [tier.name for tier in program.tiers]

    async def seed(self) -> None:
        """Create the seeded members (once, in a new store)."""
        now = self.clock.now()
        async with self.storage.transaction() as db:
            for seed in SEED_MEMBERS:
                tier = self._tiers[max(-len(self._tiers), min(seed.tier_index, len(self._tiers) - 1))]
                await self._insert_member(
                    db, seed.member_ref, seed.balance, tier, seed.verification, seed.name, Eligibility.ELIGIBLE
                )
                for points, days in seed.expiring:
                    await db.execute(
                        "INSERT INTO expiring_lot (member_ref, points, expires_on) VALUES (?, ?, ?)",
                        (seed.member_ref, points, (now + timedelta(days=days)).date().isoformat()),
                    )

    async def add_member(
        self,
        member_ref: str,
        balance: int,
        tier: str,
        verification: str,
        name: str | None = None,
        eligibility: Eligibility = Eligibility.ELIGIBLE,
    ) -> MemberState:
        """A new member with an opening balance, a name (``None``: none on record) and an
        eligibility (admin only); ``OPERATION_CONFLICT`` if it exists."""
        _check_member_ref(member_ref)
        if not 0 <= balance <= MAX_POINTS:
            raise Refusal(ContractCode.INVALID_REQUEST, f"balance must be from 0 to {MAX_POINTS}")
        self._check_tier(tier)
        async with self.storage.transaction() as db:
            if await self._member(db, member_ref) is not None:
                raise Refusal(ContractCode.OPERATION_CONFLICT, f"member {member_ref} exists")
            await self._insert_member(db, member_ref, balance, tier, verification, name, eligibility)
            row = await self._member(db, member_ref)
            assert row is not None
            return self._member_state(row)

    # -- reads --------------------------------------------------------------------------

    async def account(self, member_ref: str) -> MemberAccount:
        async with self.storage.transaction() as db:
            row = await self._existing_member(db, member_ref)
            lots = await (
                await db.execute("SELECT points, expires_on FROM expiring_lot WHERE member_ref = ?", (member_ref,))
            ).fetchall()
        state = self._member_state(row)
        today = self.clock.now().date()
        return MemberAccount(
            member_ref=member_ref,
            balance=state.balance,
            tier=state.tier,
            tier_expires_at=state.tier_expires_at,
            expiring=expiring_view(
                state.balance, [(lot["points"], date.fromisoformat(lot["expires_on"])) for lot in lots], today
            ),
        )

    async def verify(self, member_ref: str, verification: str) -> Verification:
        async with self.storage.transaction() as db:
            row = await self._existing_member(db, member_ref)
        verified = row["verification"] == verification
        # The name and standing are the member's to know: told only to whoever proved the account.
        return Verification(
            member_ref=member_ref,
            verified=verified,
            name=row["name"] if verified else None,
            eligibility=Eligibility(row["eligibility"]) if verified else Eligibility.ELIGIBLE,
        )

    async def operation(self, operation_id: str) -> Operation | None:
        async with self.storage.transaction() as db:
            return await self._operation(db, operation_id)

    async def operation_log(self) -> list[tuple[int, Operation]]:
        """Every operation in the order it was recorded, with its sequence number."""
        async with self.storage.transaction() as db:
            rows = await (await db.execute("SELECT * FROM operation ORDER BY seq")).fetchall()
        return [(row["seq"], self._to_operation(row, None)) for row in rows]

    async def members(self) -> list[MemberState]:
        async with self.storage.transaction() as db:
            rows = await (await db.execute("SELECT * FROM member ORDER BY member_ref")).fetchall()
        return [self._member_state(row) for row in rows]

    # -- writes -------------------------------------------------------------------------

    async def debit(self, operation_id: str, member_ref: str, points: int) -> Written:
        return await self._move(OperationKind.DEBIT, operation_id, member_ref, points)

    async def credit(self, operation_id: str, member_ref: str, points: int) -> Written:
        return await self._move(OperationKind.CREDIT, operation_id, member_ref, points)

    async def _move(self, kind: OperationKind, operation_id: str, member_ref: str, points: int) -> Written:
        _check_id(operation_id, "operation_id")
        _check_member_ref(member_ref)
        _check_points(points)
        request = _fingerprint(kind, member_ref=member_ref, points=points)
        async with self.storage.transaction() as db:
            if (replay := await self._replay(db, operation_id, request)) is not None:
                return replay
            await self._existing_member(db, member_ref)
            if self.program.connector.mode == "async":
                await self._record(
                    db, operation_id, kind, request, status=OperationState.PENDING, member_ref=member_ref, points=points
                )
            else:
                await self._apply(db, kind, operation_id, request, member_ref, points)
            return Written(await self._get_operation(db, operation_id), created=True)

    async def _apply(
        self,
        db: aiosqlite.Connection,
        kind: OperationKind,
        operation_id: str,
        request: str,
        member_ref: str,
        points: int,
    ) -> None:
        """Move the member's points and record the operation applied."""
        balance = await self._balance_after(db, kind, member_ref, points)
        await db.execute("UPDATE member SET balance = ? WHERE member_ref = ?", (balance, member_ref))
        await self._record(db, operation_id, kind, request, member_ref=member_ref, points=points, balance_after=balance)

    async def _balance_after(self, db: aiosqlite.Connection, kind: OperationKind, member_ref: str, points: int) -> int:
        """The member's balance once ``kind`` of ``points`` applies; refused if it cannot."""
        member = await self._existing_member(db, member_ref)
        balance: int = member["balance"] + (points if kind is OperationKind.CREDIT else -points)
        if balance < 0:
            raise Refusal(
                ContractCode.INSUFFICIENT_POINTS,
                f"member {member_ref} has {counted(member['balance'], 'point')}, {points} asked",
                balance=member["balance"],
            )
        if balance > MAX_POINTS:
            raise Refusal(ContractCode.INVALID_REQUEST, "the balance would exceed the maximum")
        return balance

    # -- operations settled later ---------------------------------------------------------

    async def settle_pending(self, *, accepted_by: datetime, declines: Callable[[], bool]) -> list[Operation]:
        """Settle every pending operation accepted by ``accepted_by``, oldest first:
        applied, or failed (``declines()`` says so, or a debit the balance no longer covers)."""
        async with self.storage.transaction() as db:
            rows = await (
                await db.execute(
                    "SELECT * FROM operation WHERE status = ? AND created_at <= ? ORDER BY seq",
                    (OperationState.PENDING.value, _iso(accepted_by)),
                )
            ).fetchall()
            for row in rows:
                await self._settle(db, row, declined=declines())
            return [await self._get_operation(db, row["operation_id"]) for row in rows]

    async def _settle(self, db: aiosqlite.Connection, row: aiosqlite.Row, *, declined: bool) -> None:
        kind, member_ref, points = OperationKind(row["kind"]), row["member_ref"], row["points"]
        try:
            if declined:
                raise Refusal(ContractCode.INVALID_REQUEST, "declined")
            balance = await self._balance_after(db, kind, member_ref, points)
        except Refusal:
            await db.execute("UPDATE operation SET status = ? WHERE seq = ?", (OperationState.FAILED.value, row["seq"]))
            return
        await db.execute("UPDATE member SET balance = ? WHERE member_ref = ?", (balance, member_ref))
        await db.execute(
            "UPDATE operation SET status = ?, balance_after = ? WHERE seq = ?",
            (OperationState.APPLIED.value, balance, row["seq"]),
        )

    async def take_credits_file(
        self,
        batch_id: str,
        lines: list[tuple[str, str, int]],
        *,
        declines: Callable[[], bool],
        shorts: Callable[[], bool],
    ) -> int:
        """A batch of credits (operation id, member, points): each recorded and settled at once,
        its outcome and points kept for the result file. A batch sent again changes nothing; a
        line whose id is known already keeps its first outcome. ``shorts()`` says a new credit
        is a partner's bug: recorded and applied at a tenth of its points (at least one).
        Returns the batch's line count."""
        async with self.storage.transaction() as db:
            known = await db.execute_fetchall("SELECT count(*) FROM batch_line WHERE batch_id = ?", (batch_id,))
            if next(iter(known))[0]:
                return int(next(iter(known))[0])
            for operation_id, member_ref, points in lines:
                request = _fingerprint(OperationKind.CREDIT, member_ref=member_ref, points=points)
                try:
                    _check_id(operation_id, "operation_id")
                    _check_points(points)
                    if await self._replay(db, operation_id, request) is None:
                        await self._existing_member(db, member_ref)
                        await self._record(
                            db,
                            operation_id,
                            OperationKind.CREDIT,
                            request,
                            status=OperationState.PENDING,
                            member_ref=member_ref,
                            points=max(1, points // 10) if shorts() else points,
                        )
                        row = await (
                            await db.execute("SELECT * FROM operation WHERE operation_id = ?", (operation_id,))
                        ).fetchone()
                        assert row is not None, operation_id
                        await self._settle(db, row, declined=declines())
                    recorded = await self._get_operation(db, operation_id)
                    status, recorded_points = recorded.status.value, recorded.points or points
                except Refusal:
                    # Refused outright: nothing recorded, nothing applied (of the points asked).
                    status, recorded_points = OperationState.FAILED.value, points
                await db.execute(
                    "INSERT INTO batch_line (batch_id, operation_id, status, points) VALUES (?, ?, ?, ?)",
                    (batch_id, operation_id, status, recorded_points),
                )
            return len(lines)

    async def batch_results(self, batch_id: str) -> list[tuple[str, str, int | None]] | None:
        """The result file's lines (operation id, status, points as recorded: ``None`` in a
        batch taken by a sandbox older than that column), in the file's order; ``None`` for a
        batch never received."""
        async with self.storage.transaction() as db:
            rows = await (
                await db.execute(
                    "SELECT operation_id, status, points FROM batch_line WHERE batch_id = ? ORDER BY seq", (batch_id,)
                )
            ).fetchall()
        return [(row["operation_id"], row["status"], row["points"]) for row in rows] or None

    async def reverse(self, operation_id: str, reverses: str, points: int | None) -> Written:
        _check_id(operation_id, "operation_id")
        _check_id(reverses, "reverses")
        if points is not None:
            _check_points(points)
        if reverses == operation_id:
            raise Refusal(ContractCode.INVALID_REQUEST, "an operation cannot reverse itself")
        request = _fingerprint(OperationKind.REVERSAL, reverses=reverses, points=points)
        async with self.storage.transaction() as db:
            if (replay := await self._replay(db, operation_id, request)) is not None:
                return replay
            target = await (await db.execute("SELECT * FROM operation WHERE operation_id = ?", (reverses,))).fetchone()
            if target is None:
                # Not (yet) here: void the id, so that it can never apply if it arrives late.
                await self._record(db, reverses, None, "{}", status=OperationState.VOIDED)
                reversed_points, member_ref, balance = 0, None, None
            elif target["status"] in (OperationState.VOIDED, OperationState.FAILED):
                reversed_points, member_ref, balance = 0, None, None
            elif target["status"] == OperationState.PENDING:
                raise Refusal(ContractCode.NOT_REVERSIBLE, f"{reverses} is pending: it is settled first")
            elif target["kind"] == OperationKind.REVERSAL:
                raise Refusal(ContractCode.NOT_REVERSIBLE, f"{reverses} is a reversal")
            elif target["kind"] == OperationKind.TIER_MATCH:
                await self._revert_tier(db, target, points)
                reversed_points, member_ref, balance = None, target["member_ref"], None
            else:
                reversed_points = await self._reverse_points(db, target, points)
                member_ref = target["member_ref"]
                balance = (await self._existing_member(db, member_ref))["balance"]
            await self._record(
                db,
                operation_id,
                OperationKind.REVERSAL,
                request,
                member_ref=member_ref,
                points=reversed_points,
                balance_after=balance,
                reverses=reverses,
            )
            return Written(await self._get_operation(db, operation_id), created=True)

    async def _reverse_points(self, db: aiosqlite.Connection, target: aiosqlite.Row, points: int | None) -> int:
        left = target["points"] - target["reversed_points"]
        amount = left if points is None else points
        if amount == 0 or amount > left:
            raise Refusal(
                ContractCode.REVERSAL_EXCEEDS_ORIGINAL,
                f"{counted(left, 'point')} of {target['operation_id']} {'is' if left == 1 else 'are'} left to reverse",
                reversible_points=left,
            )
        member = await self._existing_member(db, target["member_ref"])
        delta = amount if target["kind"] == OperationKind.DEBIT else -amount
        if member["balance"] + delta < 0:
            raise Refusal(
                ContractCode.INSUFFICIENT_POINTS,
                f"member {member['member_ref']} has spent the credited points",
                balance=member["balance"],
            )
        await db.execute("UPDATE member SET balance = balance + ? WHERE member_ref = ?", (delta, member["member_ref"]))
        reversed_total = target["reversed_points"] + amount
        status = OperationState.REVERSED if reversed_total == target["points"] else OperationState.APPLIED
        await db.execute(
            "UPDATE operation SET reversed_points = ?, status = ? WHERE seq = ?",
            (reversed_total, status.value, target["seq"]),
        )
        return amount

    async def _revert_tier(self, db: aiosqlite.Connection, target: aiosqlite.Row, points: int | None) -> None:
        if points is not None:
            raise Refusal(ContractCode.INVALID_REQUEST, "a tier match is reverted whole: give no points")
        if target["status"] == OperationState.REVERSED:
            raise Refusal(ContractCode.REVERSAL_EXCEEDS_ORIGINAL, f"{target['operation_id']} is already reverted")
        # Only if that match is still the member's: a later match is left alone.
        await db.execute(
            "UPDATE member SET matched_tier = NULL, matched_until = NULL, matched_by = NULL "
            "WHERE member_ref = ? AND matched_by = ?",
            (target["member_ref"], target["operation_id"]),
        )
        await db.execute(
            "UPDATE operation SET status = ? WHERE seq = ?", (OperationState.REVERSED.value, target["seq"])
        )

    async def match_tier(self, operation_id: str, member_ref: str, tier: str, expires_at: datetime) -> Written:
        _check_id(operation_id, "operation_id")
        _check_member_ref(member_ref)
        self._check_tier(tier)
        if expires_at.tzinfo is None or expires_at <= self.clock.now():
            raise Refusal(ContractCode.INVALID_REQUEST, "expires_at must be a future time with a zone")
        request = _fingerprint(OperationKind.TIER_MATCH, member_ref=member_ref, tier=tier, expires_at=_iso(expires_at))
        async with self.storage.transaction() as db:
            if (replay := await self._replay(db, operation_id, request)) is not None:
                return replay
            await self._existing_member(db, member_ref)
            await db.execute(
                "UPDATE member SET matched_tier = ?, matched_until = ?, matched_by = ? WHERE member_ref = ?",
                (tier, _iso(expires_at), operation_id, member_ref),
            )
            await self._record(
                db,
                operation_id,
                OperationKind.TIER_MATCH,
                request,
                member_ref=member_ref,
                tier=tier,
                expires_at=_iso(expires_at),
            )
            return Written(await self._get_operation(db, operation_id), created=True)

    # -- helpers --------------------------------------------------------------------------

    def other_tier(self, tier: str) -> str:
        """A tier of the program other than ``tier`` (the one before it, or the next; the same
        in a program of one tier): what a partner's bug matches instead (``misapply``)."""
        at = self._tiers.index(tier) if tier in self._tiers else 0
        return self._tiers[at - 1 if at > 0 else min(1, len(self._tiers) - 1)]

    def _check_tier(self, tier: str) -> None:
        if tier not in self._tiers:
            raise Refusal(ContractCode.UNKNOWN_TIER, f"{self.program.id} has no tier {tier!r}", tiers=self._tiers)

    async def _insert_member(
        self,
        db: aiosqlite.Connection,
        member_ref: str,
        balance: int,
        tier: str,
        verification: str,
        name: str | None,
        eligibility: Eligibility,
    ) -> None:
        await db.execute(
            "INSERT INTO member (member_ref, balance, opening_balance, tier, verification, name, eligibility)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (member_ref, balance, balance, tier, verification, name, eligibility.value),
        )

    async def _member(self, db: aiosqlite.Connection, member_ref: str) -> aiosqlite.Row | None:
        return await (await db.execute("SELECT * FROM member WHERE member_ref = ?", (member_ref,))).fetchone()

    async def _existing_member(self, db: aiosqlite.Connection, member_ref: str) -> aiosqlite.Row:
        row = await self._member(db, member_ref)
        if row is None:
            raise Refusal(ContractCode.UNKNOWN_MEMBER, f"{self.program.id} has no member {member_ref!r}")
        return row

    def _member_state(self, row: aiosqlite.Row) -> MemberState:
        until = _parse_time(row["matched_until"])
        matched = until is not None and until > self.clock.now()
        return MemberState(
            member_ref=row["member_ref"],
            balance=row["balance"],
            opening_balance=row["opening_balance"],
            tier=row["matched_tier"] if matched else row["tier"],
            own_tier=row["tier"],
            tier_expires_at=until if matched else None,
        )

    async def _replay(self, db: aiosqlite.Connection, operation_id: str, request: str) -> Written | None:
        row = await (await db.execute("SELECT * FROM operation WHERE operation_id = ?", (operation_id,))).fetchone()
        if row is None:
            return None
        if row["kind"] is None:
            raise Refusal(ContractCode.OPERATION_VOIDED, f"{operation_id} was voided by a reversal")
        if row["request"] != request:
            raise Refusal(ContractCode.OPERATION_CONFLICT, f"{operation_id} was used for a different request")
        return Written(await self._get_operation(db, operation_id), created=False)

    async def _record(
        self,
        db: aiosqlite.Connection,
        operation_id: str,
        kind: OperationKind | None,
        request: str,
        *,
        status: OperationState = OperationState.APPLIED,
        member_ref: str | None = None,
        points: int | None = None,
        balance_after: int | None = None,
        reverses: str | None = None,
        tier: str | None = None,
        expires_at: str | None = None,
    ) -> None:
        await db.execute(
            "INSERT INTO operation (operation_id, kind, status, member_ref, points, balance_after, "
            "reverses, tier, expires_at, request, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                operation_id,
                kind.value if kind else None,
                status.value,
                member_ref,
                points,
                balance_after,
                reverses,
                tier,
                expires_at,
                request,
                _iso(self.clock.now()),
            ),
        )

    async def _operation(self, db: aiosqlite.Connection, operation_id: str) -> Operation | None:
        row = await (await db.execute("SELECT * FROM operation WHERE operation_id = ?", (operation_id,))).fetchone()
        if row is None:
            return None
        target = None
        if row["reverses"] is not None:
            target_row = await (
                await db.execute("SELECT * FROM operation WHERE operation_id = ?", (row["reverses"],))
            ).fetchone()
            target = None if target_row is None else self._to_operation(target_row, None)
        return self._to_operation(row, target)

    async def _get_operation(self, db: aiosqlite.Connection, operation_id: str) -> Operation:
        operation = await self._operation(db, operation_id)
        assert operation is not None, operation_id
        return operation

    @staticmethod
    def _to_operation(row: aiosqlite.Row, target: Operation | None) -> Operation:
        return Operation(
            operation_id=row["operation_id"],
            kind=row["kind"],
            status=row["status"],
            member_ref=row["member_ref"],
            points=row["points"],
            reversed_points=row["reversed_points"],
            balance_after=row["balance_after"],
            reverses=row["reverses"],
            target=target,
            tier=row["tier"],
            expires_at=_parse_time(row["expires_at"]),
            created_at=datetime.fromisoformat(row["created_at"]),
        )
