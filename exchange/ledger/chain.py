"""The chain head: the single row every posting locks first.

Holding its row lock orders all postings (the hash chain never forks) and anything else that
must not interleave with a posting, such as switching a settlement period to closing. The
lock lasts until the caller's unit of work ends. On SQLite, where one writer runs at a time,
the ``FOR UPDATE`` is dropped and the single connection gives the same order.
"""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.ledger.models import LedgerChainHead


async def lock_chain_head(session: AsyncSession) -> LedgerChainHead:
    """The chain head, locked until ``session``'s unit of work ends."""
    return (await session.exec(select(LedgerChainHead).where(LedgerChainHead.id == 1).with_for_update())).one()
