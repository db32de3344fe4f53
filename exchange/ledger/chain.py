"""The chain head: the single row every posting locks first.

Holding its row lock orders all postings (the hash chain never forks) and anything else that
must not interleave with a posting, such as switching a settlement period to closing. The
lock lasts until the caller's unit of work ends. On SQLite, where one writer runs at a time,
the ``FOR UPDATE`` is dropped and the single connection gives the same order.

What a posting must know under the lock lives on the row itself: the last transaction's seq
and hash (the database moves them as transactions are inserted), and the latest period that
is closing or closed. On PostgreSQL a statement that waits for a row lock
sees the row as its holder committed it, but any other table as it was when the statement
began; so the locked row, not a subquery beside it, is what a posting may trust.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Table, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.ledger.models import LedgerChainHead

HEAD: Table = LedgerChainHead.__table__  # type: ignore[attr-defined]
_LOCK = select(HEAD.c.seq, HEAD.c.hash, HEAD.c.last_closed).where(HEAD.c.id == 1).with_for_update()


@dataclass(frozen=True, slots=True)
class ChainHead:
    seq: int
    hash: str
    last_closed: str | None
    """The latest period that is closing or closed (``None``: none yet)."""


async def lock_chain_head(session: AsyncSession) -> ChainHead:
    """The chain head, locked until ``session``'s unit of work ends."""
    row = (await session.exec(_LOCK)).one()  # type: ignore[call-overload]  # a Core select; sqlmodel types ORM ones
    return ChainHead(row.seq, row.hash, row.last_closed)


async def record_last_closed(session: AsyncSession, period: str) -> None:
    """Record that ``period``, later than any before, is now closing (the caller holds the lock)."""
    await session.exec(update(HEAD).where(HEAD.c.id == 1).values(last_closed=period))
