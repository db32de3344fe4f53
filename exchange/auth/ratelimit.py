"""Rate limiting failed client authentications, per client id, across every replica.

Each client id has a window that opens with its first failure; once ``limit`` failures fall
in it, the OAuth endpoints refuse that client (even with the right secret) until the window
closes. The count lives in the database so that replicas behind a load balancer share it;
the increment is one atomic upsert, so concurrent failures are all counted.
"""

from __future__ import annotations

import math
from collections.abc import Set
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, literal
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.auth.models import ClientAuthFailure
from exchange.db import dialects
from exchange.db.types import UTCDateTime

#: Longer ids cannot name a client; they are not counted (nor stored).
CLIENT_ID_MAX_LENGTH = 64


@dataclass(frozen=True)
class FailureLimit:
    failures: int
    window: timedelta


async def retry_after(session: AsyncSession, client_ids: Set[str], limit: FailureLimit, now: datetime) -> int | None:
    """Seconds until a request naming ``client_ids`` may try again (the longest wait of any
    of them), or ``None`` if it may try now."""
    rows = await session.exec(
        select(ClientAuthFailure).where(
            col(ClientAuthFailure.client_id).in_(list(client_ids)),
            col(ClientAuthFailure.failures) >= limit.failures,
        )
    )
    remaining = max(((row.window_started_at + limit.window - now).total_seconds() for row in rows), default=0)
    return math.ceil(remaining) if remaining > 0 else None


async def record_failures(session: AsyncSession, client_ids: Set[str], limit: FailureLimit, now: datetime) -> None:
    """Count one failed authentication against each of ``client_ids``, in a fixed order so
    that concurrent failures naming the same clients never deadlock."""
    for client_id in sorted(client_ids):
        await record_failure(session, client_id, limit, now)


async def record_failure(session: AsyncSession, client_id: str, limit: FailureLimit, now: datetime) -> None:
    """Count one failed authentication of ``client_id`` (a new window if the last closed)."""
    if len(client_id) > CLIENT_ID_MAX_LENGTH:
        return
    window_closed_before = now - limit.window
    table = ClientAuthFailure.__table__  # type: ignore[attr-defined]
    expired = table.c.window_started_at <= literal(window_closed_before, UTCDateTime())
    await session.exec(
        delete(ClientAuthFailure).where(
            col(ClientAuthFailure.window_started_at) <= window_closed_before,
            col(ClientAuthFailure.client_id) != client_id,
        )
    )
    await session.exec(
        dialects.insert(session, ClientAuthFailure)
        .values(client_id=client_id, window_started_at=now, failures=1)
        .on_conflict_do_update(
            index_elements=["client_id"],
            set_={
                "failures": case((expired, 1), else_=table.c.failures + 1),
                "window_started_at": case((expired, literal(now, UTCDateTime())), else_=table.c.window_started_at),
            },
        )
    )
