"""Rows of one query, grouped by their parent: how a batch (each program's tiers, each
member's linked accounts) comes back from the single query that read them all; and the
query that reads each parent's first page of children at once."""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable, Iterator
from typing import Any, TypeVar

from sqlalchemy import CompoundSelect, Select, union_all
from sqlalchemy import select as select_columns
from sqlalchemy.orm import aliased
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

Row = TypeVar("Row")
Key = TypeVar("Key", bound=Hashable)
Model = TypeVar("Model", bound=SQLModel)

#: How many parents' pages one statement of :func:`page_per_parent` unites: SQLite compounds
#: at most 500 SELECTs.
PAGES_PER_STATEMENT = 500


def grouped(rows: Iterable[Row], key: Callable[[Row], Key]) -> dict[Key, list[Row]]:
    """``rows`` by ``key``, each group in the order the rows came (the query's ORDER BY);
    a key no row has is absent, not an empty list."""
    groups: dict[Key, list[Row]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return groups


def page_per_parent(parents: Collection[Key], page: Callable[[Key], Select[Any]]) -> Iterator[CompoundSelect[Any]]:
    """Each of ``parents``' page of children (``page(parent)``, a limited, ordered query of one
    parent's rows), :data:`PAGES_PER_STATEMENT` parents at a time, as one ``UNION ALL`` each:
    every parent's part reads its own first rows by index and stops at its limit, where a
    window numbering every parent's rows would read (and sort) all of them to keep a page."""
    ordered = list(dict.fromkeys(parents))
    for start in range(0, len(ordered), PAGES_PER_STATEMENT):
        # Each part as a subquery: SQLite takes no ORDER BY or LIMIT on a compound's own parts.
        parts = [page(parent).subquery() for parent in ordered[start : start + PAGES_PER_STATEMENT]]
        yield union_all(*(select_columns(part) for part in parts))


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
    """A page of ``model``'s rows for each of ``parents`` (:func:`page_per_parent`): by the
    unique-within-a-parent column ``order``, ``first`` of them after ``after``, grouped by the
    ``parent`` column. ``first`` is the caller's to check."""

    def page(key: str) -> Select[Any]:
        statement = select(model).where(parent == key)
        if after is not None:
            statement = statement.where(order > after)
        return statement.order_by(order).limit(first)

    found: list[Model] = []
    for pages in page_per_parent(list(parents), page):
        united = pages.subquery()
        row = aliased(model, united)
        found.extend(await session.exec(select(row).order_by(united.c[parent.key], united.c[order.key])))
    return grouped(found, lambda one: getattr(one, parent.key))
