"""``exchange ledger verify``: recompute everything the ledger claims, and name the first lie.

Five checks, in this order: every transaction balances per unit and has at least two legs
(set-based SQL); every (shard, period) hash chain, recomputed from the stored rows in order,
links from its genesis to its head (a stream over the transactions, constant memory), and no
head lacks its rows; the close anchors, recomputed from the heads of each closed period's chains,
link from the genesis hash to the latest close, and no closed period lacks its anchor; every
money transaction is a star and every leg names the counterparty its transaction's legs give it
(set-based SQL, by the rule of ``exchange.ledger.stars``; the column is outside the hash, so this
is what vouches for it); and every account's running balance in each shard equals the sum of its
entries there, plus what archived periods moved (set-based SQL).

So a transaction deleted, altered, inserted or moved in any shard breaks its chain's links, its
hashes or its head; a head rewritten to hide it breaks the period's anchor once the period is
closing; an anchor rewritten breaks the anchors after it.

**Archived periods** (``exchange ledger archive``): their rows are no longer in the ledger's
tables, so verify cannot recompute their chains. It proves that their chains' heads are the ones
their close anchor recorded when the period closed, and that this anchor is in the anchor chain;
an archive of the period's rows is then proven by recomputing its chains to those heads (the
archive's rows, streamed through the same checks).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, text
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db.types import UTCDateTime
from exchange.ledger.hashing import anchor_digest, anchor_heads, chain_digest, request_digest
from exchange.ledger.models import GENESIS_HASH
from exchange.ledger.stars import COUNTERPARTY_PROBLEM
from exchange.text import counted

STREAM_BATCH = 2000


@dataclass(frozen=True, slots=True)
class Problem:
    transaction_id: str | None
    seq: int | None
    reason: str

    def __str__(self) -> str:
        where = f"transaction {self.transaction_id!r} (seq {self.seq})" if self.seq is not None else "the ledger"
        return f"{where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Verification:
    transactions: int
    accounts: int
    chains: int
    head_hash: str
    """The latest close anchor's hash (the genesis hash before the first close)."""
    problem: Problem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True, slots=True)
class Head:
    genesis: str
    seq: int
    hash: str
    transactions: int


UNBALANCED = text(
    """
    SELECT t.seq, t.id, e.unit, sum(e.amount) AS total
      FROM ledger_entry e JOIN ledger_transaction t ON t.seq = e.transaction_seq AND t.period = e.period
     GROUP BY t.seq, t.id, e.unit
    HAVING sum(e.amount) <> 0
     ORDER BY t.seq
     LIMIT 1
    """
)
TOO_FEW_LEGS = text(
    """
    SELECT t.seq, t.id, count(e.position) AS legs
      FROM ledger_transaction t LEFT JOIN ledger_entry e ON e.transaction_seq = t.seq AND e.period = t.period
     GROUP BY t.seq, t.id
    HAVING count(e.position) < 2
     ORDER BY t.seq
     LIMIT 1
    """
)
WRONG_BALANCE = text(
    """
    SELECT a.code, k.shard, coalesce(b.balance, 0) AS balance, coalesce(e.total, 0) + coalesce(r.balance, 0) AS total
      FROM (SELECT account_id, shard FROM ledger_balance
            UNION SELECT account_id, shard FROM ledger_archived_balance
            UNION SELECT account_id, shard FROM ledger_entry GROUP BY account_id, shard) k
      JOIN ledger_account a ON a.id = k.account_id
      LEFT JOIN ledger_balance b ON b.account_id = k.account_id AND b.shard = k.shard
      LEFT JOIN ledger_archived_balance r ON r.account_id = k.account_id AND r.shard = k.shard
      LEFT JOIN (SELECT account_id, shard, sum(amount) AS total FROM ledger_entry GROUP BY account_id, shard) e
             ON e.account_id = k.account_id AND e.shard = k.shard
     WHERE coalesce(b.balance, 0) <> coalesce(e.total, 0) + coalesce(r.balance, 0)
     ORDER BY a.id, k.shard
     LIMIT 1
    """
)
CHAIN_ROWS = text(
    """
    SELECT t.shard, t.period, t.seq, t.id, t.kind, t.reference, t.effective_at, t.reverses,
           t.request_hash, t.prev_hash, t.hash, a.code, e.unit, e.amount
      FROM ledger_transaction t
      JOIN ledger_entry e ON e.transaction_seq = t.seq AND e.period = t.period
      JOIN ledger_account a ON a.id = e.account_id
     ORDER BY t.shard, t.period, t.seq, e.position
    """
).columns(effective_at=UTCDateTime())
HEADS = text("SELECT shard, period, genesis, seq, hash, transactions FROM ledger_chain_head")
ANCHORS = text("SELECT period, heads, prev_hash, hash, archived_at FROM ledger_close_anchor ORDER BY period")


async def _sums(session: AsyncSession) -> Problem | None:
    row = (await session.exec(UNBALANCED)).first()  # type: ignore[call-overload]
    if row is not None:
        return Problem(row.id, row.seq, f"does not balance: {row.total} {row.unit} left over")
    row = (await session.exec(TOO_FEW_LEGS)).first()  # type: ignore[call-overload]
    if row is not None:
        return Problem(row.id, row.seq, f"has {counted(row.legs, 'leg')}; a transaction needs at least two")
    return None


async def _counterparties(session: AsyncSession) -> Problem | None:
    row = (await session.exec(COUNTERPARTY_PROBLEM)).first()  # type: ignore[call-overload]
    if row is None:
        return None
    if row.not_a_star:
        return Problem(
            row.id, row.seq, f"has {row.negatives} negative and {row.positives} positive legs in {row.unit}: not a star"
        )
    return Problem(
        row.id,
        row.seq,
        f"leg {row.position} names counterparty {_account(row.stored)}; its legs give {_account(row.expected)}",
    )


def _account(account_id: int | None) -> str:
    return "none" if account_id is None else f"account {account_id}"


async def _balances(session: AsyncSession) -> Problem | None:
    row = (await session.exec(WRONG_BALANCE)).first()  # type: ignore[call-overload]
    if row is not None:
        return Problem(
            None, None, f"account {row.code} says {row.balance} in shard {row.shard}, its entries sum to {row.total}"
        )
    return None


def _check_link(legs: list[Row[Any]], prev_hash: str) -> Problem | None:
    first = legs[0]
    recomputed = request_digest(
        transaction_id=first.id,
        kind=first.kind,
        reference=first.reference,
        effective_at=first.effective_at,
        reverses=first.reverses,
        legs=((leg.code, leg.unit, leg.amount) for leg in legs),
    )
    if recomputed != first.request_hash:
        return Problem(first.id, first.seq, "its content does not match its hash (changed after posting)")
    if first.prev_hash != prev_hash:
        return Problem(first.id, first.seq, "does not link to the transaction before it")
    chained = chain_digest(seq=first.seq, prev_hash=prev_hash, request_hash=recomputed, period=first.period)
    if chained != first.hash:
        return Problem(first.id, first.seq, "its chain hash is wrong (changed after posting)")
    return None


async def _transactions(session: AsyncSession) -> AsyncIterator[list[Row[Any]]]:
    """Each transaction's legs, in chain order: by shard, period and seq."""
    legs: list[Row[Any]] = []
    result = await session.stream(CHAIN_ROWS.execution_options(yield_per=STREAM_BATCH))
    async for row in result:
        if legs and row.seq != legs[0].seq:
            yield legs
            legs = []
        legs.append(row)
    if legs:
        yield legs


def _chain_end(shard: int, period: str, head: Head, count: int, seq: int, last_hash: str) -> Problem | None:
    if (count, seq, last_hash) != (head.transactions, head.seq, head.hash):
        return Problem(
            None,
            None,
            f"the chain of shard {shard} in {period} ends at seq {seq} after {counted(count, 'transaction')} "
            f"but its head says seq {head.seq} after {head.transactions}",
        )
    return None


async def _chains(
    session: AsyncSession, heads: dict[tuple[int, str], Head], archived: set[str]
) -> tuple[int, Problem | None]:
    """Walk every chain of the rows in the ledger; how many transactions it checked."""
    count = 0
    chain: tuple[int, str] | None = None
    links, last_seq, prev_hash = 0, 0, GENESIS_HASH
    seen: set[tuple[int, str]] = set()
    async for legs in _transactions(session):
        first = legs[0]
        if (first.shard, first.period) != chain:
            if chain is not None and (problem := _chain_end(*chain, heads[chain], links, last_seq, prev_hash)):
                return count, problem
            chain = (first.shard, first.period)
            head = heads.get(chain)
            if head is None or first.period in archived:
                return count, Problem(
                    first.id, first.seq, f"its chain (shard {first.shard}, {first.period}) has no head"
                )
            seen.add(chain)
            links, prev_hash = 0, head.genesis
        if problem := _check_link(legs, prev_hash):
            return count, problem
        links, last_seq, prev_hash, count = links + 1, first.seq, first.hash, count + 1
    if chain is not None and (problem := _chain_end(*chain, heads[chain], links, last_seq, prev_hash)):
        return count, problem
    for (shard, period), head in sorted(heads.items()):
        if (shard, period) not in seen and period not in archived:
            return count, _chain_end(shard, period, head, 0, 0, head.genesis)
    return count, None


async def _anchors(
    session: AsyncSession, heads: dict[tuple[int, str], Head], last_closed: str | None
) -> tuple[str, Problem | None]:
    """Recompute every close anchor from the chains' heads; the latest anchor's hash."""
    prev_hash = GENESIS_HASH
    anchored: set[str] = set()
    for anchor in (await session.exec(ANCHORS)).all():  # type: ignore[call-overload]
        anchored.add(anchor.period)
        expected = anchor_heads(
            (shard, head.transactions, head.seq, head.hash)
            for (shard, period), head in heads.items()
            if period == anchor.period
        )
        if anchor.heads != expected:
            return prev_hash, Problem(
                None,
                None,
                f"the close anchor of {anchor.period} records heads {anchor.heads!r}; its chains end at {expected!r}",
            )
        if anchor.prev_hash != prev_hash:
            return prev_hash, Problem(
                None, None, f"the close anchor of {anchor.period} does not link to the close before it"
            )
        if anchor_digest(prev_hash=prev_hash, period=anchor.period, heads=anchor.heads) != anchor.hash:
            return prev_hash, Problem(None, None, f"the close anchor of {anchor.period} has a wrong hash")
        prev_hash = anchor.hash
    if last_closed is not None:
        for period in sorted({period for _, period in heads}):
            if period <= last_closed and period not in anchored:
                return prev_hash, Problem(None, None, f"period {period} is closed but has no close anchor")
    return prev_hash, None


async def verify_ledger(session: AsyncSession) -> Verification:
    """Check the ledger; ``problem`` is the first one found: per-transaction sums, then the
    chains, then the close anchors, then the star shape and counterparties, then the balances."""
    accounts = (await session.exec(text("SELECT count(*) FROM ledger_account"))).scalar_one()  # type: ignore[call-overload]
    last_closed = (await session.exec(text("SELECT last_closed FROM ledger_shard WHERE id = 1"))).scalar_one()  # type: ignore[call-overload]
    heads = {
        (row.shard, row.period): Head(row.genesis, row.seq, row.hash, row.transactions)
        for row in await session.exec(HEADS)  # type: ignore[call-overload]
    }
    archived = {
        row.period
        for row in await session.exec(text("SELECT period FROM ledger_close_anchor WHERE archived_at IS NOT NULL"))  # type: ignore[call-overload]
    }
    count, anchor_hash = 0, GENESIS_HASH
    problem = await _sums(session)
    if problem is None:
        count, problem = await _chains(session, heads, archived)
    if problem is None:
        anchor_hash, problem = await _anchors(session, heads, last_closed)
    problem = problem or await _counterparties(session) or await _balances(session)
    return Verification(count, accounts, len(heads), anchor_hash, problem)
