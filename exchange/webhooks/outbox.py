"""Writing events to the outbox, in the caller's unit of work.

The saga or service that changes a row calls :func:`emit` in the same unit of work, so the
event is committed with the change or not at all; nothing is sent from here. The delivery
worker (:mod:`exchange.webhooks.delivery`) picks events up afterwards, off the request path.
:func:`mark` divides the events committed before a unit of work from those committed after it
(a new subscription receives the latter).
"""

from __future__ import annotations

from dataclasses import dataclass
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


#: The advisory lock a unit of work making a subscription holds shared, from its mark until it
#: ends, and a fan-out exclusively ("WEBHOOKS"): the fan-out never passes an event by a
#: subscription whose mark is taken and that it cannot see yet.
SUBSCRIBING = 0x57454248_4F4F4B53


@dataclass(frozen=True, slots=True)
class Mark:
    """Where a new subscription starts: the events committed after it are after the mark.

    On PostgreSQL ``snapshot`` is the mark's (``xmin:xmax:xip,…``): an event is after it if the
    snapshot did not see the unit of work that wrote it committed (:func:`committed_before`).
    ``sequence`` is the latest event's sequence the mark saw committed: an event with no unit
    of work's id (written before revision 0053, or on SQLite, whose units of work take turns)
    is after the mark if its sequence is above it."""

    sequence: int
    snapshot: str | None


async def mark(session: AsyncSession) -> Mark:
    """The mark of a subscription made in ``session``'s unit of work: every event committed
    before it is before the mark, and every event committed after it, after.

    No unit of work writing an event waits for it: sequences are drawn as events are written,
    not as they commit, so a mark by sequence alone had to hold back every writer (a SHARE lock
    on the outbox) lest an event written before it commit after it; a snapshot tells which
    units of work had committed, whatever their sequences. What it waits for is a fan-out batch
    under way (:data:`SUBSCRIBING`); from the mark on, the fan-out leaves its passes to later
    ones until this unit of work ends (:func:`fan_out_turn`)."""
    if session.get_bind().dialect.name != "postgresql":
        return Mark(await _latest(session), None)
    await session.exec(select(func.pg_advisory_xact_lock_shared(SUBSCRIBING)))  # type: ignore[call-overload]
    # One statement, so its snapshot is the one the latest sequence was read in; taken after the
    # lock (each statement its own snapshot, READ COMMITTED), so no fan-out since has gone by.
    row = (
        await session.exec(  # type: ignore[call-overload]
            select(func.coalesce(func.max(EVENTS.c.sequence), 0), text("pg_current_snapshot()::text"))
        )
    ).one()
    return Mark(int(row[0]), str(row[1]))


async def _latest(session: AsyncSession) -> int:
    latest: int = (await session.exec(select(func.coalesce(func.max(EVENTS.c.sequence), 0)))).scalar_one()  # type: ignore[call-overload]
    return latest


async def fan_out_turn(session: AsyncSession) -> bool:
    """Whether ``session``'s unit of work may fan events out: on PostgreSQL, not while a
    subscription is being made (its mark taken, its row not yet committed, so unseen): it could
    be owed an event this pass would mark fanned out. The next pass does it; meanwhile no
    other fan-out runs either (the lock, held to the end, is exclusive)."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    taken: bool = (await session.exec(select(func.pg_try_advisory_xact_lock(SUBSCRIBING)))).scalar_one()  # type: ignore[call-overload]
    return taken


def committed_before(xact: int, snapshot: str) -> bool:
    """Whether the snapshot (``xmin:xmax:xip,…``, ``pg_current_snapshot()``'s text) saw the
    committed unit of work ``xact`` committed: it ended before the snapshot was taken (below
    ``xmin``, or below ``xmax`` and not in progress then), as ``pg_visible_in_snapshot``
    tells."""
    xmin, xmax, in_progress = snapshot.split(":")
    return xact < int(xmin) or (xact < int(xmax) and str(xact) not in in_progress.split(","))
