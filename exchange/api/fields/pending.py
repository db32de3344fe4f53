"""What waits for partners that answer later: settlement staff's view."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.permissions import authorize, requires
from exchange.api.types.pending import PendingOperation
from exchange.auth.scopes import Scope
from exchange.services.late import MAX_WAITING


@strawberry.type
class PendingQueries:
    @strawberry.field(
        description="Debits and credits waiting for a partner's late word, oldest first (`first` of "
        "them, at most 500), of every partner or of `programId`: settlement staff.",
        extensions=[authorize(requires(Scope.SETTLEMENT_READ))],
    )
    async def pending_operations(
        self,
        info: Info[Context, None],
        first: Annotated[
            int, strawberry.argument(description=f"How many, from 1 to {MAX_WAITING} (else `BAD_USER_INPUT`).")
        ] = 50,
        program_id: Annotated[
            strawberry.ID | None, strawberry.argument(description="Only this partner's; null: every partner's.")
        ] = None,
    ) -> list[PendingOperation] | None:
        waiting = await info.context.services.late.waiting(
            first=first, program_id=None if program_id is None else str(program_id)
        )
        return [PendingOperation.of(write) for write in waiting]
