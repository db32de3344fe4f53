"""The conversion table: one row per conversion, carrying its saga's state."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field

from exchange.sagas.idempotency import IDEMPOTENCY_KEY_LENGTH
from exchange.sagas.state import DONE, SagaState

#: A conversion's id: a UUID.
CONVERSION_ID_LENGTH = 36


class ConversionStatus(StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    REVERSED = "REVERSED"


class SagaStep(StrEnum):
    """The next thing a PENDING conversion's saga must do."""

    DEBIT = "DEBIT"
    CREDIT = "CREDIT"
    REVERSE_DEBIT = "REVERSE_DEBIT"
    DONE = DONE


class Conversion(SagaState, table=True):
    __tablename__ = "conversion"
    __table_args__ = (
        UniqueConstraint("member_id", "idempotency_key"),
        Index("ix_conversion_due", "status", "next_attempt_at"),
        Index("ix_conversion_member_created", "member_id", "created_at"),
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
        return f"{self.id}:credit"

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
