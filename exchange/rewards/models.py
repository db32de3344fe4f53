"""Tables of the rewards package: published rewards and members' redemptions of them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from exchange.db.types import UTCDateTime
from exchange.idempotency import IDEMPOTENCY_KEY_LENGTH
from exchange.sagas.state import DONE, SagaState


class RewardKind(StrEnum):
    DIRECT = "DIRECT"
    """The publisher delivers the reward (a coupon, a ticket) and confirms it."""
    LOTTERY = "LOTTERY"
    """The redemption is an entry in the publisher's draw; nothing is delivered to confirm."""


#: Columns' lengths, which what clients send is held to.
TITLE_LENGTH = 120
DESCRIPTION_LENGTH = 1000


class Reward(SQLModel, table=True):
    """A reward a partner publishes; ``stock`` is what is left (never below zero)."""

    __tablename__ = "reward"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="ck_reward_stock_not_negative"),
        # Listings page through rewards by program, then id (``catalog.list_rewards``).
        Index("ix_reward_program", "program_id", "id"),
    )

    id: str = Field(primary_key=True, max_length=64)
    program_id: str = Field(foreign_key="program.id", max_length=64, description="The publishing partner's program.")
    title: str = Field(max_length=TITLE_LENGTH)
    description: str = Field(default="", max_length=DESCRIPTION_LENGTH)
    kind: str = Field(max_length=10)
    price_minor: int = Field(sa_column=Column(BigInteger, nullable=False), description="Settlement price, minor units.")
    currency: str = Field(max_length=3)
    stock: int
    per_member_limit: int | None = None
    min_level: int = 0
    available_from: datetime = Field(sa_type=UTCDateTime)
    available_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)
    publish_digest: str | None = Field(
        default=None,
        max_length=64,
        description="SHA-256 of the publishing request's terms (``catalog.publish``): the same request "
        "again answers this reward, another under its id is refused. None: published before revision 0050.",
    )


class RedemptionStatus(StrEnum):
    PENDING = "PENDING"
    """Stock reserved; the member is being debited."""
    HELD = "HELD"
    """Stock reserved; held by the paying program's risk gates for staff review, nothing debited."""
    COMPLETED = "COMPLETED"
    """Paid and posted: awaiting delivery (direct) or entered in the draw (lottery)."""
    DELIVERED = "DELIVERED"
    """The publisher confirmed delivery."""
    FAILED = "FAILED"
    """The member was never debited; the stock came back."""
    REVERSING = "REVERSING"
    """Cancelled or undelivered: points, ledger and stock are being given back."""
    REVERSED = "REVERSED"
    """Points, ledger and stock were given back."""


class RedemptionStep(StrEnum):
    DEBIT = "DEBIT"
    AWAIT_DEBIT = "AWAIT_DEBIT"
    """The paying partner accepted the debit pending; waiting for its word."""
    POST = "POST"
    REVERSE_DEBIT = "REVERSE_DEBIT"
    UNPOST = "UNPOST"
    DONE = DONE


class CancelledBy(StrEnum):
    MEMBER = "MEMBER"
    PUBLISHER = "PUBLISHER"
    TIMEOUT = "TIMEOUT"
    """No delivery was confirmed in time."""


#: A redemption's id (a UUID) is never longer: a page's cursor that is, is none of theirs.
REDEMPTION_ID_LENGTH = 36


class Redemption(SagaState, table=True):
    __tablename__ = "redemption"
    __table_args__ = (
        UniqueConstraint("member_id", "idempotency_key"),
        Index("ix_redemption_due", "status", "next_attempt_at"),
        Index("ix_redemption_delivery", "status", "deliver_by"),
        # A publisher's redemptions to confirm, the most urgent first (``awaiting_delivery``).
        Index("ix_redemption_to_confirm", "publisher", "kind", "status", "deliver_by", "id"),
        Index("ix_redemption_member_created", "member_id", "created_at"),
        Index("ix_redemption_account_created", "paying_program", "paying_ref", "created_at"),
        Index("ix_redemption_reward", "reward_id"),
    )

    id: str = Field(primary_key=True, max_length=REDEMPTION_ID_LENGTH)
    member_id: str = Field(foreign_key="member.id", max_length=40)
    idempotency_key: str = Field(max_length=IDEMPOTENCY_KEY_LENGTH)
    reward_id: str = Field(foreign_key="reward.id", max_length=64)
    publisher: str = Field(foreign_key="program.id", max_length=64)
    paying_program: str = Field(foreign_key="program.id", max_length=64)
    paying_ref: str = Field(max_length=128, description="The member's id at the paying program.")
    kind: str = Field(max_length=10)
    points: int = Field(sa_column=Column(BigInteger, nullable=False))
    price_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    fee_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    usages: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    deliver_by: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancelled_by: str | None = Field(default=None, max_length=10)

    @property
    def debit_operation(self) -> str:
        return f"{self.id}:debit"

    @property
    def reverse_debit_operation(self) -> str:
        return f"{self.id}:reverse-debit"

    @property
    def ledger_transaction_id(self) -> str:
        return f"redemption:{self.id}"

    @property
    def reversal_transaction_id(self) -> str:
        return f"redemption:{self.id}:reversal"
