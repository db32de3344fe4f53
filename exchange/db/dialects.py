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
