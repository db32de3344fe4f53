"""Rows of one query, grouped by their parent: how a batch (each program's tiers, each
member's linked accounts) comes back from the single query that read them all."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

Row = TypeVar("Row")
Key = TypeVar("Key", bound=Hashable)


def grouped(rows: Iterable[Row], key: Callable[[Row], Key]) -> dict[Key, list[Row]]:
    """``rows`` by ``key``, each group in the order the rows came (the query's ORDER BY);
    a key no row has is absent, not an empty list."""
    groups: dict[Key, list[Row]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return groups
