"""Tables of settlement: what closing a period computed, partners' reconciliations and their
breaks, and the keys statements are signed with.

Money is in minor units of the settlement currency (BIGINT), signed as the ledger signs it:
from a participant's side, positive is what it is owed and negative what it owes. Closing
writes ``settlement_obligation`` and ``settlement_position`` once per period and never
changes them (sign-off only stamps a position). Reconciliations are kept whole, re-imports
included: each import is a new row with the next ``sequence``, and the latest one counts.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlmodel import Field, SQLModel

from exchange.db.types import BigIdentity, UTCDateTime
from exchange.keyring.models import StoredKey, key_table_constraints


class RecordsSource(StrEnum):
    """Where an imported file of records came from."""

    PARTNER_FILE = "PARTNER_FILE"
    """Sent by the partner (or for it): uploaded, or given to ``exchange settle reconcile``."""
    COALITION_BOOK = "COALITION_BOOK"
    """Written by the exchange from its own book of the coalition point (``point_records``)."""


#: Columns' lengths, which what staff send is held to.
REASON_LENGTH = 500
NOTE_LENGTH = 500


class SettlementObligation(SQLModel, table=True):
    """What ``debtor`` owed ``creditor`` over a closed period, gross, before any netting."""

    __tablename__ = "settlement_obligation"
    __table_args__ = (CheckConstraint("amount > 0", name="settlement_obligation_amount_positive"),)

    period: str = Field(sa_column=Column(String(7), ForeignKey("settlement_period.period"), primary_key=True))
    debtor: str = Field(primary_key=True, max_length=64)
    creditor: str = Field(primary_key=True, max_length=64)
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))


class SettlementPosition(SQLModel, table=True):
    """One participant's figures for a closed period, and its sign-off."""

    __tablename__ = "settlement_position"
    __table_args__ = (CheckConstraint("net = receivable - payable", name="settlement_position_net"),)

    period: str = Field(sa_column=Column(String(7), ForeignKey("settlement_period.period"), primary_key=True))
    participant: str = Field(primary_key=True, max_length=64)
    opening: int = Field(sa_column=Column(BigInteger, nullable=False), description="Carried in from earlier periods.")
    payable: int = Field(sa_column=Column(BigInteger, nullable=False))
    receivable: int = Field(sa_column=Column(BigInteger, nullable=False))
    net: int = Field(sa_column=Column(BigInteger, nullable=False), description="The multilateral net position.")
    signed_off_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    signed_off_by: str | None = Field(default=None, max_length=100)
    sign_off_note: str | None = Field(default=None, max_length=NOTE_LENGTH)


class Reconciliation(SQLModel, table=True):
    """One import of a partner's records for a period, and how its lines compared."""

    __tablename__ = "reconciliation"
    __table_args__ = (UniqueConstraint("period", "partner", "sequence"),)

    id: str = Field(primary_key=True, max_length=36)
    period: str = Field(max_length=7)
    partner: str = Field(max_length=64)
    sequence: int = Field(description="1 for the first import of the partner's period, then 2, …")
    imported_at: datetime = Field(sa_type=UTCDateTime)
    imported_by: str = Field(max_length=100, description="Who imported it: the staff member, client or operator.")
    source: str = Field(
        default=RecordsSource.PARTNER_FILE.value,
        sa_column=Column(String(20), nullable=False, server_default=RecordsSource.PARTNER_FILE.value),
        description="Where the file came from (RecordsSource): whoever imported it, the file is the partner's "
        "or the exchange's own book of the coalition point.",
    )
    file_sha256: str = Field(max_length=64, description="SHA-256 of the file's bytes, as uploaded.")
    lines: int = Field(description="Records in the file (lines after the header).")
    matched: int
    missing_in_ledger: int
    missing_in_partner: int
    amount_mismatch: int
    duplicate: int
    resolved: int = Field(
        default=0,
        sa_column=Column(Integer, nullable=False, server_default="0"),
        description="Its breaks resolved so far: counted as each is, so that the breaks still open are known "
        "without counting them.",
    )

    @property
    def breaks(self) -> int:
        return self.missing_in_ledger + self.missing_in_partner + self.amount_mismatch + self.duplicate

    @property
    def of_the_book(self) -> bool:
        """Whether it compared the coalition point's records, which the exchange wrote from its
        own book of the point, so that settlement staff, not a partner, act on its breaks."""
        return self.source == RecordsSource.COALITION_BOOK


class ReconciliationBreak(SQLModel, table=True):
    """A line of the partner's file, or a reference of the ledger, that did not match."""

    __tablename__ = "reconciliation_break"
    # A page of breaks, filtered or not, reads its own rows by one of these (list_breaks).
    __table_args__ = (
        Index("ix_reconciliation_break_reconciliation", "reconciliation_id", "id"),
        Index("ix_reconciliation_break_kind", "reconciliation_id", "kind", "id"),
        Index("ix_reconciliation_break_counterparty", "reconciliation_id", "counterparty", "id"),
        Index(
            "ix_reconciliation_break_open",
            "reconciliation_id",
            "id",
            postgresql_where=text("NOT resolved"),
            sqlite_where=text("NOT resolved"),
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIdentity, primary_key=True, autoincrement=True))
    reconciliation_id: str = Field(foreign_key="reconciliation.id", max_length=36)
    kind: str = Field(max_length=20)
    reference: str = Field(max_length=200)
    line: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    partner_amount: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    ledger_amount: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    counterparty: str | None = Field(default=None, max_length=64, description="As the partner's file named it.")
    partner_date: date | None = Field(default=None, description="As the partner's file dated it.")
    resolved: bool = Field(
        default=False,
        sa_column=Column(Boolean, nullable=False, server_default=false()),
        description="Whether it has a break_resolution: kept on the break so that the open ones are indexed.",
    )


class BreakResolution(SQLModel, table=True):
    """How settlement staff resolved a break: who, when, why, and any adjustment posted."""

    __tablename__ = "break_resolution"
    __table_args__ = (Index("ix_break_resolution_trail", "reconciliation_id", "resolved_at", "break_id"),)

    break_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("reconciliation_break.id"), primary_key=True, autoincrement=False)
    )
    reconciliation_id: str = Field(foreign_key="reconciliation.id", max_length=36)
    """The break's reconciliation, kept with its resolution so that a reconciliation's latest
    resolutions (its trail) are read by index, not found by joining every one of its breaks."""
    resolution: str = Field(max_length=15)
    reason: str = Field(max_length=REASON_LENGTH)
    resolved_by: str = Field(max_length=100)
    resolved_at: datetime = Field(sa_type=UTCDateTime)
    amount: int | None = Field(
        default=None,
        sa_column=Column(BigInteger, nullable=True),
        description="The adjustment to the partner's position (ADJUST only).",
    )
    counterparty: str | None = Field(default=None, max_length=64)
    transaction_id: str | None = Field(default=None, max_length=100, description="The adjustment's ledger transaction.")


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"


#: A job of these states is active: one at a time per kind and subject.
ACTIVE_JOB = "state IN ('QUEUED', 'RUNNING')"


class SettlementJob(SQLModel, table=True):
    """Settlement work that staff start from a page and the gateway's job runner does in the
    background (closing a period), with how far it has come."""

    __tablename__ = "settlement_job"
    __table_args__ = (
        CheckConstraint("progress BETWEEN 0 AND 100", name="settlement_job_progress"),
        Index(
            "ux_settlement_job_active",
            "kind",
            "subject",
            unique=True,
            postgresql_where=text(ACTIVE_JOB),
            sqlite_where=text(ACTIVE_JOB),
        ),
        Index("ix_settlement_job_state", "state", "requested_at"),
    )

    id: str = Field(primary_key=True, max_length=36)
    kind: str = Field(max_length=30)
    subject: str = Field(max_length=64, description="What it works on: the period, for closing.")
    state: str = Field(max_length=10)
    progress: int = Field(default=0, description="Percent done.")
    step: str = Field(default="", max_length=40, description="What it is doing now.")
    requested_by: str = Field(max_length=100)
    requested_at: datetime = Field(sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    heartbeat_at: datetime | None = Field(
        default=None, sa_type=UTCDateTime, description="Last sign of life of the runner; a stale one is retaken."
    )
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    error: str | None = Field(default=None, max_length=500)


class StatementKey(StoredKey, table=True):
    """A key the exchange signs settlement statements with (:mod:`exchange.settlement.keys`).

    Apart from the token-signing keys: a retired statement key stays published for the
    statement retention period after its retirement, not for a token's lifetime. A key signs
    from ``signs_from`` (its creation if none) until ``retired_at``: a rotation publishes the
    new key first and lets it sign only once verifiers' cached copies of the keys hold it.
    """

    __tablename__ = "statement_key"
    __table_args__ = key_table_constraints("statement_key")

    signs_from: datetime | None = Field(default=None, sa_type=UTCDateTime)
    withdrawn_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When the key was withdrawn as compromised: from then it is published no more, whatever
    the retention, and the statements it signed carry the new key's signature instead."""


class IssuedStatement(SQLModel, table=True):
    """A participant's statement of a closed period as the exchange issued it: the exact bytes
    it signed, written once (at the period's closing; if that was cut, or the period closed before
    statements were stored, by recovery, closing again or its first download) and served as they are ever after
    (:mod:`exchange.settlement.issued`)."""

    __tablename__ = "issued_statement"

    period: str = Field(primary_key=True, max_length=7)
    participant: str = Field(primary_key=True, max_length=64)
    version: int
    """The document's ``version`` as it was issued."""
    document: str = Field(sa_type=Text)
    """The canonical JSON document (UTF-8 text): exactly what ``jws`` signs."""
    key_id: str = Field(max_length=64)
    """The ``kid`` of the statement key that signed it."""
    jws: str = Field(sa_type=Text)
    issued_at: datetime = Field(sa_type=UTCDateTime)
    resigned_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When ``jws`` and ``key_id`` replaced the signature of a key withdrawn as compromised (the
    document is never changed: the database refuses it)."""
    head: str | None = Field(default=None, sa_type=Text)
    """The document but its ``lines`` (a JSON object), written by the database as the row is
    inserted (migration 0052): what a page shows of the statement is read from it, and a page of
    its lines from ``issued_statement_line``, not from the whole document."""


class IssuedStatementLine(SQLModel, table=True):
    """One of an issued statement's ``lines``, as its document holds it, written with it in one
    unit of work (:func:`~exchange.settlement.issued.issue`): a page of a statement's lines is
    read from here by its number, where the document would be read and parsed whole."""

    __tablename__ = "issued_statement_line"
    __table_args__ = (
        ForeignKeyConstraint(
            ["period", "participant"],
            ["issued_statement.period", "issued_statement.participant"],
            ondelete="CASCADE",
        ),
    )

    period: str = Field(primary_key=True, max_length=7)
    participant: str = Field(primary_key=True, max_length=64)
    number: int = Field(primary_key=True)
    """Its place in the document's ``lines``, from 1."""
    line: str = Field(sa_type=Text)
    """The line's JSON object, as the document holds it."""
