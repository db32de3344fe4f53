"""Tables of the clearing ledger.

``ledger_transaction`` and ``ledger_entry`` are append-only (the database refuses updates
and deletes) and, on PostgreSQL, partitioned by settlement period (``exchange.ledger.partitions``):
their keys carry the period, so the global uniqueness of a transaction id (the idempotency key)
and of a reversal lives in ``ledger_transaction_key``. Postings spread over shards
(``exchange.ledger.chain``): ``ledger_shard`` holds the row a posting locks, each (shard, period)
is a hash chain of its own whose last link ``ledger_chain_head`` keeps, ``ledger_balance`` holds
each account's running total per shard (so concurrent postings never wait on an account's row),
and ``ledger_close_anchor`` records, when a period closes, a hash over every chain of it, chained
to the previous close. The database moves heads and balances as rows are inserted (triggers);
the verifier recomputes all of them. ``outstanding_points`` keeps each program's
``member-points`` balance at each close (``exchange.ledger.outstanding``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    SmallInteger,
    String,
    Text,
)
from sqlmodel import Field, SQLModel

from exchange.db.types import BigIdentity, UTCDateTime

GENESIS_HASH = "0" * 64
#: Shard rows the schema holds (``ledger_shard``); the setting ``ledger_shards`` uses the first N.
MAX_SHARDS = 16


class LedgerAccount(SQLModel, table=True):
    __tablename__ = "ledger_account"

    id: int | None = Field(default=None, sa_column=Column(BigIdentity, primary_key=True, autoincrement=True))
    code: str = Field(max_length=120, unique=True)
    kind: str = Field(max_length=30)
    program_id: str | None = Field(default=None, max_length=64, index=True)
    unit: str = Field(max_length=72)
    created_at: datetime = Field(sa_type=UTCDateTime)


class LedgerBalance(SQLModel, table=True):
    """An account's running total of the legs posted in one shard: the account's balance is
    the sum over shards (view ``ledger_account_balance``)."""

    __tablename__ = "ledger_balance"

    account_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("ledger_account.id"), primary_key=True, autoincrement=False)
    )
    shard: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    balance: int = Field(sa_column=Column(BigInteger, nullable=False))


class LedgerTransaction(SQLModel, table=True):
    """One balanced posting. ``seq`` is unique across the ledger and grows along each chain
    (it has gaps: shards draw from one sequence); the chain of a transaction is the one of its
    (``shard``, ``period``)."""

    __tablename__ = "ledger_transaction"
    __table_args__ = {"postgresql_partition_by": "LIST (period)"}

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    period: str = Field(sa_column=Column(String(7), primary_key=True, index=True))
    shard: int = Field(sa_column=Column(SmallInteger, nullable=False))
    id: str = Field(max_length=100, index=True)
    kind: str = Field(max_length=30)
    reference: str = Field(max_length=200, index=True)
    effective_at: datetime = Field(sa_type=UTCDateTime)
    posted_at: datetime = Field(sa_type=UTCDateTime)
    reverses: str | None = Field(default=None, max_length=100, index=True)
    request_hash: str = Field(max_length=64)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class LedgerTransactionKey(SQLModel, table=True):
    """Every transaction id ever posted, and what it reverses: unique here, across periods and
    shards, so an id posts once and a transaction is reversed at most once. (A unique index on
    the partitioned table would have to include the period.) Kept when a period is archived."""

    __tablename__ = "ledger_transaction_key"

    id: str = Field(max_length=100, primary_key=True)
    reverses: str | None = Field(default=None, max_length=100, unique=True)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    period: str = Field(max_length=7)


class LedgerEntry(SQLModel, table=True):
    """One leg of a transaction; unit and period are copied from account and transaction
    so that per-unit and per-period sums need no join, and the counterparty is derived from
    the transaction's legs so that netting needs no join of the legs with each other."""

    __tablename__ = "ledger_entry"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="ledger_entry_amount_nonzero"),
        ForeignKeyConstraint(
            ["transaction_seq", "period"],
            ["ledger_transaction.seq", "ledger_transaction.period"],
            name="ledger_entry_transaction_fkey",
        ),
        {"postgresql_partition_by": "LIST (period)"},
    )

    transaction_seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    position: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    period: str = Field(sa_column=Column(String(7), primary_key=True, index=True))
    shard: int = Field(sa_column=Column(SmallInteger, nullable=False))
    """The transaction's shard, copied so that the shard's balance rows follow the legs."""
    account_id: int = Field(sa_column=Column(BigInteger, ForeignKey("ledger_account.id"), nullable=False, index=True))
    unit: str = Field(max_length=72)
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    counterparty_account_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, ForeignKey("ledger_account.id"), nullable=True)
    )
    """On a money transaction's spoke leg, its hub's account; NULL on the hub leg and on points
    legs (the rule is in ``exchange.ledger.stars``)."""


class LedgerShard(SQLModel, table=True):
    """The row a posting locks: one per shard, ``MAX_SHARDS`` of them."""

    __tablename__ = "ledger_shard"
    __table_args__ = (CheckConstraint(f"id BETWEEN 1 AND {MAX_SHARDS}", name="ledger_shard_id_range"),)

    id: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    last_closed: str | None = Field(default=None, max_length=7)
    """The latest period that is closing or closed: set on every shard by closing, under all
    their locks, so a posting learns where it may land from the row it has locked."""


class LedgerChainHead(SQLModel, table=True):
    """The last link of one (shard, period) chain, moved by the database as transactions are
    inserted. A chain with no row is empty. ``genesis`` is what its first transaction links
    to: the genesis hash, except for chains that migration 0017 cut out of the single chain
    posted before it (their first transaction links to the one before it, as then posted)."""

    __tablename__ = "ledger_chain_head"

    shard: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    period: str = Field(primary_key=True, max_length=7)
    genesis: str = Field(max_length=64)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    hash: str = Field(max_length=64)
    transactions: int = Field(sa_column=Column(BigInteger, nullable=False))


class LedgerArchivedBalance(SQLModel, table=True):
    """What the legs of archived periods moved, per account and shard: an account's running
    balance (``ledger_balance``) still counts them, its entries in the ledger no longer do."""

    __tablename__ = "ledger_archived_balance"

    account_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("ledger_account.id"), primary_key=True, autoincrement=False)
    )
    shard: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    balance: int = Field(sa_column=Column(BigInteger, nullable=False))


class OutstandingPoints(SQLModel, table=True):
    """A program's outstanding points at the end of a closed period, recorded by its closing:
    the net points the exchange moved into its members' accounts over that period and every
    earlier one (the books' ``outstanding``). A later period's figure is this plus the
    entries of the periods since, so the books never sum a program's whole history."""

    __tablename__ = "outstanding_points"

    # (program, period): the primary key's index finds a program's latest record before a period.
    program_id: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=7)
    points: int = Field(sa_column=Column(BigInteger, nullable=False))


class LedgerCloseAnchor(SQLModel, table=True):
    """Written when a period starts closing, under every shard's lock: the head of each of the
    period's chains (``heads``: ``shard:transactions:seq:hash`` joined by ``;``, by shard), and
    ``hash`` over them and the previous close's anchor. One hash then commits to everything
    posted in the period, and stays when the period's rows are detached for archive."""

    __tablename__ = "ledger_close_anchor"

    period: str = Field(primary_key=True, max_length=7)
    heads: str = Field(sa_type=Text)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    archived_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When the period's partitions were detached (``exchange ledger archive``): its rows are
    gone from the ledger's tables, and verify checks its chains against this anchor only."""


class SettlementPeriod(SQLModel, table=True):
    """A period's state. A period with no row is OPEN; once CLOSING, nothing more is posted
    into it (late items go to the next open period), and closing never goes back."""

    __tablename__ = "settlement_period"

    period: str = Field(primary_key=True, max_length=7)
    status: str = Field(max_length=10)
    closing_started_at: datetime = Field(sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_by: str = Field(max_length=100)
