"""Tables of the clearing ledger.

``ledger_transaction`` and ``ledger_entry`` are append-only (the database refuses updates
and deletes); ``ledger_account.balance`` is a running total the database moves as legs are
inserted, and the verifier recomputes from the entries; ``ledger_chain_head`` is the single
row that orders postings and holds the last seq and hash (moved by the database as
transactions are inserted).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    SmallInteger,
)
from sqlmodel import Field, SQLModel

from exchange.db.types import BigIdentity, UTCDateTime

GENESIS_HASH = "0" * 64


class LedgerAccount(SQLModel, table=True):
    __tablename__ = "ledger_account"

    id: int | None = Field(default=None, sa_column=Column(BigIdentity, primary_key=True, autoincrement=True))
    code: str = Field(max_length=120, unique=True)
    kind: str = Field(max_length=30)
    program_id: str | None = Field(default=None, max_length=64, index=True)
    unit: str = Field(max_length=72)
    balance: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    created_at: datetime = Field(sa_type=UTCDateTime)


class LedgerTransaction(SQLModel, table=True):
    """One balanced posting; ``seq`` is its place in the hash chain."""

    __tablename__ = "ledger_transaction"

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    id: str = Field(max_length=100, unique=True)
    kind: str = Field(max_length=30)
    reference: str = Field(max_length=200, index=True)
    period: str = Field(max_length=7, index=True)
    effective_at: datetime = Field(sa_type=UTCDateTime)
    posted_at: datetime = Field(sa_type=UTCDateTime)
    reverses: str | None = Field(default=None, max_length=100, unique=True)
    request_hash: str = Field(max_length=64)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class LedgerEntry(SQLModel, table=True):
    """One leg of a transaction; unit and period are copied from account and transaction
    so that per-unit and per-period sums need no join, and the counterparty is derived from
    the transaction's legs so that netting needs no join of the legs with each other."""

    __tablename__ = "ledger_entry"
    __table_args__ = (CheckConstraint("amount <> 0", name="ledger_entry_amount_nonzero"),)

    transaction_seq: int = Field(
        sa_column=Column(BigInteger, ForeignKey("ledger_transaction.seq"), primary_key=True, autoincrement=False)
    )
    position: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    account_id: int = Field(sa_column=Column(BigInteger, ForeignKey("ledger_account.id"), nullable=False, index=True))
    unit: str = Field(max_length=72)
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    period: str = Field(max_length=7, index=True)
    counterparty_account_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, ForeignKey("ledger_account.id"), nullable=True)
    )
    """On a money transaction's spoke leg, its hub's account; NULL on the hub leg and on points
    legs (the rule is in ``exchange.ledger.stars``)."""


class LedgerChainHead(SQLModel, table=True):
    __tablename__ = "ledger_chain_head"
    __table_args__ = (CheckConstraint("id = 1", name="ledger_chain_head_single_row"),)

    id: int = Field(default=1, primary_key=True)
    seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    hash: str = Field(default=GENESIS_HASH, max_length=64)
    last_closed: str | None = Field(default=None, max_length=7)
    """The latest period that is closing or closed: set by closing, under this row's lock, so
    a posting learns where it may land from the row it has locked."""


class SettlementPeriod(SQLModel, table=True):
    """A period's state. A period with no row is OPEN; once CLOSING, nothing more is posted
    into it (late items go to the next open period), and closing never goes back."""

    __tablename__ = "settlement_period"

    period: str = Field(primary_key=True, max_length=7)
    status: str = Field(max_length=10)
    closing_started_at: datetime = Field(sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_by: str = Field(max_length=100)
