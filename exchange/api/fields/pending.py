"""What waits on partners, settlement staff's view: writes waiting for a partner's late word,
and steps a partner keeps failing."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.permissions import authorize, requires
from exchange.api.types.pages import After, Page, replaced_by_page
from exchange.api.types.pending import PendingOperation, RetryingOperation
from exchange.auth.scopes import Scope
from exchange.services.late import MAX_WAITING
from exchange.services.retrying import MAX_LISTED

WaitingFirst = Annotated[
    int, strawberry.argument(description=f"How many, from 1 to {MAX_WAITING} (else `BAD_USER_INPUT`).")
]
FailingFirst = Annotated[
    int, strawberry.argument(description=f"How many, from 1 to {MAX_LISTED} (else `BAD_USER_INPUT`).")
]
WaitingOn = Annotated[
    strawberry.ID | None, strawberry.argument(description="Only this partner's; null: every partner's.")
]
FailingAt = Annotated[
    strawberry.ID | None,
    strawberry.argument(description="Only the steps that ask this partner; null: every partner's."),
]


async def _waiting(
    info: Info[Context, None], first: int, after: str | None, program_id: strawberry.ID | None
) -> Page[PendingOperation]:
    waiting = await info.context.services.late.waiting(
        first=first, after=after, program_id=None if program_id is None else str(program_id)
    )
    return Page.of(waiting, PendingOperation.of)


async def _failing(
    info: Info[Context, None], first: int, after: str | None, program_id: strawberry.ID | None
) -> Page[RetryingOperation]:
    failing = await info.context.services.retrying.listed(
        first=first, after=after, program_id=None if program_id is None else str(program_id)
    )
    return Page.of(failing, RetryingOperation.of)


@strawberry.type
class PendingQueries:
    @strawberry.field(
        description="Debits and credits waiting for a partner's late word, the oldest first (`first` of "
        "them, at most 500), of every partner or of `programId`: settlement staff.",
        extensions=[authorize(requires(Scope.SETTLEMENT_READ))],
        deprecation_reason=replaced_by_page("pendingOperationPage"),
    )
    async def pending_operations(
        self, info: Info[Context, None], first: WaitingFirst = 50, program_id: WaitingOn = None
    ) -> list[PendingOperation] | None:
        return (await _waiting(info, first, None, program_id)).items

    @strawberry.field(
        description="Debits and credits waiting for a partner's late word, the oldest first (by when each "
        "conversion or redemption was made, so that one updated while the list is walked keeps its place): "
        "`first` of them after the cursor `after`, of every partner or of `programId`: settlement staff.",
        extensions=[authorize(requires(Scope.SETTLEMENT_READ))],
    )
    async def pending_operation_page(
        self,
        info: Info[Context, None],
        first: WaitingFirst = 50,
        after: After = None,
        program_id: WaitingOn = None,
    ) -> Page[PendingOperation] | None:
        return await _waiting(info, first, after, program_id)

    @strawberry.field(
        description="Conversions, redemptions and status matches whose current step their partner keeps "
        "failing, the oldest first (`first` of them), of every partner or of `programId`: "
        "settlement staff.",
        extensions=[authorize(requires(Scope.SETTLEMENT_READ))],
        deprecation_reason=replaced_by_page("retryingOperationPage"),
    )
    async def retrying_operations(
        self, info: Info[Context, None], first: FailingFirst = 50, program_id: FailingAt = None
    ) -> list[RetryingOperation] | None:
        return (await _failing(info, first, None, program_id)).items

    @strawberry.field(
        description="Conversions, redemptions and status matches whose current step their partner keeps "
        "failing, the oldest first (by when each was made, so that one updated while the list is walked keeps "
        "its place): `first` of them after the cursor `after`, of every partner or of `programId`: settlement "
        "staff.",
        extensions=[authorize(requires(Scope.SETTLEMENT_READ))],
    )
    async def retrying_operation_page(
        self,
        info: Info[Context, None],
        first: FailingFirst = 50,
        after: After = None,
        program_id: FailingAt = None,
    ) -> Page[RetryingOperation] | None:
        return await _failing(info, first, after, program_id)
