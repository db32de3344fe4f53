"""Recording a saga's first row exactly once per client-chosen idempotency key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db.database import Database

Row = TypeVar("Row")

#: The longest idempotency key a client may choose (the key columns' length).
IDEMPOTENCY_KEY_LENGTH = 100


async def record_once(
    db: Database,
    record: Callable[[AsyncSession], Awaitable[tuple[Row, bool]]],
    find: Callable[[AsyncSession], Awaitable[Row | None]],
    same: Callable[[Row], Row],
) -> tuple[Row, bool]:
    """Run ``record`` (the row and whether it was created) in one unit of work.

    ``record`` looks for the key itself first; when another request inserts the same key
    between that look and the insert, the unique key refuses ours and the row ``find``
    returns is the answer — after ``same`` checked it was made for the same request
    (it raises ``IdempotencyConflict`` otherwise).
    """
    try:
        async with db.transaction() as session:
            return await record(session)
    except IntegrityError:
        async with db.transaction() as session:
            existing = await find(session)
        if existing is None:
            raise
        return same(existing), False
