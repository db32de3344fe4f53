"""The conversion table: one row per conversion, carrying its saga's state; and the credits
files sent to batch-mode partners (:mod:`exchange.conversions.batches`)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from exchange.db.types import UTCDateTime
from exchange.idempotency import IDEMPOTENCY_KEY_LENGTH
from exchange.sagas.state import DONE, SagaState

#: A conversion's id: a UUID.
CONVERSION_ID_LENGTH = 36


class ConversionStatus(StrEnum):
    #: Waiting for staff to approve or reject it (a risk gate's hold); nothing moved yet.
    HELD = "HELD"
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    REVERSED = "REVERSED"


class SagaStep(StrEnum):
    """The next thing a PENDING conversion's saga must do."""

    DEBIT = "DEBIT"
    AWAIT_DEBIT = "AWAIT_DEBIT"
    """The source partner accepted the debit pending; waiting for its word."""
    CREDIT = "CREDIT"
    AWAIT_CREDIT = "AWAIT_CREDIT"
    """The target partner accepted the credit pending, or it is queued for a batch partner's
    credits file; waiting for its word."""
    REVERSE_DEBIT = "REVERSE_DEBIT"
    DONE = DONE


class Conversion(SagaState, table=True):
    __tablename__ = "conversion"
    __table_args__ = (
        UniqueConstraint("member_id", "idempotency_key"),
        Index("ix_conversion_due", "status", "next_attempt_at"),
        Index("ix_conversion_member_created", "member_id", "created_at"),
        Index("ix_conversion_account_created", "from_program", "source_ref", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=CONVERSION_ID_LENGTH)
    member_id: str = Field(max_length=40)
    idempotency_key: str = Field(max_length=IDEMPOTENCY_KEY_LENGTH)
    quote_id: str = Field(foreign_key="quote.id", max_length=36, unique=True)
    rate_version_id: int = Field(foreign_key="rate_version.id")
    from_program: str = Field(foreign_key="program.id", max_length=64)
    to_program: str = Field(foreign_key="program.id", max_length=64)
    source_ref: str = Field(max_length=128, description="The member's id at the source program.")
    target_ref: str = Field(max_length=128, description="The member's id at the target program.")
    points_in: int = Field(sa_column=Column(BigInteger, nullable=False))
    points_out: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    money_value_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    fee_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    usages: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    route: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    """The quote's legs through the coalition point (NULL: direct); each posts its own clearing
    transaction."""

    @property
    def debit_operation(self) -> str:
        return f"{self.id}:debit"

    @property
    def credit_operation(self) -> str:
        return credit_operation(self.id)

    @property
    def reverse_debit_operation(self) -> str:
        return f"{self.id}:reverse-debit"

    @property
    def void_credit_operation(self) -> str:
        return f"{self.id}:void-credit"

    @property
    def ledger_transaction_ids(self) -> list[str]:
        """The clearing transactions it posts, one per leg: ``conversion:<id>`` for a direct
        conversion, ``conversion:<id>:1`` and ``:2`` for one through the coalition point."""
        if not self.route:
            return [f"conversion:{self.id}"]
        return [f"conversion:{self.id}:{number}" for number in range(1, len(self.route) + 1)]


def credit_operation(conversion_id: str) -> str:
    """The operation id of a conversion's credit at the target partner."""
    return f"{conversion_id}:credit"


class CreditBatchStatus(StrEnum):
    ASSEMBLED = "ASSEMBLED"
    """Its lines are chosen; the file is still to be sent (or sent again)."""
    SENT = "SENT"
    """The partner took the file; its result file is awaited."""
    SETTLED = "SETTLED"
    """The result file was applied (lines it left out are polled one by one)."""


class CreditBatch(SQLModel, table=True):
    """One credits file for a batch-mode partner: the credits that waited for it when it was made."""

    __tablename__ = "credit_batch"
    __table_args__ = (Index("ix_credit_batch_program_status", "program_id", "status"),)

    id: str = Field(primary_key=True, max_length=36)
    program_id: str = Field(foreign_key="program.id", max_length=64)
    status: str = Field(max_length=10)
    lines: int = 0
    results: int = Field(default=0, description="Lines of the result file applied.")
    created_at: datetime = Field(sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    settled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CreditBatchLine(SQLModel, table=True):
    """A conversion's credit in a credits file; a conversion is in one file at most."""

    __tablename__ = "credit_batch_line"
    __table_args__ = (Index("ix_credit_batch_line_batch", "batch_id", "conversion_id"),)

    conversion_id: str = Field(primary_key=True, foreign_key="conversion.id", max_length=CONVERSION_ID_LENGTH)
    batch_id: str = Field(foreign_key="credit_batch.id", max_length=36)
