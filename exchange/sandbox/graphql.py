"""The GraphQL transport of the contract; ``partners/contract.graphql`` is its exported SDL.

Same service, same rules as REST. A refusal is a GraphQL error whose ``extensions.code`` is
the contract code (with the same facts REST puts in its problem document).
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from enum import Enum
from typing import Any, NewType

import strawberry
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from strawberry.asgi import GraphQL
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext, Info

from exchange.connectors import contract
from exchange.connectors.contract import MAX_POINTS
from exchange.sandbox.faults import FaultInjected
from exchange.sandbox.points import Refusal
from exchange.sandbox.service import PartnerService

logger = logging.getLogger("exchange.sandbox")


def _parse_points(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_POINTS:
        raise ValueError(f"Points must be a whole number from 0 to {MAX_POINTS}, got {value!r}")
    return value


Points = NewType("Points", int)

POINTS_SCALAR = strawberry.scalar(
    name="Points",
    description="A whole number of points: a JSON integer (never a float or a string), "
    f"from 0 to {MAX_POINTS} (2^53 - 1).",
    serialize=int,
    parse_value=_parse_points,
)


def _points(value: int | None) -> Points | None:
    return None if value is None else Points(value)


@strawberry.enum(description="What an operation does.")
class OperationKind(Enum):
    DEBIT = "debit"
    CREDIT = "credit"
    REVERSAL = "reversal"
    TIER_MATCH = "tier_match"


@strawberry.enum(description="Where an operation stands.")
class OperationStatus(Enum):
    APPLIED = strawberry.enum_value("applied", description="In effect (see reversedPoints).")
    REVERSED = strawberry.enum_value("reversed", description="Wholly undone by reversals.")
    VOIDED = strawberry.enum_value(
        "voided", description="Never applied, and refused if it arrives: a reversal came first."
    )
    PENDING = strawberry.enum_value(
        "pending", description="A debit or credit accepted, to be settled later: it becomes APPLIED or FAILED."
    )
    FAILED = strawberry.enum_value(
        "failed", description="Accepted pending, then not applied: nothing moved, and the id is spent."
    )


@strawberry.enum(description="Whether the account may take part in transfers, and if not, why not.")
class Eligibility(Enum):
    ELIGIBLE = "eligible"
    INACTIVE = "inactive"
    SUSPENDED = "suspended"
    NOT_ACTIVATED = "not_activated"
    TIER_NOT_ALLOWED = "tier_not_allowed"


@strawberry.type(description="Points of the balance that lapse at the end of a day unless spent.")
class ExpiringPoints:
    points: Points
    expires_on: date


@strawberry.type(description="A member's balance, tier and points about to expire.")
class MemberAccount:
    member_ref: str
    balance: Points
    tier: str = strawberry.field(description="The program's own name of the member's tier now (at most 60 characters).")
    tier_expires_at: datetime | None = strawberry.field(
        description="When a status-match tier lapses; null for the member's own tier."
    )
    expiring: list[ExpiringPoints]

    @classmethod
    def of(cls, account: contract.MemberAccount) -> MemberAccount:
        return cls(
            member_ref=account.member_ref,
            balance=Points(account.balance),
            tier=account.tier,
            tier_expires_at=account.tier_expires_at,
            expiring=[ExpiringPoints(points=Points(lot.points), expires_on=lot.expires_on) for lot in account.expiring],
        )


@strawberry.type(description="Whether a verification value belongs to the member.")
class Verification:
    member_ref: str
    verified: bool
    name: str | None = strawberry.field(
        description="The member's name as the partner has it; null unless verified (or if none is kept)."
    )
    eligibility: Eligibility


@strawberry.type(
    description="A debit, credit, reversal or tier match as the partner recorded it. A voided id has kind null."
)
class Operation:
    operation_id: str
    kind: OperationKind | None
    status: OperationStatus
    member_ref: str | None
    points: Points | None = strawberry.field(
        description="Points moved; for a reversal, the points it reversed (0 for a void)."
    )
    reversed_points: Points = strawberry.field(description="How much of this debit or credit reversals have undone.")
    balance_after: Points | None = strawberry.field(
        description="The member's balance right after this operation applied."
    )
    reverses: str | None = strawberry.field(description="The operation a reversal undoes.")
    target: Operation | None = strawberry.field(
        description="For a reversal: the operation it undoes, as it now stands."
    )
    tier: str | None
    expires_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, operation: contract.Operation) -> Operation:
        return cls(
            operation_id=operation.operation_id,
            kind=None if operation.kind is None else OperationKind(operation.kind.value),
            status=OperationStatus(operation.status.value),
            member_ref=operation.member_ref,
            points=_points(operation.points),
            reversed_points=Points(operation.reversed_points),
            balance_after=_points(operation.balance_after),
            reverses=operation.reverses,
            target=None if operation.target is None else cls.of(operation.target),
            tier=operation.tier,
            expires_at=operation.expires_at,
            created_at=operation.created_at,
        )


def _service(info: Info[dict[str, Any], None]) -> PartnerService:
    service: PartnerService = info.context["service"]
    return service


def _refused(refusal: Refusal) -> GraphQLError:
    return GraphQLError(refusal.detail, extensions={"code": refusal.code.value, **refusal.facts})


@strawberry.type
class Query:
    @strawberry.field(description="The member's account; error UNKNOWN_MEMBER if there is none.")
    async def member(self, info: Info[dict[str, Any], None], member_ref: str) -> MemberAccount:
        try:
            return MemberAccount.of(await _service(info).account(member_ref))
        except Refusal as refusal:
            raise _refused(refusal) from None

    @strawberry.field(description="Whether `verification` is the member's; error UNKNOWN_MEMBER if there is none.")
    async def verify_member(self, info: Info[dict[str, Any], None], member_ref: str, verification: str) -> Verification:
        try:
            result = await _service(info).verify(member_ref, verification)
        except Refusal as refusal:
            raise _refused(refusal) from None
        return Verification(
            member_ref=result.member_ref,
            verified=result.verified,
            name=result.name,
            eligibility=Eligibility(result.eligibility.value),
        )

    @strawberry.field(description="The operation with this id, or null if the partner has none.")
    async def operation(self, info: Info[dict[str, Any], None], operation_id: str) -> Operation | None:
        result = await _service(info).operation(operation_id)
        return None if result is None else Operation.of(result)


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Take points from a member, once per operation id.")
    async def debit(
        self, info: Info[dict[str, Any], None], operation_id: str, member_ref: str, points: Points
    ) -> Operation:
        try:
            written = await _service(info).debit(operation_id, member_ref, points)
        except Refusal as refusal:
            raise _refused(refusal) from None
        return Operation.of(written.operation)

    @strawberry.mutation(description="Give points to a member, once per operation id.")
    async def credit(
        self, info: Info[dict[str, Any], None], operation_id: str, member_ref: str, points: Points
    ) -> Operation:
        try:
            written = await _service(info).credit(operation_id, member_ref, points)
        except Refusal as refusal:
            raise _refused(refusal) from None
        return Operation.of(written.operation)

    @strawberry.mutation(description="Undo an operation: what is left of it, or `points` of it; voids an unknown id.")
    async def reverse(
        self, info: Info[dict[str, Any], None], operation_id: str, reverses: str, points: Points | None = None
    ) -> Operation:
        try:
            written = await _service(info).reverse(operation_id, reverses, points)
        except Refusal as refusal:
            raise _refused(refusal) from None
        return Operation.of(written.operation)

    @strawberry.mutation(description="Give a member a tier until `expiresAt` (a status match).")
    async def match_tier(
        self, info: Info[dict[str, Any], None], operation_id: str, member_ref: str, tier: str, expires_at: datetime
    ) -> Operation:
        try:
            written = await _service(info).match_tier(operation_id, member_ref, tier, expires_at)
        except Refusal as refusal:
            raise _refused(refusal) from None
        return Operation.of(written.operation)


class _ContractSchema(strawberry.Schema):
    """Logs only failures that are bugs: refusals and injected faults are the sandbox working."""

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        for error in errors:
            if error.original_error is not None and not isinstance(error.original_error, (GraphQLError, FaultInjected)):
                logger.error("sandbox GraphQL error in %s", error.path, exc_info=error.original_error)


def build_contract_schema() -> strawberry.Schema:
    return _ContractSchema(query=Query, mutation=Mutation, config=StrawberryConfig(scalar_map={Points: POINTS_SCALAR}))


class ContractGraphQL(GraphQL[dict[str, Any], None]):
    """The contract's GraphQL endpoint for one sandbox (no GraphiQL: it is a machine API)."""

    def __init__(self, service: PartnerService) -> None:
        super().__init__(build_contract_schema(), graphql_ide=None, allow_queries_via_get=False)
        self.service = service

    async def get_context(self, request: Request, response: Response) -> dict[str, Any]:  # type: ignore[override]  # an HTTP Route serves it: never a WebSocket
        return {"service": self.service, "request": request, "response": response}
