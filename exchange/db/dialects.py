"""Statements whose spelling differs between PostgreSQL and SQLite.

Both support ``INSERT … ON CONFLICT`` with the same SQLAlchemy API; only the construct's
module differs. Conflict clauses let concurrent writers race safely on a unique key
instead of reading, checking and writing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlmodel.ext.asyncio.session import AsyncSession

Insert = postgresql.Insert | sqlite.Insert


def insert(session: AsyncSession, table: Any) -> Insert:
    """An ``INSERT`` into ``table`` that accepts ``on_conflict_do_nothing/do_update``."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def insert_once(session: AsyncSession, row: Any) -> bool:
    """``INSERT`` the model ``row`` unless its primary key is taken; whether it was inserted.

    For a key the client chooses: reading whether it is free and then adding the row lets two
    requests both find it free, and the second fails on the primary key. Here the database
    decides (a concurrent writer of the same key waits for the first to commit or roll back),
    and a taken key leaves the row that holds it as it is.
    """
    table = type(row).__table__
    key = list(table.primary_key.columns)
    statement = (
        insert(session, table)
        .values({column.name: getattr(row, column.name) for column in table.columns})
        .on_conflict_do_nothing(index_elements=[column.name for column in key])
        .returning(*key)
    )
    return (await session.exec(statement)).first() is not None


@asynccontextmanager
async def lock_wait(session: AsyncSession, wait: timedelta) -> AsyncIterator[None]:
    """Statements inside wait at most ``wait`` for a lock another transaction holds, then fail
    with an error :func:`lock_not_available` tells apart (PostgreSQL's ``lock_timeout``, for
    this transaction only; SQLite takes no row locks to wait for). Past the block, statements
    wait as long as it takes again."""
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    # SET takes no bound parameters; the number is the exchange's own.
    await session.exec(text(f"SET LOCAL lock_timeout = '{round(wait.total_seconds() * 1000)}ms'"))  # type: ignore[call-overload]
    yield
    await session.exec(text("SET LOCAL lock_timeout TO DEFAULT"))  # type: ignore[call-overload]


def lock_not_available(error: DBAPIError) -> bool:
    """Whether ``error`` is a lock :func:`lock_wait` gave up waiting for (SQLSTATE 55P03)."""
    return isinstance(error.orig, psycopg.errors.LockNotAvailable)
