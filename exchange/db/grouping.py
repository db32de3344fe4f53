"""Rows of one query, grouped by their parent: how a batch (each program's tiers, each
member's linked accounts) comes back from the single query that read them all."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

from sqlalchemy import func
from sqlalchemy.orm import aliased
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

Row = TypeVar("Row")
Key = TypeVar("Key", bound=Hashable)
Model = TypeVar("Model", bound=SQLModel)


def grouped(rows: Iterable[Row], key: Callable[[Row], Key]) -> dict[Key, list[Row]]:
    """``rows`` by ``key``, each group in the order the rows came (the query's ORDER BY);
    a key no row has is absent, not an empty list."""
    groups: dict[Key, list[Row]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return groups


async def pages_by_parent(
    session: AsyncSession,
    model: type[Model],
    parent: Any,
    order: Any,
    parents: Iterable[str],
    *,
    first: int,
    after: str | None,
) -> dict[str, list[Model]]:
    """A page of ``model``'s rows for each of ``parents`` in one query (a window per parent):
    by the unique-within-a-parent column ``order``, ``first`` of them after ``after``, grouped
    by the ``parent`` column. ``first`` is the caller's to check."""
    statement = select(model, func.row_number().over(partition_by=parent, order_by=order).label("rank")).where(
        parent.in_(list(parents))
    )
    if after is not None:
        statement = statement.where(order > after)
    ranked = statement.subquery()
    row = aliased(model, ranked)
    rows = await session.exec(
        select(row).where(ranked.c.rank <= first).order_by(ranked.c[parent.key], ranked.c[order.key])
    )
    return grouped(rows, lambda found: getattr(found, parent.key))
