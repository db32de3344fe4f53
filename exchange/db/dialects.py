"""Statements whose spelling differs between PostgreSQL and SQLite.

Both support ``INSERT … ON CONFLICT`` with the same SQLAlchemy API; only the construct's
module differs. Conflict clauses let concurrent writers race safely on a unique key
instead of reading, checking and writing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
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
