"""Staff listings that gather rows of several saga tables into one, oldest first: the writes
waiting for a partner's word (:mod:`exchange.services.late`) and the steps a partner keeps
failing (:mod:`exchange.services.retrying`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, select, union_all

from exchange.db.database import Database
from exchange.db.paging import Keyset, Page, read_page
from exchange.errors import BadUserInput
from exchange.programs.service import get_program


async def oldest_first(
    db: Database,
    parts: Sequence[Select[Any]],
    *,
    name: str,
    first: int,
    after: str | None,
    most: int,
    program_id: str | None,
) -> Page[Any]:
    """A page of the rows of ``parts`` (selects with the same columns, among them ``id``,
    ``program_id`` and ``created_at``), the oldest first, after the cursor ``after`` (the
    listing ``name``'s), of every program or of ``program_id``'s (``NOT_FOUND`` naming
    ``programId`` when no program has it). ``first`` must be from 1 to ``most`` (else
    ``BadUserInput`` naming it).

    Ordered by ``created_at`` then ``id``, which never change: a row updated while the listing
    is walked (each retry, each poll updates it) keeps its place, so a walk shows it once,
    neither twice (moved behind the cursor's end) nor never (moved before it)."""
    if not 1 <= first <= most:
        raise BadUserInput(f"first must be between 1 and {most}", field="first")
    rows = union_all(*parts).subquery()
    statement = select(rows)
    if program_id is not None:
        statement = statement.where(rows.c.program_id == program_id)
    keyset = Keyset(name, (rows.c.created_at, rows.c.id), descending=False)
    async with db.autocommit() as session:  # reads only: no transaction around them
        if program_id is not None:  # a mistyped id is NOT_FOUND, not an empty listing
            await get_program(session, program_id, field="programId")
        return await read_page(session, statement, keyset, scope=program_id, first=first, after=after)
