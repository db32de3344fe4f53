"""The connector: what the saga, status match and federated view call to reach a partner.

:class:`PartnerConnector` is the interface. :class:`ContractConnector` is its one
implementation: it checks arguments, sends through the partner's
:class:`~exchange.connectors.client.PartnerClient`, parses answers with the contract's models
and checks that an answer is about the request that was sent. What differs between a REST and
a GraphQL partner — how a call is spelled and how an answer or refusal is read — is a
:class:`Flavour` (``rest.py``, ``graphql.py``).

Every method raises only :class:`~exchange.connectors.errors.PartnerError`s (besides
``ValueError`` for arguments that break the contract, which is a bug in the caller).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

from exchange.connectors import batch_files
from exchange.connectors.client import CallInfo, HttpRequest, PartnerClient, Reply
from exchange.connectors.contract import (
    MAX_POINTS,
    MEMBER_REF_PATTERN,
    OPERATION_ID_PATTERN,
    ContractCode,
    MemberAccount,
    Operation,
    OperationKind,
    OperationState,
    Problem,
    Verification,
    same_expiry,
)
from exchange.connectors.errors import REFUSALS, PartnerProtocolError, clipped

T = TypeVar("T")


class Call(StrEnum):
    """The calls of the contract."""

    ACCOUNT = "account"
    VERIFY_MEMBER = "verify_member"
    DEBIT = "debit"
    CREDIT = "credit"
    REVERSE = "reverse"
    MATCH_TIER = "match_tier"
    OPERATION_STATUS = "operation_status"
    SEND_CREDITS = "send_credits"
    CREDIT_RESULTS = "credit_results"

    @property
    def write(self) -> bool:
        return self in (Call.DEBIT, Call.CREDIT, Call.REVERSE, Call.MATCH_TIER, Call.SEND_CREDITS)


class Flavour(Protocol):
    """How one kind of partner API spells the contract."""

    def request(self, call: Call, args: dict[str, Any]) -> HttpRequest:
        """The HTTP request for ``call``; ``args`` use the contract's snake_case names."""
        ...

    def result(self, call: Call, reply: Reply) -> Any:
        """The answer's result object (as REST spells it), ``None`` for "no such operation".

        Raises the refusal the partner gave, or ``PartnerProtocolError``.
        """
        ...


class PartnerConnector(Protocol):
    """A partner's points system, as the exchange uses it.

    Writes are keyed by ``operation_id``, chosen by the exchange (e.g. ``"<conversion id>:debit"``):
    sending the same write again is a no-op that returns the operation as first recorded
    (its status may have moved on since: ``reversed``); the same id with a different
    request is refused with ``OperationConflict``.
    """

    program_id: str

    async def account(self, member_ref: str) -> MemberAccount:
        """Balance, tier and expiring points; ``UnknownMember`` if there is no such member."""
        ...

    async def verify_member(self, member_ref: str, verification: str) -> Verification:
        """Whether ``verification`` (a value the member gave) is theirs and, if it is, the name
        the partner has for them and whether the account is eligible; ``UnknownMember`` if none."""
        ...

    async def debit(self, operation_id: str, member_ref: str, points: int) -> Operation:
        """Take ``points`` from the member; ``InsufficientPoints`` if they have fewer."""
        ...

    async def credit(self, operation_id: str, member_ref: str, points: int) -> Operation:
        """Give ``points`` to the member."""
        ...

    async def reverse(self, operation_id: str, reverses: str, points: int | None = None) -> Operation:
        """Undo operation ``reverses``: all that is left of it, or ``points`` of it.

        Returns the reversal, with the reversed operation as it now stands in ``target``.
        If the partner never received ``reverses``, it voids that id instead (target status
        ``voided``): the operation will be refused if it arrives later. So after an unknown
        outcome, a reversal makes the operation's net effect zero either way.
        ``ReversalExceedsOriginal`` if less than ``points`` is left to reverse. An answer that
        says the reversal did not do what was asked (a whole one whose target is not
        ``reversed``, voided or failed; a partial one of other points) is a protocol error.
        """
        ...

    async def match_tier(self, operation_id: str, member_ref: str, tier: str, expires_at: datetime) -> Operation:
        """Give the member the partner's ``tier`` until ``expires_at`` (a status match).

        The answer's record is the match sent: its ``expires_at`` too (to the second,
        :func:`~exchange.connectors.contract.same_expiry`), else a protocol error, as another
        tier is. Revert it with ``reverse(new_id, operation_id)``. ``UnknownTier`` for a name the
        partner does not have. An answer in another state than ``applied`` (or ``reversed``, a
        repeat of a match reverted since, which the caller must not take as the tier held) is a
        protocol error: tier matches are never pending.
        """
        ...

    async def operation_status(self, operation_id: str) -> Operation | None:
        """The operation as the partner has it now, or ``None`` if it has none with that id.

        ``None`` is not final while the request may still be in flight; ``reverse`` settles it.
        """
        ...

    async def send_credits(self, batch_id: str, lines: Callable[[], AsyncIterator[bytes]]) -> None:
        """A batch-mode partner's credits file (``batch_files``), streamed from ``lines()``
        (called afresh for each attempt); the partner takes a batch once, by its id."""
        ...

    def credit_results(self, batch_id: str) -> AsyncIterator[batch_files.ResultLine]:
        """The result file of batch ``batch_id``, line by line as it arrives (nothing while the
        partner has none yet); a line that breaks the file's format is a
        ``PartnerProtocolError`` naming the line (and the column), the lines before it given."""
        ...

    async def aclose(self) -> None: ...


#: How long a file's whole transfer may take (a day's credits may be many megabytes).
FILE_TIMEOUT_SECONDS = 300.0

_OPERATION_ID = re.compile(OPERATION_ID_PATTERN)
_MEMBER_REF = re.compile(MEMBER_REF_PATTERN)


def check_operation_id(value: str, name: str = "operation_id") -> None:
    if not _OPERATION_ID.fullmatch(value):
        raise ValueError(f"{name} {value!r} does not match {OPERATION_ID_PATTERN}")


def check_member_ref(value: str) -> None:
    if not _MEMBER_REF.fullmatch(value):
        raise ValueError(f"member_ref {value!r} does not match {MEMBER_REF_PATTERN}")


def check_points(value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_POINTS:
        raise ValueError(f"points must be a whole number from 1 to {MAX_POINTS}, got {value!r}")


class ContractConnector:
    """:class:`PartnerConnector` over a partner client, in the partner's flavour."""

    def __init__(self, client: PartnerClient, flavour: Flavour, base_url: str) -> None:
        """``base_url``: where the batch files are traded (REST, whatever the flavour)."""
        self.program_id = client.program_id
        self.client = client
        self.flavour = flavour
        self.base_url = base_url.rstrip("/")

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _call(self, call: Call, args: dict[str, Any], read: Callable[[Reply, Any], T]) -> T:
        """Send ``call``; ``read`` turns the result into ours, inside the attempt.

        Parsing inside the attempt is what makes a malformed answer count against the
        breaker and be retried like any other bad answer.
        """
        info = CallInfo(name=call.value, write=call.write, operation_id=args.get("operation_id"))

        def decode(reply: Reply) -> T:
            return read(reply, self.flavour.result(call, reply))

        return await self.client.call(info, self.flavour.request(call, args), decode)

    async def account(self, member_ref: str) -> MemberAccount:
        check_member_ref(member_ref)

        def read(reply: Reply, result: Any) -> MemberAccount:
            account = reply.parse(MemberAccount, result)
            _expect(reply, account.member_ref == member_ref, "member_ref")
            return account

        return await self._call(Call.ACCOUNT, {"member_ref": member_ref}, read)

    async def verify_member(self, member_ref: str, verification: str) -> Verification:
        check_member_ref(member_ref)

        def read(reply: Reply, result: Any) -> Verification:
            answer = reply.parse(Verification, result)
            _expect(reply, answer.member_ref == member_ref, "member_ref")
            return answer

        args = {"member_ref": member_ref, "verification": verification}
        return await self._call(Call.VERIFY_MEMBER, args, read)

    async def debit(self, operation_id: str, member_ref: str, points: int) -> Operation:
        return await self._move(Call.DEBIT, OperationKind.DEBIT, operation_id, member_ref, points)

    async def credit(self, operation_id: str, member_ref: str, points: int) -> Operation:
        return await self._move(Call.CREDIT, OperationKind.CREDIT, operation_id, member_ref, points)

    async def _move(
        self, call: Call, kind: OperationKind, operation_id: str, member_ref: str, points: int
    ) -> Operation:
        check_operation_id(operation_id)
        check_member_ref(member_ref)
        check_points(points)

        def read(reply: Reply, result: Any) -> Operation:
            operation = _operation(reply, result, operation_id, kind)
            _expect(reply, operation.member_ref == member_ref, "member_ref")
            _expect(reply, operation.points == points, "points")
            return operation

        args = {"operation_id": operation_id, "member_ref": member_ref, "points": points}
        return await self._call(call, args, read)

    async def reverse(self, operation_id: str, reverses: str, points: int | None = None) -> Operation:
        check_operation_id(operation_id)
        check_operation_id(reverses, "reverses")
        args: dict[str, Any] = {"operation_id": operation_id, "reverses": reverses}
        if points is not None:
            check_points(points)
            args["points"] = points

        def read(reply: Reply, result: Any) -> Operation:
            operation = _operation(reply, result, operation_id, OperationKind.REVERSAL)
            _expect(reply, operation.reverses == reverses, "reverses")
            target = operation.target
            _expect(reply, target is not None and target.operation_id == reverses, "target")
            assert target is not None
            # The saga takes this answer as the reversal done: the record must say it was.
            if target.status in (OperationState.VOIDED, OperationState.FAILED):
                _expect(reply, not operation.points, "points")  # nothing had moved: none back
            elif points is None:
                _expect(reply, target.status is OperationState.REVERSED, "target's status")
            else:
                _expect(reply, operation.points == points, "points")
            return operation

        return await self._call(Call.REVERSE, args, read)

    async def match_tier(self, operation_id: str, member_ref: str, tier: str, expires_at: datetime) -> Operation:
        check_operation_id(operation_id)
        check_member_ref(member_ref)
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")

        def read(reply: Reply, result: Any) -> Operation:
            operation = _operation(reply, result, operation_id, OperationKind.TIER_MATCH)
            _expect(reply, operation.member_ref == member_ref, "member_ref")
            _expect(reply, operation.tier == tier, "tier")
            _expect(reply, same_expiry(operation.expires_at, expires_at), "expires_at")
            # Answered at once: applied (the tier held), or a repeat of one reverted since (the
            # tier no longer held: the saga ends the match so); pending, failed or voided is no
            # answer a match can have.
            _expect(reply, operation.status in (OperationState.APPLIED, OperationState.REVERSED), "status")
            return operation

        args = {
            "operation_id": operation_id,
            "member_ref": member_ref,
            "tier": tier,
            "expires_at": expires_at.isoformat(),
        }
        return await self._call(Call.MATCH_TIER, args, read)

    async def operation_status(self, operation_id: str) -> Operation | None:
        check_operation_id(operation_id)

        def read(reply: Reply, result: Any) -> Operation | None:
            if result is None:
                return None
            operation = reply.parse(Operation, result)
            _expect(reply, operation.operation_id == operation_id, "operation_id")
            return operation

        return await self._call(Call.OPERATION_STATUS, {"operation_id": operation_id}, read)

    async def send_credits(self, batch_id: str, lines: Callable[[], AsyncIterator[bytes]]) -> None:
        check_operation_id(batch_id, "batch_id")
        request = HttpRequest(
            "PUT",
            f"{self.base_url}/batches/{quote(batch_id, safe='')}/credits",
            content=lines,
            media_type=batch_files.MEDIA_TYPE,
            timeout=FILE_TIMEOUT_SECONDS,
        )

        def read(reply: Reply) -> None:
            status = reply.response.status_code
            if 400 <= status < 500:
                problem = reply.parse(Problem, reply.json_object())
                raise_refusal(Call.SEND_CREDITS, reply, problem.code, problem.detail or problem.title or "", {})
            if not 200 <= status < 300:
                raise reply.error(PartnerProtocolError, f"unexpected status {status}")

        await self.client.call(CallInfo(Call.SEND_CREDITS.value, write=True, operation_id=batch_id), request, read)

    async def credit_results(self, batch_id: str) -> AsyncIterator[batch_files.ResultLine]:
        check_operation_id(batch_id, "batch_id")
        request = HttpRequest(
            "GET", f"{self.base_url}/batches/{quote(batch_id, safe='')}/results", timeout=FILE_TIMEOUT_SECONDS
        )
        info = CallInfo(Call.CREDIT_RESULTS.value, write=False, operation_id=batch_id)
        async with self.client.streamed(info, request) as reply:
            if reply.response.status_code == 404:
                return  # no result file yet
            if reply.response.status_code != 200:
                raise reply.error(PartnerProtocolError, f"unexpected status {reply.response.status_code}")
            number = columns = 0
            async for line in reply.lines(batch_files.MAX_LINE_CHARS):
                number += 1
                try:
                    if number == 1:
                        columns = batch_files.results_columns(line.rstrip("\r"))
                    elif line:
                        yield batch_files.parse_result(line, number, columns)
                except batch_files.MalformedLine as malformed:
                    raise reply.error(PartnerProtocolError, str(malformed)) from None


def _operation(reply: Reply, result: Any, operation_id: str, kind: OperationKind) -> Operation:
    if result is None:
        raise reply.error(PartnerProtocolError, "answer has no operation")
    operation = reply.parse(Operation, result)
    _expect(reply, operation.operation_id == operation_id, "operation_id")
    _expect(reply, operation.kind is kind, "kind")
    return operation


def _expect(reply: Reply, holds: bool, field: str) -> None:
    """An answer about another request than ours is as bad as a malformed one."""
    if not holds:
        raise reply.error(PartnerProtocolError, f"answer's {field} does not match the request")


def raise_refusal(call: Call, reply: Reply, code: object, detail: str, facts: dict[str, Any]) -> None:
    """Raise the refusal a partner gave with contract ``code`` (any flavour).

    Returns (meaning "no such operation") only for ``OPERATION_NOT_FOUND`` on a status
    lookup. A code the contract does not define is a protocol error: the outcome of a write
    that got one is unknown.
    """
    if call is Call.OPERATION_STATUS and code == ContractCode.OPERATION_NOT_FOUND:
        return
    kind = REFUSALS.get(code) if isinstance(code, str) else None  # type: ignore[call-overload]
    if kind is None:
        unknown = clipped(repr(code), 60)
        raise reply.error(PartnerProtocolError, f"refusal with an unknown code {unknown}: {clipped(detail)}")
    raise reply.refusal(kind, clipped(detail), facts)
