"""Writing events to the outbox, in the caller's unit of work.

The saga or service that changes a row calls :func:`emit` in the same unit of work, so the
event is committed with the change or not at all; nothing is sent from here. The delivery
worker (:mod:`exchange.webhooks.delivery`) picks events up afterwards, off the request path.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.webhooks.events import Event
from exchange.webhooks.models import WebhookEvent


async def emit(session: AsyncSession, *events: Event | None) -> None:
    """Add ``events`` (``None``s are skipped: a transition that reports nothing) to the outbox."""
    for event in events:
        if event is None:
            continue
        session.add(
            WebhookEvent(
                id=event.id,
                type=event.type.value,
                object=event.object,
                programs=list(event.programs) if event.programs is not None else None,
                body=event.body(),
                occurred_at=event.occurred_at,
            )
        )
