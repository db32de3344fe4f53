"""Ordering two real PostgreSQL sessions by the database's own locks, not by sleeps."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from exchange.db.database import Database

_WAITING = text(
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
)


async def waiting_on_a_lock(db: Database, sessions: int = 1) -> None:
    """Return once ``sessions`` other sessions of this database wait on a lock."""
    for _ in range(2000):
        async with db.autocommit() as session:
            if (await session.exec(_WAITING)).one()[0] >= sessions:  # type: ignore[call-overload]
                return
        await asyncio.sleep(0.005)  # polling for a state; the order is decided by the locks
    raise AssertionError(f"{sessions} other session(s) never waited on a lock")
