"""``exchange ledger verify``: recompute everything the ledger claims, and name the first lie.

Four checks, in this order: every transaction balances per unit and has at least two legs
(set-based SQL); the hash chain, recomputed from the stored rows in order, links from the
genesis hash to the chain head (a stream over the transactions, constant memory); every money
transaction is a star and every leg names the counterparty its transaction's legs give it
(set-based SQL, by the rule of ``exchange.ledger.stars``; the column is outside the hash, so
this is what vouches for it); and every account's running balance equals the sum of its entries
(set-based SQL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, text
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db.types import UTCDateTime
from exchange.ledger.hashing import chain_digest, request_digest
from exchange.ledger.models import GENESIS_HASH
from exchange.ledger.stars import COUNTERPARTY_PROBLEM

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
    head_hash: str
    problem: Problem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


UNBALANCED = text(
    """
    SELECT t.seq, t.id, e.unit, sum(e.amount) AS total
      FROM ledger_entry e JOIN ledger_transaction t ON t.seq = e.transaction_seq
     GROUP BY t.seq, t.id, e.unit
    HAVING sum(e.amount) <> 0
     ORDER BY t.seq
     LIMIT 1
    """
)
TOO_FEW_LEGS = text(
    """
    SELECT t.seq, t.id, count(e.position) AS legs
      FROM ledger_transaction t LEFT JOIN ledger_entry e ON e.transaction_seq = t.seq
     GROUP BY t.seq, t.id
    HAVING count(e.position) < 2
     ORDER BY t.seq
     LIMIT 1
    """
)
WRONG_BALANCE = text(
    """
    SELECT a.code, a.balance, coalesce(sum(e.amount), 0) AS total
      FROM ledger_account a LEFT JOIN ledger_entry e ON e.account_id = a.id
     GROUP BY a.id, a.code, a.balance
    HAVING a.balance <> coalesce(sum(e.amount), 0)
     ORDER BY a.id
     LIMIT 1
    """
)
CHAIN_ROWS = text(
    """
    SELECT t.seq, t.id, t.kind, t.reference, t.period, t.effective_at, t.reverses,
           t.request_hash, t.prev_hash, t.hash, a.code, e.unit, e.amount
      FROM ledger_transaction t
      JOIN ledger_entry e ON e.transaction_seq = t.seq
      JOIN ledger_account a ON a.id = e.account_id
     ORDER BY t.seq, e.position
    """
).columns(effective_at=UTCDateTime())


async def _sums(session: AsyncSession) -> Problem | None:
    row = (await session.exec(UNBALANCED)).first()  # type: ignore[call-overload]
    if row is not None:
        return Problem(row.id, row.seq, f"does not balance: {row.total} {row.unit} left over")
    row = (await session.exec(TOO_FEW_LEGS)).first()  # type: ignore[call-overload]
    if row is not None:
        return Problem(row.id, row.seq, f"has {row.legs} legs; a transaction needs at least two")
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
        return Problem(None, None, f"account {row.code} says {row.balance}, its entries sum to {row.total}")
    return None


def _check_link(legs: list[Row[Any]], expected_seq: int, prev_hash: str) -> Problem | None:
    first = legs[0]
    if first.seq != expected_seq:
        return Problem(first.id, first.seq, f"breaks the sequence: expected seq {expected_seq}")
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


async def verify_ledger(session: AsyncSession) -> Verification:
    """Check the ledger; ``problem`` is the first one found: per-transaction sums, then the
    chain, then the star shape and counterparties, then the accounts' running balances."""
    accounts = (await session.exec(text("SELECT count(*) FROM ledger_account"))).scalar_one()  # type: ignore[call-overload]
    head_seq, head_hash = (await session.exec(text("SELECT seq, hash FROM ledger_chain_head"))).one()  # type: ignore[call-overload]
    problem = await _sums(session)
    if problem is not None:
        return Verification(head_seq, accounts, head_hash, problem)

    prev_hash, count = GENESIS_HASH, 0
    legs: list[Row[Any]] = []
    result = await session.stream(CHAIN_ROWS.execution_options(yield_per=STREAM_BATCH))
    async for row in result:
        if legs and row.seq != legs[0].seq:
            if problem := _check_link(legs, count + 1, prev_hash):
                return Verification(count, accounts, head_hash, problem)
            count, prev_hash, legs = count + 1, legs[0].hash, []
        legs.append(row)
    if legs:
        if problem := _check_link(legs, count + 1, prev_hash):
            return Verification(count, accounts, head_hash, problem)
        count, prev_hash = count + 1, legs[0].hash
    if (count, prev_hash) != (head_seq, head_hash):
        problem = Problem(None, None, f"the chain ends at seq {count} but its head says seq {head_seq}")
    problem = problem or await _counterparties(session) or await _balances(session)
    return Verification(count, accounts, head_hash, problem)
