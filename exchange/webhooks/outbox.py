"""Writing events to the outbox, in the caller's unit of work.

The saga or service that changes a row calls :func:`emit` in the same unit of work, so the
event is committed with the change or not at all; nothing is sent from here. The delivery
worker (:mod:`exchange.webhooks.delivery`) picks events up afterwards, off the request path.
:func:`high_water` divides the events committed before a unit of work from those committed
after it (a new subscription receives the latter).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import CTE, Insert, Table, Update, bindparam, false, func, insert, literal, select, text
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


async def high_water(session: AsyncSession) -> int:
    """The sequence of the latest event committed (0: none), with the outbox closed to writers
    until ``session``'s unit of work ends: every event committed before it commits is at or
    below the mark, and every event committed after it above.

    Sequences are drawn as events are written, not as they commit, so a mark read without the
    lock would misplace an event written before it and committed after (a later sequence
    committed first is already counted). On PostgreSQL a SHARE lock on the table waits for
    every unit of work writing an event to end, and holds the next ones back (their sequences
    undrawn) until this one ends. On SQLite units of work already take turns."""
    if session.get_bind().dialect.name == "postgresql":
        await session.exec(text(f"LOCK TABLE {EVENTS.name} IN SHARE MODE"))  # type: ignore[call-overload]
    latest: int = (await session.exec(select(func.coalesce(func.max(EVENTS.c.sequence), 0)))).scalar_one()  # type: ignore[call-overload]
    return latest
