"""Writing events to the outbox, in the caller's unit of work.

The saga or service that changes a row calls :func:`emit` in the same unit of work, so the
event is committed with the change or not at all; nothing is sent from here. The delivery
worker (:mod:`exchange.webhooks.delivery`) picks events up afterwards, off the request path.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import CTE, Insert, Table, Update, bindparam, false, insert, literal, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.webhooks.events import Event
from exchange.webhooks.models import WebhookEvent

EVENTS: Table = WebhookEvent.__table__  # type: ignore[attr-defined]
#: The columns an event fills (``sequence`` comes from the database, ``fanned_out`` starts false).
COLUMNS = ("id", "type", "object", "programs", "body", "occurred_at")


def columns(event: Event) -> dict[str, Any]:
    """The outbox row of ``event``, by column."""
    return {
        "id": event.id,
        "type": event.type.value,
        "object": event.object,
        "programs": list(event.programs) if event.programs is not None else None,
        "body": event.body(),
        "occurred_at": event.occurred_at,
    }


async def emit(session: AsyncSession, *events: Event | None) -> None:
    """Add ``events`` (``None``s are skipped: a transition that reports nothing) to the outbox."""
    for event in events:
        if event is not None:
            session.add(WebhookEvent(**columns(event)))


@lru_cache(maxsize=64)
def after(change: Update) -> Insert:
    """PostgreSQL: ``change`` (an update of one row), and the event of parameters
    ``event_<column>`` written to the outbox if it changed the row, in one statement that
    returns a row (the event's sequence) if it did. Built once per update."""
    changed: CTE = change.returning(literal(1)).cte("changed")
    row = select(*(bindparam(f"event_{name}", type_=EVENTS.c[name].type) for name in COLUMNS), false())
    return (
        insert(EVENTS)
        .from_select([*COLUMNS, "fanned_out"], row.select_from(changed))
        .add_cte(changed)
        .returning(EVENTS.c.sequence)
    )
