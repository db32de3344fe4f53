"""GraphQL type of a write waiting for a partner's late word (settlement staff's to read)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from exchange.api.permissions import authorize_fields, requires
from exchange.auth.scopes import Scope
from exchange.services.late import WaitingWrite


@authorize_fields(requires(Scope.SETTLEMENT_READ))
@strawberry.type(
    description="A debit or credit a partner answered 'accepted, pending' (or a credit waiting for a "
    "batch partner's file): the saga waits for the partner's callback or result file, and polls it "
    "with back-off meanwhile."
)
class PendingOperation:
    saga: str = strawberry.field(description="`conversion` or `redemption`.")
    id: strawberry.ID = strawberry.field(description="The conversion's or redemption's id.")
    program_id: strawberry.ID = strawberry.field(description="The program whose partner's word is awaited.")
    operation_id: str = strawberry.field(description="The operation id the partner knows the write by.")
    step: str = strawberry.field(description="`AWAIT_DEBIT` or `AWAIT_CREDIT`.")
    points: int = strawberry.field(description="The points the debit or credit moves.")
    waiting_since: datetime = strawberry.field(description="When the partner's answer left it pending.")
    age_seconds: int = strawberry.field(description="How long it has waited, in whole seconds.")
    polls: int = strawberry.field(description="Times the exchange has asked the partner since.")
    next_poll_at: datetime = strawberry.field(description="When the exchange asks next, if no word comes.")

    @classmethod
    def of(cls, write: WaitingWrite) -> PendingOperation:
        return cls(
            saga=write.saga,
            id=strawberry.ID(write.id),
            program_id=strawberry.ID(write.program_id),
            operation_id=write.operation_id,
            step=write.step,
            points=write.points,
            waiting_since=write.waiting_since,
            age_seconds=int(write.age.total_seconds()),
            polls=write.polls,
            next_poll_at=write.next_poll_at,
        )
