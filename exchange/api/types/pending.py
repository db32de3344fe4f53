"""GraphQL types of what waits on partners (settlement staff's to read): a write waiting for a
partner's late word, and a step a partner keeps failing."""

from __future__ import annotations

from datetime import datetime

import strawberry

from exchange.api.permissions import authorize_fields, requires
from exchange.auth.scopes import Scope
from exchange.services.late import WaitingWrite
from exchange.services.retrying import ATTENTION_AFTER, RetryingRow


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


@authorize_fields(requires(Scope.SETTLEMENT_READ))
@strawberry.type(
    description="A conversion, redemption or status match whose current step its partner has failed "
    f"{ATTENTION_AFTER} times or more: unreachable, an answer that never came, or a refusal where the "
    "contract allows none (a reversal refused). The exchange keeps asking, with back-off, and nothing "
    "moves until the partner answers otherwise: take it up with the partner."
)
class RetryingOperation:
    saga: str = strawberry.field(description="`conversion`, `redemption` or `status_match`.")
    id: strawberry.ID = strawberry.field(description="The conversion's, redemption's or status match's id.")
    program_id: strawberry.ID = strawberry.field(description="The program whose partner the step asks.")
    status: str = strawberry.field(description="The row's status (its saga's: PENDING, UPDATING, …).")
    step: str = strawberry.field(description="The step being retried, e.g. `REVERSE_DEBIT`, `CREDIT`, `REVERT`.")
    attempts: int = strawberry.field(description="Times the step has been tried and put off.")
    last_error: str = strawberry.field(description="Why the last attempt was put off, in the exchange's words.")
    since: datetime = strawberry.field(description="When the row last moved on: the step has failed since.")
    age_seconds: int = strawberry.field(description="How long since then, in whole seconds.")
    next_attempt_at: datetime = strawberry.field(description="When the exchange tries the step again.")

    @classmethod
    def of(cls, row: RetryingRow) -> RetryingOperation:
        return cls(
            saga=row.saga,
            id=strawberry.ID(row.id),
            program_id=strawberry.ID(row.program_id),
            status=row.status,
            step=row.step,
            attempts=row.attempts,
            last_error=row.last_error,
            since=row.since,
            age_seconds=int(row.age.total_seconds()),
            next_attempt_at=row.next_attempt_at,
        )
