"""Shards: the rows postings lock, and where each posting's hash chain stands.

A posting locks one row of ``ledger_shard`` and holds it until its unit of work commits. The
shard's postings land one at a time, so each (shard, period) chain never forks, and the shard's
balance rows see one writer at a time; postings in other shards go on meanwhile. A posting takes
the first shard that no one holds, starting from its id's home shard (``FOR UPDATE SKIP
LOCKED``), and waits for its home shard only when every shard is held: postings spread over the
shards however their ids hash. Closing a period locks every shard (:func:`lock_all_shards`), so
nothing posts while a period switches to closing, and the chains' heads it records are final.

What a posting must know under the lock comes from the locked row itself (the latest period that
is closing or closed) or from statements issued after the lock was granted (the chain's last
link, the next seq numbers): on PostgreSQL a statement that waits for a row lock sees the row as
its holder committed it, but any other table as it was when the statement began, so a subquery
beside the lock could miss the previous holder's posting. On SQLite, where one writer runs at a
time, ``FOR UPDATE`` is dropped and the single connection gives the same order.

``seq`` numbers come from one sequence on PostgreSQL (drawn under the shard's lock, so they grow
along every chain; rolled-back postings leave gaps), from the largest seq on SQLite.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ARRAY, String, Table, bindparam, func, select, text, update
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db import direct
from exchange.ledger.models import GENESIS_HASH, LedgerChainHead, LedgerShard, LedgerTransaction

SHARDS: Table = LedgerShard.__table__  # type: ignore[attr-defined]
HEADS: Table = LedgerChainHead.__table__  # type: ignore[attr-defined]
TRANSACTIONS: Table = LedgerTransaction.__table__  # type: ignore[attr-defined]

_FREE = (
    select(SHARDS.c.id, SHARDS.c.last_closed)
    .where(SHARDS.c.id <= bindparam("shards"))
    .order_by((SHARDS.c.id - bindparam("home") + bindparam("shards")) % bindparam("shards"))
    .limit(1)
    .with_for_update(skip_locked=True)
)
_HOME = select(SHARDS.c.id, SHARDS.c.last_closed).where(SHARDS.c.id == bindparam("home")).with_for_update()
_ALL = select(SHARDS.c.id, SHARDS.c.last_closed).order_by(SHARDS.c.id).with_for_update()
#: The last links of a shard's chains in some periods, and ``count`` fresh seq numbers, at once.
_POSTGRES_STATE = text(
    """
    SELECT period, hash, NULL::bigint AS seq FROM ledger_chain_head WHERE shard = :shard AND period = ANY(:periods)
    UNION ALL
    SELECT NULL, NULL, nextval('ledger_transaction_seq') FROM generate_series(1, :count)
    """
).bindparams(bindparam("periods", type_=ARRAY(String)))


@dataclass(frozen=True, slots=True)
class LockedShard:
    id: int
    last_closed: str | None
    """The latest period that is closing or closed (``None``: none yet)."""


def home_shard(transaction_id: str, shards: int) -> int:
    """The shard a transaction id tries first: a stable hash of the id, the same in every process."""
    return int.from_bytes(hashlib.sha256(transaction_id.encode()).digest()[:8], "big") % shards + 1


async def lock_shard(session: AsyncSession, home: int, shards: int) -> LockedShard:
    """A shard among the first ``shards`` that no one holds, from ``home`` on; if all are held,
    ``home`` once its holder is done. Locked until ``session``'s unit of work ends."""
    params = {"home": home, "shards": shards}
    row = (await direct.execute(session, _FREE, params)).first()
    if row is None:
        row = (await direct.execute(session, _HOME, params)).one()
    return LockedShard(row.id, row.last_closed)


async def lock_all_shards(session: AsyncSession) -> list[LockedShard]:
    """Every shard, locked in id order (so two closers never deadlock) until the unit of work ends."""
    return [LockedShard(row.id, row.last_closed) for row in await session.exec(_ALL)]  # type: ignore[call-overload]


async def record_last_closed(session: AsyncSession, period: str) -> None:
    """Record on every shard that ``period``, later than any before, is now closing (the caller
    holds every shard's lock)."""
    await session.exec(update(SHARDS).values(last_closed=period))


async def chain_state(
    session: AsyncSession, shard: int, periods: Sequence[str], count: int
) -> tuple[dict[str, str], list[int]]:
    """Under ``shard``'s lock: the hash each of its chains in ``periods`` ends with (the genesis
    hash for a chain not begun), and ``count`` seq numbers for the transactions to post."""
    if session.get_bind().dialect.name == "postgresql":
        rows = (
            await direct.execute(session, _POSTGRES_STATE, {"shard": shard, "periods": list(periods), "count": count})
        ).all()
        ends = {row.period: row.hash for row in rows if row.period is not None}
        seqs = sorted(row.seq for row in rows if row.period is None)
    else:
        heads = await session.exec(  # type: ignore[call-overload]  # a Core select; sqlmodel types ORM ones
            select(HEADS.c.period, HEADS.c.hash).where(HEADS.c.shard == shard, HEADS.c.period.in_(list(periods)))
        )
        ends = dict(heads.all())
        last: int = (await session.exec(select(func.coalesce(func.max(TRANSACTIONS.c.seq), 0)))).scalar_one()  # type: ignore[call-overload]
        seqs = list(range(last + 1, last + 1 + count))
    return {period: ends.get(period, GENESIS_HASH) for period in periods}, seqs
