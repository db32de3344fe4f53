"""Posting to the clearing ledger: balanced, idempotent by client-chosen id, hash-chained.

Every posting locks one shard first (``exchange.ledger.chain``): the shard's postings land one
at a time, so its chain in each period never forks and its balance rows see one writer at a
time, while postings in other shards go on. Ids are unique across shards and periods in
``ledger_transaction_key``: a posting whose id was posted before inserts nothing there (the
existence check), and a concurrent posting of the same id waits on that key until the first
commits. The shard is held until the caller's unit of work commits: keep posting units short.

A posting of one transaction is three statements on PostgreSQL: lock a shard (which also says
where the posting may land), read where its chain ends and draw a seq, then one statement that
claims the id and, only if it did, inserts the transaction and its legs (:data:`_POST_ONE`). On
SQLite the last is three statements: claim, insert the transaction, insert its legs. A batch
claims its ids in one statement first and links only those it claimed. The database moves the
chain's head and the shard's balances as rows are inserted (triggers: migration 0017), and
checks at commit that every transaction's legs balance. Account ids come from memory once
known: an account, once opened, never changes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, text
from sqlalchemy.dialects import sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import Clock
from exchange.db import direct
from exchange.db.bulk import bulk_insert, one_of
from exchange.db.commits import after_commit
from exchange.db.dialects import insert as dialect_insert
from exchange.errors import IdempotencyConflict
from exchange.ledger.accounts import AccountKind, AccountRef
from exchange.ledger.chain import LockedShard, chain_state, home_shard, lock_shard
from exchange.ledger.errors import (
    AlreadyReversed,
    UnbalancedTransaction,
    UnknownTransaction,
)
from exchange.ledger.hashing import chain_digest, request_digest
from exchange.ledger.models import (
    MAX_SHARDS,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    LedgerTransactionKey,
)
from exchange.ledger.periods import SettlementCalendar
from exchange.ledger.stars import hub_positions
from exchange.observability.metrics import count_ledger_postings
from exchange.observability.tracing import span
from exchange.settings import Settings

MAX_ID_LENGTH = 100
#: Ids per IN (...) list; keeps every statement far below the driver's parameter limit.
LOOKUP_CHUNK = 5000

# Bulk writes go through the Core tables (COPY on PostgreSQL), with no ORM unit-of-work overhead.
TRANSACTIONS: Table = LedgerTransaction.__table__  # type: ignore[attr-defined]
ENTRIES: Table = LedgerEntry.__table__  # type: ignore[attr-defined]
ACCOUNTS: Table = LedgerAccount.__table__  # type: ignore[attr-defined]
KEYS: Table = LedgerTransactionKey.__table__  # type: ignore[attr-defined]
#: Shards postings spread over unless told otherwise (the setting ``ledger_shards``).
DEFAULT_SHARDS = 8
TRANSACTION_COLUMNS = (
    "seq",
    "shard",
    "id",
    "kind",
    "reference",
    "period",
    "effective_at",
    "posted_at",
    "reverses",
    "request_hash",
    "prev_hash",
    "hash",
)
ENTRY_COLUMNS = (
    "transaction_seq",
    "position",
    "account_id",
    "unit",
    "amount",
    "period",
    "shard",
    "counterparty_account_id",
)
KEY_COLUMNS = ("id", "reverses", "seq", "period")


@dataclass(frozen=True, slots=True)
class Leg:
    """One side of a posting: a signed integer amount (debit +, credit −) on one account."""

    account: AccountRef
    amount: int


@dataclass(frozen=True, slots=True)
class TransactionRequest:
    """What a client asks the ledger to post. ``id`` is the client's idempotency key."""

    id: str
    kind: str
    reference: str
    effective_at: datetime
    legs: tuple[Leg, ...]
    reverses: str | None = None

    @classmethod
    def of_formula(
        cls, *, id: str, kind: str, reference: str, effective_at: datetime, legs: Iterable[Leg]
    ) -> TransactionRequest:
        """A transaction whose legs a clearing formula lists in full: those that come to zero
        this time (no fee, no breakage) are left out, as :func:`check_balanced` refuses them."""
        return cls(
            id=id,
            kind=kind,
            reference=reference,
            effective_at=effective_at,
            legs=tuple(leg for leg in legs if leg.amount),
        )

    def digest(self) -> str:
        return request_digest(
            transaction_id=self.id,
            kind=self.kind,
            reference=self.reference,
            effective_at=self.effective_at,
            reverses=self.reverses,
            legs=((leg.account.code, leg.account.unit, leg.amount) for leg in self.legs),
        )


@dataclass(frozen=True, slots=True)
class PostedTransaction:
    seq: int
    id: str
    period: str
    hash: str
    replayed: bool
    """True when this id was posted before with the same content: nothing new was written."""


def check_balanced(request: TransactionRequest) -> None:
    """Refuse a malformed request: bad id, fewer than two legs, zero or non-integer amounts,
    or amounts that do not sum to zero in every unit."""
    if not request.id or len(request.id) > MAX_ID_LENGTH:
        raise UnbalancedTransaction(f"a transaction id must be 1 to {MAX_ID_LENGTH} characters", field="id")
    if len(request.legs) < 2:
        raise UnbalancedTransaction("a transaction needs at least two legs", field="legs")
    totals: dict[str, int] = defaultdict(int)
    for index, leg in enumerate(request.legs):
        if type(leg.amount) is not int or leg.amount == 0:
            raise UnbalancedTransaction(
                f"leg {index} amount must be a non-zero integer, got {leg.amount!r}", field=f"legs[{index}].amount"
            )
        totals[leg.account.unit] += leg.amount
    unbalanced = {unit: total for unit, total in totals.items() if total}
    if unbalanced:
        raise UnbalancedTransaction(
            f"transaction {request.id!r} does not balance: {unbalanced} left over", field="legs"
        )


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), LOOKUP_CHUNK):
        yield items[start : start + LOOKUP_CHUNK]


class Ledger:
    """Posts balanced transactions and reverses them; the one writer of ledger tables."""

    def __init__(
        self, *, timezone: ZoneInfo, clock: Clock, period_months: int = 1, shards: int = DEFAULT_SHARDS
    ) -> None:
        if not 1 <= shards <= MAX_SHARDS:
            raise ValueError(f"the ledger has 1 to {MAX_SHARDS} shards, not {shards}")
        self.calendar = SettlementCalendar(timezone, period_months)
        self.clock = clock
        self.shards = shards
        self._accounts: dict[str, tuple[int, str]] = {}
        """Id and unit of every account by code, as committed: an account never changes once opened."""

    @classmethod
    def for_settings(cls, settings: Settings, clock: Clock) -> Ledger:
        """The ledger on the coalition's settlement calendar, as the gateway and commands run it."""
        return cls(
            timezone=settings.timezone,
            clock=clock,
            period_months=settings.settlement_period_months,
            shards=settings.ledger_shards,
        )

    async def post(self, session: AsyncSession, request: TransactionRequest) -> PostedTransaction:
        return (await self.post_many(session, [request]))[0]

    async def post_many(self, session: AsyncSession, requests: Sequence[TransactionRequest]) -> list[PostedTransaction]:
        """Post many transactions in the caller's unit of work, in order, as one batch.

        Each request is checked first (balanced, and a star in money: see ``stars``); nothing is
        written if any is malformed or conflicts.
        A request whose id was posted before with the same content is not posted again:
        its first result comes back with ``replayed=True``.
        """
        with span("ledger post", attributes={"exchange.ledger.kinds": sorted({request.kind for request in requests})}):
            return await self._post_many(session, requests)

    async def _post_many(
        self, session: AsyncSession, requests: Sequence[TransactionRequest]
    ) -> list[PostedTransaction]:
        digests: dict[str, str] = {}
        hubs: dict[str, list[int | None]] = {}
        for request in requests:
            check_balanced(request)
            hubs[request.id] = hub_positions(request)
            digest = request.digest()
            if digests.setdefault(request.id, digest) != digest:
                raise IdempotencyConflict(
                    f"transaction id {request.id!r} appears twice with different content", field="id"
                )
        shard = await lock_shard(session, home_shard(requests[0].id, self.shards), self.shards)
        # A batch finds its repeats first, so that the chain runs over its fresh requests only;
        # a lone request is simply written, and its insert does nothing if the id was posted.
        earlier = await self._posted(session, list(digests)) if len(digests) > 1 else {}
        _refuse_changed(earlier, digests)
        fresh: dict[str, TransactionRequest] = {}
        for request in requests:
            if request.id not in earlier:
                fresh.setdefault(request.id, request)
        await self._check_reversals(session, list(fresh.values()))
        written = await self._write(session, shard, list(fresh.values()), digests, hubs)
        count_ledger_postings(session, (fresh[transaction_id].kind for transaction_id in written))
        if len(written) < len(fresh):
            # Claimed by another unit of work, committed meanwhile (or in a period since archived).
            unwritten = [transaction_id for transaction_id in fresh if transaction_id not in written]
            meanwhile = await self._posted(session, unwritten)
            _refuse_changed(meanwhile, digests)
            for transaction_id in unwritten:
                if transaction_id not in meanwhile:
                    await self._refuse_reversed_by_another(session, fresh[transaction_id])
                    raise IdempotencyConflict(
                        f"transaction id {transaction_id!r} was posted in a period since archived", field="id"
                    )
            earlier.update(meanwhile)
        results = {transaction_id: posted for transaction_id, (posted, _) in earlier.items()}
        results.update(written)
        return [results[request.id] for request in requests]

    async def reverse(
        self,
        session: AsyncSession,
        original_id: str,
        *,
        transaction_id: str,
        effective_at: datetime,
        kind: str = "reversal",
    ) -> PostedTransaction:
        """Post the exact negation of ``original_id``; a transaction is reversed at most once."""
        original = (await session.exec(select(LedgerTransaction).where(LedgerTransaction.id == original_id))).first()
        if original is None:
            raise UnknownTransaction(original_id, field="reverses")
        legs = await self.legs_of(session, original.seq)
        request = TransactionRequest(
            id=transaction_id,
            kind=kind,
            reference=original.reference,
            effective_at=effective_at,
            legs=tuple(Leg(leg.account, -leg.amount) for leg in legs),
            reverses=original_id,
        )
        return await self.post(session, request)

    async def legs_of(self, session: AsyncSession, seq: int) -> list[Leg]:
        rows = await session.exec(
            select(LedgerEntry, LedgerAccount)
            .join(LedgerAccount, col(LedgerAccount.id) == col(LedgerEntry.account_id))
            .where(LedgerEntry.transaction_seq == seq)
            .order_by(col(LedgerEntry.position))
        )
        return [Leg(_account_ref(account), entry.amount) for entry, account in rows]

    async def _posted(self, session: AsyncSession, ids: Sequence[str]) -> dict[str, tuple[PostedTransaction, str]]:
        """The transactions among ``ids`` posted before, with the hash of their request."""
        found: dict[str, tuple[PostedTransaction, str]] = {}
        for chunk in _chunks(ids):
            rows = await session.exec(
                select(  # type: ignore[call-overload]
                    LedgerTransaction.seq,
                    LedgerTransaction.id,
                    LedgerTransaction.period,
                    LedgerTransaction.hash,
                    LedgerTransaction.request_hash,
                ).where(one_of(col(LedgerTransaction.id), chunk, session))
            )
            for seq, transaction_id, period, chained, request_hash in rows:
                found[transaction_id] = (PostedTransaction(seq, transaction_id, period, chained, True), request_hash)
        return found

    async def _check_reversals(self, session: AsyncSession, requests: Sequence[TransactionRequest]) -> None:
        """A reversal must exactly negate a posted transaction that is not reversed yet (nor by
        another request of the batch)."""
        batch: dict[str, str] = {}
        for request in requests:
            if request.reverses is None:
                continue
            if batch.setdefault(request.reverses, request.id) != request.id:
                raise AlreadyReversed(request.reverses, batch[request.reverses])
            original = (
                await session.exec(select(LedgerTransaction).where(LedgerTransaction.id == request.reverses))
            ).first()
            if original is None:
                raise UnknownTransaction(request.reverses, field="reverses")
            if await self._refuse_reversed_by_another(session, request):
                continue  # a repeat of this very reversal: writing it finds it posted
            expected = [(leg.account, -leg.amount) for leg in await self.legs_of(session, original.seq)]
            if [(leg.account, leg.amount) for leg in request.legs] != expected:
                raise UnbalancedTransaction(
                    f"reversal {request.id!r} does not exactly negate {request.reverses!r}", field="legs"
                )

    @staticmethod
    async def _refuse_reversed_by_another(session: AsyncSession, request: TransactionRequest) -> bool:
        """Refuse a reversal of a transaction some other transaction reverses
        (:class:`AlreadyReversed`); whether this one does."""
        if request.reverses is None:
            return False
        reversed_by = (
            await session.exec(select(LedgerTransactionKey.id).where(LedgerTransactionKey.reverses == request.reverses))
        ).first()
        if reversed_by is not None and reversed_by != request.id:
            raise AlreadyReversed(request.reverses, reversed_by)
        return reversed_by is not None

    async def _account_ids(self, session: AsyncSession, accounts: set[AccountRef]) -> dict[AccountRef, int]:
        """Ids of the accounts, opening those that do not exist yet."""
        ids: dict[AccountRef, int] = {}
        unknown: dict[str, AccountRef] = {}
        for account in accounts:
            known = self._accounts.get(account.code)
            if known is None:
                unknown[account.code] = account
            else:
                ids[account] = _checked(account, *known)
        if unknown:
            ids.update(await self._look_up_or_open(session, unknown))
        return ids

    async def _look_up_or_open(self, session: AsyncSession, by_code: dict[str, AccountRef]) -> dict[AccountRef, int]:
        """Ids of accounts not in memory: read, or opened now. They are remembered once the
        unit of work commits (before, a rollback could take an opened account away).

        Postings in other shards may open the same account at the same moment: the insert does
        nothing for a code another has opened (waiting for it to commit), and those are read
        again. Accounts are opened in code order, so two openers never wait on each other."""
        found = await self._read_accounts(session, list(by_code))
        missing = [account for code, account in by_code.items() if code not in found]
        if missing:
            created = await session.exec(
                dialect_insert(session, ACCOUNTS)
                .values(
                    [
                        {
                            "code": account.code,
                            "kind": account.kind.value,
                            "program_id": account.program_id,
                            "unit": account.unit,
                            "created_at": self.clock.now(),
                        }
                        for account in sorted(missing)
                    ]
                )
                .on_conflict_do_nothing(index_elements=["code"])
                .returning(ACCOUNTS.c.id, ACCOUNTS.c.code)
            )
            found.update((code, (account_id, by_code[code].unit)) for account_id, code in created)
            if len(found) < len(by_code):
                found.update(await self._read_accounts(session, [code for code in by_code if code not in found]))
        after_commit(session, lambda: self._accounts.update(found))
        return {by_code[code]: _checked(by_code[code], *known) for code, known in found.items()}

    @staticmethod
    async def _read_accounts(session: AsyncSession, codes: list[str]) -> dict[str, tuple[int, str]]:
        rows = await session.exec(
            select(ACCOUNTS.c.id, ACCOUNTS.c.code, ACCOUNTS.c.unit).where(ACCOUNTS.c.code.in_(codes))
        )
        return {code: (account_id, unit) for account_id, code, unit in rows}

    async def _write(
        self,
        session: AsyncSession,
        shard: LockedShard,
        requests: Sequence[TransactionRequest],
        digests: dict[str, str],
        hubs: dict[str, list[int | None]],
    ) -> dict[str, PostedTransaction]:
        """Write ``requests`` at the ends of ``shard``'s chains, each whose id (and reversal) it
        claims; one posted before, or by another unit of work meanwhile, is not written (and not
        returned): the caller reads it back."""
        if not requests:
            return {}
        account_ids = await self._account_ids(session, {leg.account for request in requests for leg in request.legs})
        posted_at = self.clock.now()
        periods = [
            self.calendar.posting_period(self.calendar.period_of(request.effective_at), shard.last_closed)
            for request in requests
        ]
        ends, seqs = await chain_state(session, shard.id, sorted(set(periods)), len(requests))
        lots = list(zip(requests, periods, seqs, strict=True))
        if len(lots) > 1:
            # A batch claims its ids before it links them: an id (or a reversal) that a posting in
            # another shard claimed meanwhile leaves a gap in the seqs, not a broken link.
            claimed = await _claim_ids(
                session, [(request.id, request.reverses, seq, period) for request, period, seq in lots]
            )
            lots = [lot for lot in lots if lot[0].id in claimed]
        transactions: list[tuple[Any, ...]] = []
        entries: list[tuple[Any, ...]] = []
        results: dict[str, PostedTransaction] = {}
        for request, period, seq in lots:
            request_hash = digests[request.id]
            prev_hash = ends[period]
            chained = chain_digest(seq=seq, prev_hash=prev_hash, request_hash=request_hash, period=period)
            ends[period] = chained
            transactions.append(
                (
                    seq,
                    shard.id,
                    request.id,
                    request.kind,
                    request.reference,
                    period,
                    request.effective_at,
                    posted_at,
                    request.reverses,
                    request_hash,
                    prev_hash,
                    chained,
                )
            )
            ids = [account_ids[leg.account] for leg in request.legs]
            for position, (leg, account_id, hub) in enumerate(zip(request.legs, ids, hubs[request.id], strict=True)):
                entries.append(
                    (
                        seq,
                        position,
                        account_id,
                        leg.account.unit,
                        leg.amount,
                        period,
                        shard.id,
                        None if hub is None else ids[hub],
                    )
                )
            results[request.id] = PostedTransaction(seq, request.id, period, chained, False)
        if len(requests) == 1:
            request, period, seq = lots[0]
            if not await _post_one(session, (request.id, request.reverses, seq, period), transactions[0], entries):
                return {}  # posted before: the caller reads it back
        else:
            await bulk_insert(session, TRANSACTIONS, TRANSACTION_COLUMNS, transactions)  # the chains' heads follow
            await bulk_insert(session, ENTRIES, ENTRY_COLUMNS, entries)  # the shard's balances follow
        return results


async def _claim_ids(session: AsyncSession, keys: list[tuple[Any, ...]]) -> set[str]:
    """Claim a batch's ids (rows in ``KEY_COLUMNS`` order); the ids claimed. On PostgreSQL an id
    or a reversal another unit of work claimed is skipped once that one commits, and ids are
    claimed in id order, so two batches sharing ids wait for each other instead of deadlocking.
    On SQLite units of work take turns, and the batch has read its repeats already: all are new."""
    if session.get_bind().dialect.name != "postgresql":
        await bulk_insert(session, KEYS, KEY_COLUMNS, keys)
        return {key[0] for key in keys}
    ids, reverses, seqs, periods = (list(column) for column in zip(*sorted(keys), strict=True))
    claimed = await direct.execute(
        session, _CLAIM_IDS, {"ids": ids, "reverses": reverses, "seqs": seqs, "periods": periods}
    )
    return set(claimed.scalars())


async def _post_one(
    session: AsyncSession, key: tuple[Any, ...], transaction: tuple[Any, ...], entries: list[tuple[Any, ...]]
) -> bool:
    """Claim one transaction's id, and insert it and its legs if that claimed it; whether it did.

    On PostgreSQL this is one statement (:data:`_POST_ONE`); on SQLite, three."""
    if session.get_bind().dialect.name == "postgresql":
        params = dict(zip(TRANSACTION_COLUMNS, transaction, strict=True))
        for name, index in (("account_ids", 2), ("units", 3), ("amounts", 4), ("counterparties", 7)):
            params[name] = [entry[index] for entry in entries]
        return (await direct.execute(session, _POST_ONE, params)).first() is not None
    claimed = await session.exec(_CLAIM_ONE, params=dict(zip(KEY_COLUMNS, key, strict=True)))
    if claimed.first() is None:
        return False
    await bulk_insert(session, TRANSACTIONS, TRANSACTION_COLUMNS, [transaction])  # the chain's head follows
    await bulk_insert(session, ENTRIES, ENTRY_COLUMNS, entries)  # the shard's balances follow
    return True


#: SQLite: claim one id (and what it reverses) unless taken; returns the id if claimed.
_CLAIM_ONE = (
    sqlite.insert(KEYS)
    .values({name: bindparam(name, type_=KEYS.c[name].type) for name in KEY_COLUMNS})
    .on_conflict_do_nothing()
    .returning(KEYS.c.id)
)
#: PostgreSQL: claim a batch's ids (and what they reverse) unless taken, one array a column.
_CLAIM_IDS = text(
    """
    INSERT INTO ledger_transaction_key (id, reverses, seq, period)
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:reverses AS text[]), CAST(:seqs AS bigint[]),
                         CAST(:periods AS text[]))
    ON CONFLICT DO NOTHING
    RETURNING id
    """
)
#: PostgreSQL: a lone posting in one statement. It claims the id (and what it reverses) unless
#: taken, and only if it did, inserts the transaction and its legs (given as arrays, the
#: position being the index: one text for any number of legs); it returns a row if it claimed
#: the id. The foreign key from the legs and the triggers (chain head, balances: ``REFERENCING
#: NEW TABLE``; the deferred balance check) see the whole statement's rows, as they would three
#: statements'.
_POST_ONE = text(
    f"""
    WITH claimed AS (
        INSERT INTO ledger_transaction_key (id, reverses, seq, period)
        VALUES (:id, :reverses, :seq, :period)
        ON CONFLICT DO NOTHING
        RETURNING seq
    ), posted AS (
        INSERT INTO ledger_transaction ({", ".join(TRANSACTION_COLUMNS)})
        SELECT {", ".join(f":{name}" for name in TRANSACTION_COLUMNS)} FROM claimed
    ), legs AS (
        INSERT INTO ledger_entry ({", ".join(ENTRY_COLUMNS)})
        SELECT :seq, leg.position - 1, leg.account_id, leg.unit, leg.amount, :period, :shard, leg.counterparty
          FROM claimed,
               unnest(CAST(:account_ids AS bigint[]), CAST(:units AS text[]), CAST(:amounts AS bigint[]),
                      CAST(:counterparties AS bigint[]))
               WITH ORDINALITY AS leg(account_id, unit, amount, counterparty, position)
    )
    SELECT seq FROM claimed
    """
).bindparams(*(bindparam(name, type_=TRANSACTIONS.c[name].type) for name in TRANSACTION_COLUMNS))


def _refuse_changed(earlier: dict[str, tuple[PostedTransaction, str]], digests: dict[str, str]) -> None:
    """An id posted before must come with the same content."""
    for transaction_id, (_, request_hash) in earlier.items():
        if request_hash != digests[transaction_id]:
            raise IdempotencyConflict(
                f"transaction id {transaction_id!r} was posted before with different content", field="id"
            )


def _checked(account: AccountRef, account_id: int, unit: str) -> int:
    if unit != account.unit:
        raise UnbalancedTransaction(f"account {account.code} is kept in {unit}, not {account.unit}", field="legs")
    return account_id


def _account_ref(row: LedgerAccount) -> AccountRef:
    return AccountRef(AccountKind(row.kind), row.program_id, row.unit)
