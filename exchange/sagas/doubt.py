"""Settling a partner write whose outcome is unknown: find out, or make sure it never applies.

After a timeout or a crash only the partner knows whether a write landed. Its operation
status says so when it has the operation; when it has none, the request may still be in
flight, so the exchange *voids* the id with a reversal naming it (the partner then refuses
it for good if it arrives later). Either way the write's effect is then known for certain —
unless the partner has it *pending* (accepted, to be settled later): then the saga waits.

The partner's record is held against the write the exchange sent (:class:`SentWrite`): a
record of another member, amount or kind (a partner that applied the write wrong, or answers
about a write it never had), or with a part reversed that the exchange never asked back, is
not taken as "applied". The exchange reverses what is left of it and ends the saga with
:data:`CONTRADICTED`, logged as an error for staff, so that what it posts never rests on a
write the partner did not make as sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum

from exchange.connectors.connector import PartnerConnector
from exchange.connectors.contract import Operation, OperationKind, OperationState, same_expiry
from exchange.connectors.errors import PartnerRefusal, PartnerUnavailable, ReversalExceedsOriginal
from exchange.errors import ErrorCode
from exchange.sagas.engine import Transition, failure

logger = logging.getLogger("exchange.sagas")

#: ``failure_code`` of a saga whose partner recorded another write than the one sent; the
#: partner's write was reversed whole.
CONTRADICTED = "PARTNER_CONTRADICTED"

#: Why a saga failed over a partner's write, each written from one template (``partner``: who
#: the partner is to the member, ``source``, ``target`` or ``paying``; ``write``: ``debit`` or
#: ``credit``), so that a page can read the reason back and say it in its reader's language.
WRITE_CONTRADICTED = "the {partner} partner recorded another {write} than the one sent; it was reversed"
WRITE_UNCONFIRMED = "the {partner} partner did not confirm the {write}; it was voided"
WRITE_UNCONFIRMED_IN_TIME = "the {partner} partner did not confirm the {write} in time; it was voided"
WRITE_TOO_LATE = "the {partner} partner confirmed the {write} too late; it was reversed"
#: A write in doubt the partner gave back whole on its own (not at the exchange's asking) before
#: the exchange learnt its outcome (:attr:`Settlement.REVERSED`): ``failure_code`` PARTNER_REFUSED.
WRITE_GIVEN_BACK = "the {partner} partner reversed the {write} on its own before confirming it; nothing is left of it"
#: ``state``: the partner's state of the write it had accepted.
WRITE_NOT_APPLIED = "the {partner} partner did not apply the {write} it had accepted ({state})"
#: A contradicted write the partner refused to reverse, which stands and was posted as sent (the
#: saga COMPLETED with :data:`CONTRADICTED`): ``contradiction``, how its record differs
#: (:meth:`SentWrite.contradiction`); ``refusal``, the partner's refusal.
WRITE_STANDS = (
    "the {partner} partner recorded another {write} than the one sent ({contradiction}) and refused to "
    "reverse it ({refusal}): it stands and was posted as sent; settle the difference with that partner "
    "at reconciliation"
)

#: States of a record of a write that moved points (the ones a contradiction can hide in).
_MOVED = (OperationState.APPLIED, OperationState.REVERSED)


@dataclass(frozen=True, slots=True)
class SentWrite:
    """A debit, credit (``points``) or tier match (``tier`` until ``expires_at``) as the exchange
    sent it."""

    kind: OperationKind
    member_ref: str
    points: int | None = None
    tier: str | None = None
    expires_at: datetime | None = None

    def contradiction(self, operation: Operation) -> str | None:
        """How the partner's ``operation`` differs from this write; ``None`` when it is this write."""
        for name, theirs, ours in (
            ("kind", operation.kind, self.kind),
            ("member", operation.member_ref, self.member_ref),
            ("points", operation.points, self.points),
            ("tier", operation.tier, self.tier),
        ):
            if theirs != ours:
                return f"its {name} is {theirs}, the exchange sent {ours}"
        if self.expires_at is not None and not same_expiry(operation.expires_at, self.expires_at):
            # Another expiry holds the tier for another time than the exchange tells the member.
            return f"its expires_at is {operation.expires_at}, the exchange sent {self.expires_at}"
        if operation.status is OperationState.APPLIED and operation.reversed_points:
            # Only the exchange reverses its writes, and only whole: then the write is ``reversed``.
            return f"{operation.reversed_points} of its points were reversed, which the exchange never asked"
        return None


async def reverse_whole(connector: PartnerConnector, reversal_id: str, operation_id: str) -> None:
    """Reverse the partner's ``operation_id`` whole with ``reversal_id`` (a fixed id: asking
    twice reverses at most once).

    A partner that refuses because nothing is left to reverse, its record showing the
    operation reversed whole (it gave it back on its own, under another id), has done what was
    asked: that is not an error. Any other refusal is raised, as the connector's errors are."""
    try:
        await connector.reverse(reversal_id, operation_id)
    except ReversalExceedsOriginal:
        operation = await connector.operation_status(operation_id)
        if operation is None or operation.status is not OperationState.REVERSED:
            raise
        logger.warning(
            "partner %s had reversed operation %s whole on its own; %s is not needed",
            connector.program_id,
            operation_id,
            reversal_id,
        )


async def undo_contradiction(
    connector: PartnerConnector, operation: Operation | None, operation_id: str, sent: SentWrite, void_id: str
) -> bool:
    """Whether the partner's record ``operation`` of ``operation_id`` moved points otherwise than
    ``sent``; if so, it has been reversed whole with ``void_id`` (a fixed id: asking twice
    reverses at most once). Raises the connector's errors, as :func:`settle_or_void` does."""
    if operation is None or operation.status not in _MOVED:
        return False
    contradiction = sent.contradiction(operation)
    if contradiction is None:
        return False
    logger.error(
        "partner %s recorded operation %s otherwise than it was sent (%s); reversing it",
        connector.program_id,
        operation_id,
        contradiction,
    )
    await reverse_whole(connector, void_id, operation_id)
    return True


class Settlement(Enum):
    APPLIED = "applied"
    """The partner applied the write; the saga goes on."""
    VOIDED = "voided"
    """The partner never applied it and never will."""
    UNDONE = "undone"
    """It applied after all (late); the reversal undid it."""
    REVERSED = "reversed"
    """It applied and the partner has given it back whole since, on its own (under an id of its
    own, not the exchange's void): nothing is left of it, and nothing was sent."""
    PENDING = "pending"
    """The partner accepted it and will settle it later; wait for its word."""
    CONTRADICTED = "contradicted"
    """The partner moved points otherwise than sent; the reversal undid it."""


async def settle_or_void(
    connector: PartnerConnector, operation_id: str, void_id: str, sent: SentWrite | None = None
) -> Settlement:
    """Whether ``operation_id`` took effect at the partner; if not, void it with ``void_id``.
    ``sent``: the write as sent, which the partner's record must match (else it is reversed).

    Raises the connector's errors as they come: the caller keeps the operation in doubt and
    asks again later (``void_id`` is a fixed id, so asking twice voids at most once).
    """
    operation = await connector.operation_status(operation_id)
    if sent is not None and await undo_contradiction(connector, operation, operation_id, sent, void_id):
        return Settlement.CONTRADICTED
    if operation is not None and operation.status is OperationState.APPLIED:
        return Settlement.APPLIED
    if operation is not None and operation.status is OperationState.PENDING:
        return Settlement.PENDING  # a pending operation is the partner's to settle, not ours to void
    if operation is not None and operation.status is OperationState.FAILED:
        return Settlement.VOIDED
    if operation is not None and operation.status is OperationState.REVERSED:
        # Nothing is left to void: a reversal would be refused (REVERSAL_EXCEEDS_ORIGINAL), and
        # the saga asked again for ever. The exchange's own void, sent before a crash, undid it
        # when the partner has that void on record (the write applied late); else the partner
        # gave it back on its own, which the member is told as such.
        if await connector.operation_status(void_id) is not None:
            return Settlement.UNDONE
        return Settlement.REVERSED
    reversal = await connector.reverse(void_id, operation_id)
    target = reversal.target
    if target is not None and target.status is OperationState.VOIDED:
        return Settlement.VOIDED
    return Settlement.UNDONE


def late_answer(
    state: OperationState | None,
    *,
    waiting: Transition,
    applied: Transition,
    refused: Transition,
    partner: str,
    write: str,
) -> Transition:
    """Where a saga goes on a partner's word on a write it accepted and left pending: still
    pending (or, against the contract, unknown to it: keep asking) → ``waiting``; applied →
    ``applied``; anything else → ``refused``, failed as PARTNER_REFUSED with the partner's state
    (``partner`` names who it is to the member, ``write`` what was sent: for the message)."""
    if state is None or state is OperationState.PENDING:
        return waiting
    if state is OperationState.APPLIED:
        return applied
    return replace(
        refused,
        failure_code=ErrorCode.PARTNER_REFUSED.value,
        failure_message=WRITE_NOT_APPLIED.format(partner=partner, write=write, state=state),
    )


@dataclass(frozen=True, slots=True)
class MemberDebit:
    """Taking a member's points at a partner, as a saga step: the first try, or settling a doubt.

    ``then`` is the step after a debit that applied, chained (not recorded on its own): after a
    crash, settling the debit finds it applied and leads there again. ``done`` is the final
    step, with ``failed`` (nothing moved) or ``reversed`` (it applied late and was undone) as
    the status. ``waiting`` is the step that waits for a debit the partner left pending
    (:meth:`poll` asks about it, :meth:`outcome` applies the partner's word).
    """

    connector: PartnerConnector
    operation_id: str
    void_id: str
    member_ref: str
    points: int
    then: str
    done: str
    failed: str
    reversed: str
    partner: str
    """Who the partner is to the member, for messages: ``"source"``, ``"paying"``."""
    waiting: str

    async def attempt(self, *, in_doubt: bool) -> Transition:
        return await (self._settle() if in_doubt else self._first_try())

    @property
    def sent(self) -> SentWrite:
        return SentWrite(OperationKind.DEBIT, self.member_ref, self.points)

    async def poll(self) -> Transition:
        """Ask the partner about the debit it left pending."""
        operation = await self.connector.operation_status(self.operation_id)
        if await undo_contradiction(self.connector, operation, self.operation_id, self.sent, self.void_id):
            return self._contradicted()
        return self.outcome(None if operation is None else operation.status)

    def outcome(self, state: OperationState | None) -> Transition:
        """The partner's word on a pending debit (:func:`late_answer`); refused: nothing was taken."""
        return late_answer(
            state,
            waiting=Transition(self.waiting, wait=True),
            applied=Transition(self.then, chained=True),
            refused=Transition(self.done, self.failed),
            partner=self.partner,
            write="debit",
        )

    async def _first_try(self) -> Transition:
        try:
            operation = await self.connector.debit(self.operation_id, self.member_ref, self.points)
        except (PartnerRefusal, PartnerUnavailable) as error:
            return Transition(self.done, self.failed, *failure(error))
        # The answer is the partner's record, held against the debit sent as a poll's is (a
        # part of it reversed that the exchange never asked back is not "applied").
        if await undo_contradiction(self.connector, operation, self.operation_id, self.sent, self.void_id):
            return self._contradicted()
        return self.outcome(operation.status)

    async def _settle(self) -> Transition:
        settlement = await settle_or_void(self.connector, self.operation_id, self.void_id, self.sent)
        if settlement is Settlement.APPLIED:
            return Transition(self.then, chained=True)
        if settlement is Settlement.PENDING:
            return Transition(self.waiting, wait=True)
        if settlement is Settlement.CONTRADICTED:
            return self._contradicted()
        if settlement is Settlement.VOIDED:
            return Transition(
                self.done,
                self.failed,
                ErrorCode.PARTNER_UNAVAILABLE.value,
                WRITE_UNCONFIRMED_IN_TIME.format(partner=self.partner, write="debit"),
            )
        if settlement is Settlement.REVERSED:
            return Transition(
                self.done,
                self.reversed,
                ErrorCode.PARTNER_REFUSED.value,
                WRITE_GIVEN_BACK.format(partner=self.partner, write="debit"),
            )
        # UNDONE: the debit applied late, and the exchange's void undid it.
        return Transition(
            self.done,
            self.reversed,
            ErrorCode.PARTNER_UNAVAILABLE.value,
            WRITE_TOO_LATE.format(partner=self.partner, write="debit"),
        )

    def _contradicted(self) -> Transition:
        return Transition(
            self.done,
            self.reversed,
            CONTRADICTED,
            WRITE_CONTRADICTED.format(partner=self.partner, write="debit"),
        )
