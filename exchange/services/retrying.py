"""For staff: the conversions, redemptions and status matches a partner keeps failing.

A step whose partner cannot be reached, whose answer is unknown, or who refuses where the
contract allows no refusal (a reversal refused: the member's account closed meanwhile, say) is
put off and asked again with back-off (:meth:`~exchange.sagas.engine.Saga.drive`), for as long
as it takes: the row holds its points where its last step left them, and nothing but the
partner's next answer moves it. Each put-off records why (``last_error``); a row asked
:data:`ATTENTION_AFTER` times or more is listed here, so that staff can take it up with the
partner instead of finding it in the logs. A step whose driving by the recovery worker keeps
raising an unexpected error (a bug of the exchange's) is put off the same way, its
``last_error`` beginning ``internal error:``, and is listed too: that one is for the exchange's
own engineers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, case, literal, select

from exchange.clock import Clock
from exchange.conversions.models import Conversion, SagaStep
from exchange.db.database import Database
from exchange.db.paging import Page
from exchange.rewards.models import Redemption
from exchange.sagas.state import DONE
from exchange.services.listings import oldest_first
from exchange.tiers.models import StatusMatch

CONVERSIONS: Table = Conversion.__table__  # type: ignore[attr-defined]
REDEMPTIONS: Table = Redemption.__table__  # type: ignore[attr-defined]
MATCHES: Table = StatusMatch.__table__  # type: ignore[attr-defined]

#: Attempts of one step after which a row is shown to staff: by then a partner's brief hiccup
#: (retried within seconds) has passed, and what remains needs a person or the partner.
ATTENTION_AFTER = 3
#: Most rows one listing returns.
MAX_LISTED = 500


@dataclass(frozen=True, slots=True)
class RetryingRow:
    """A saga row whose current step a partner keeps failing."""

    saga: str
    """``conversion``, ``redemption`` or ``status_match``."""
    id: str
    program_id: str
    """The program whose partner the step asks."""
    status: str
    step: str
    attempts: int
    last_error: str
    since: datetime
    """When the row last moved on: the step has been failing since about then."""
    age: timedelta
    next_attempt_at: datetime


def _failing(table: Table, saga: str, program: ColumnElement[Any]) -> Select[Any]:
    """``table``'s rows being retried often enough to be shown, in the listing's columns."""
    return select(
        literal(saga).label("saga"),
        table.c.id,
        program.label("program_id"),
        table.c.status,
        table.c.step,
        table.c.attempts,
        table.c.last_error,
        table.c.updated_at,
        table.c.next_attempt_at,
        table.c.created_at,
    ).where(table.c.step != DONE, table.c.attempts >= ATTENTION_AFTER, table.c.last_error.is_not(None))


@dataclass
class RetryingOperations:
    db: Database
    clock: Clock

    async def listed(
        self, *, first: int = 50, after: str | None = None, program_id: str | None = None
    ) -> Page[RetryingRow]:
        """A page of the rows failing, the oldest first (``first`` of them after the cursor
        ``after``), of every partner or of ``program_id``'s."""
        credit_step = CONVERSIONS.c.step.in_([SagaStep.CREDIT, SagaStep.AWAIT_CREDIT])
        parts = [
            _failing(
                CONVERSIONS,
                "conversion",
                case((credit_step, CONVERSIONS.c.to_program), else_=CONVERSIONS.c.from_program),
            ),
            _failing(REDEMPTIONS, "redemption", REDEMPTIONS.c.paying_program),
            _failing(MATCHES, "status_match", MATCHES.c.to_program),
        ]
        rows = await oldest_first(
            self.db,
            parts,
            name="retryingOperations",
            first=first,
            after=after,
            most=MAX_LISTED,
            program_id=program_id,
        )
        now = self.clock.now()
        failing = [
            RetryingRow(
                saga=saga,
                id=row_id,
                program_id=program,
                status=status,
                step=step,
                attempts=attempts,
                last_error=last_error,
                since=since,
                age=now - since,
                next_attempt_at=next_attempt,
            )
            for saga, row_id, program, status, step, attempts, last_error, since, next_attempt, _ in rows.items
        ]
        return Page(failing, rows.next_cursor)
