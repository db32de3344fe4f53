"""An in-memory partner that keeps the connector contract, with scripted faults.

Unit-level saga tests drive it directly (no HTTP); integration tests use the real sandbox
partner over loopback instead.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from exchange.connectors.contract import (
    MemberAccount,
    Operation,
    OperationKind,
    OperationState,
)
from exchange.connectors.errors import (
    InsufficientPoints,
    NotReversible,
    OperationConflict,
    OperationVoided,
    PartnerProtocolError,
    PartnerTimeout,
    PartnerUnreachable,
    ReversalExceedsOriginal,
    UnknownMember,
)

NOW = datetime(2026, 11, 20, tzinfo=UTC)


class Fault(Enum):
    APPLY_THEN_LOSE_ANSWER = "apply-then-lose"
    LOSE_REQUEST = "lose"
    UNREACHABLE = "unreachable"
    APPLY_DOUBLE = "apply-double"
    """The partner's bug: it applies twice the points asked under the operation id, and answers
    with what it applied, which the real connector reads as an answer that does not match
    the request (``PartnerProtocolError``: outcome unknown)."""
    ACCEPT_PENDING = "pending"
    """The partner accepts the write pending and applies it later (:meth:`FakePartner.settle`)."""
    ANSWER_WITHOUT_APPLYING = "lie"
    """The partner's lie: it answers the write applied, and neither applies nor records it."""
    REFUSE = "refuse"
    """The partner refuses where the contract allows no refusal (a reversal: the member's
    account closed, say): ``NotReversible``."""
    ANSWER_FAILED = "answer-failed"
    """The partner's breach of the contract: it decides the write at once, not applied, and
    answers it (a 200) as its record stands, ``failed``, where the contract has it refuse."""
    APPLY_PART_REVERSED = "apply-part-reversed"
    """The partner's bug: it applies the write, gives half of it back on its own at once, and
    answers its record, ``applied`` with that half in ``reversed_points``."""
    APPLY_TWICE = "apply-twice"
    """The partner's bug: it applies the write twice under its one operation id (its own
    records show it twice) and answers as if once."""


@dataclass
class FakePartner:
    program_id: str
    balances: dict[str, int]
    operations: dict[str, Operation] = field(default_factory=dict)
    faults: dict[str, deque[Fault]] = field(default_factory=lambda: defaultdict(deque))
    calls: list[tuple[str, str]] = field(default_factory=list)
    applied: list[tuple[str, int]] = field(default_factory=list)
    """The partner's own records: (operation id, points moved) for each write it applied."""
    tiers: dict[str, str] = field(default_factory=dict)
    """Each member's tier, where not ``Base`` (no tier of any program's ladder)."""

    def fail_next(self, call: str, *faults: Fault) -> None:
        self.faults[call].extend(faults)

    def _fault(self, call: str, operation_id: str) -> Fault | None:
        self.calls.append((call, operation_id))
        fault = self.faults[call].popleft() if self.faults[call] else None
        if fault is Fault.UNREACHABLE:
            raise PartnerUnreachable("refused", program_id=self.program_id, call=call)
        if fault is Fault.LOSE_REQUEST:
            raise PartnerTimeout("timed out", program_id=self.program_id, call=call, operation_id=operation_id)
        if fault is Fault.REFUSE:
            raise NotReversible("the member's account is closed", program_id=self.program_id, call=call)
        return fault

    @staticmethod
    def _lose_answer(fault: Fault | None, call: str, program_id: str, operation_id: str) -> None:
        if fault is Fault.APPLY_THEN_LOSE_ANSWER:
            raise PartnerTimeout("answer lost", program_id=program_id, call=call, operation_id=operation_id)

    async def account(self, member_ref: str) -> MemberAccount:
        self._fault("account", member_ref)
        if member_ref not in self.balances:
            raise UnknownMember("no such member", program_id=self.program_id, call="account")
        return MemberAccount(
            member_ref=member_ref, balance=self.balances[member_ref], tier=self.tiers.get(member_ref, "Base")
        )

    async def debit(self, operation_id: str, member_ref: str, points: int) -> Operation:
        return await self._move("debit", OperationKind.DEBIT, operation_id, member_ref, -points)

    async def credit(self, operation_id: str, member_ref: str, points: int) -> Operation:
        return await self._move("credit", OperationKind.CREDIT, operation_id, member_ref, points)

    async def _move(self, call: str, kind: OperationKind, operation_id: str, member_ref: str, delta: int) -> Operation:
        fault = self._fault(call, operation_id)
        if fault is Fault.APPLY_DOUBLE:
            delta *= 2
        existing = self.operations.get(operation_id)
        if existing is not None:
            if existing.status is OperationState.VOIDED:
                raise OperationVoided("voided", program_id=self.program_id, call=call)
            if existing.kind is not kind or existing.points != abs(delta):
                raise OperationConflict("conflict", program_id=self.program_id, call=call)
            self._lose_answer(fault, call, self.program_id, operation_id)
            return existing
        if member_ref not in self.balances:
            raise UnknownMember("no such member", program_id=self.program_id, call=call)
        if self.balances[member_ref] + delta < 0:
            raise InsufficientPoints("insufficient", program_id=self.program_id, call=call)
        if fault in (Fault.ACCEPT_PENDING, Fault.ANSWER_FAILED):
            # Recorded, nothing moved (yet): accepted pending, or declined at once.
            unmoved = Operation(
                operation_id=operation_id,
                kind=kind,
                status=OperationState.PENDING if fault is Fault.ACCEPT_PENDING else OperationState.FAILED,
                member_ref=member_ref,
                points=abs(delta),
                created_at=NOW,
            )
            self.operations[operation_id] = unmoved
            return unmoved
        if fault is Fault.ANSWER_WITHOUT_APPLYING:
            return Operation(
                operation_id=operation_id,
                kind=kind,
                status=OperationState.APPLIED,
                member_ref=member_ref,
                points=abs(delta),
                balance_after=self.balances[member_ref] + delta,
                created_at=NOW,
            )
        for _ in range(2 if fault is Fault.APPLY_TWICE else 1):
            self.balances[member_ref] += delta
            self.applied.append((operation_id, delta))
        operation = Operation(
            operation_id=operation_id,
            kind=kind,
            status=OperationState.APPLIED,
            member_ref=member_ref,
            points=abs(delta),
            balance_after=self.balances[member_ref],
            created_at=NOW,
        )
        if fault is Fault.APPLY_PART_REVERSED:
            half = abs(delta) // 2
            self.balances[member_ref] -= half if delta > 0 else -half
            operation = operation.model_copy(
                update={"reversed_points": half, "balance_after": self.balances[member_ref]}
            )
        self.operations[operation_id] = operation
        self._lose_answer(fault, call, self.program_id, operation_id)
        if fault is Fault.APPLY_DOUBLE:
            raise PartnerProtocolError(
                "answer's points does not match the request",
                program_id=self.program_id,
                call=call,
                operation_id=operation_id,
            )
        return operation

    def settle(self, operation_id: str, *, points: int | None = None) -> None:
        """Apply a write left pending: the points asked, or (the partner's bug) ``points``."""
        pending = self.operations[operation_id]
        assert pending.status is OperationState.PENDING and pending.member_ref is not None
        moved = pending.points if points is None else points
        assert moved is not None
        self.balances[pending.member_ref] += -moved if pending.kind is OperationKind.DEBIT else moved
        self.operations[operation_id] = pending.model_copy(update={"status": OperationState.APPLIED, "points": moved})

    async def reverse(self, operation_id: str, reverses: str, points: int | None = None) -> Operation:
        fault = self._fault("reverse", operation_id)
        if operation_id in self.operations:
            self._lose_answer(fault, "reverse", self.program_id, operation_id)
            return self.operations[operation_id]
        target = self.operations.get(reverses)
        if target is None:
            target = Operation(operation_id=reverses, kind=None, status=OperationState.VOIDED, created_at=NOW)
        elif target.status is OperationState.REVERSED:  # as the contract says: nothing is left to reverse
            raise ReversalExceedsOriginal("0 points are left to reverse", program_id=self.program_id, call="reverse")
        elif target.kind is OperationKind.TIER_MATCH:
            target = target.model_copy(update={"status": OperationState.REVERSED})  # reverted whole
        elif target.status is OperationState.APPLIED:
            assert target.member_ref is not None and target.points is not None
            sign = 1 if target.kind is OperationKind.DEBIT else -1
            self.balances[target.member_ref] += sign * (target.points - target.reversed_points)  # all that is left
            target = target.model_copy(update={"status": OperationState.REVERSED, "reversed_points": target.points})
        self.operations[reverses] = target
        reversal = Operation(
            operation_id=operation_id,
            kind=OperationKind.REVERSAL,
            status=OperationState.APPLIED,
            reverses=reverses,
            target=target,
            points=target.points,
            created_at=NOW,
        )
        self.operations[operation_id] = reversal
        self._lose_answer(fault, "reverse", self.program_id, operation_id)
        return reversal

    async def match_tier(self, operation_id: str, member_ref: str, tier: str, expires_at: datetime) -> Operation:
        """Record the tier match, or answer its record as it now stands (a repeat)."""
        fault = self._fault("match_tier", operation_id)
        if (existing := self.operations.get(operation_id)) is not None:
            if existing.status is OperationState.VOIDED:
                raise OperationVoided("voided", program_id=self.program_id, call="match_tier")
            return existing
        if member_ref not in self.balances:
            raise UnknownMember("no such member", program_id=self.program_id, call="match_tier")
        self.operations[operation_id] = operation = Operation(
            operation_id=operation_id,
            kind=OperationKind.TIER_MATCH,
            status=OperationState.APPLIED,
            member_ref=member_ref,
            tier=tier,
            expires_at=expires_at,
            created_at=NOW,
        )
        self._lose_answer(fault, "match_tier", self.program_id, operation_id)
        return operation

    async def operation_status(self, operation_id: str) -> Operation | None:
        self._fault("operation_status", operation_id)
        return self.operations.get(operation_id)

    async def aclose(self) -> None:
        return None
