"""Tables of the coalition point: the exchange is its system of record.

A member's coalition balance is the sum of ``remaining`` over their open lots. Each credit
opens one lot (``coalition_lot``) that expires at its own instant and records the program
that funded it. Each write the internal connector accepts is an operation
(``coalition_operation``), keyed by the saga's operation id like a partner's; a debit draws
on lots oldest first and records each draw (``coalition_draw``), so that reversing it puts
back exactly what it took, into the lots it took it from (what a lot that has expired since
gave goes into a new lot, drawn from the old one by the reversal: ``lots``). The expiry job records what it
expired (``coalition_expiry``) with the ledger transaction that posted the breakage.

Invariant (checked by ``exchange ledger verify``): for every lot,
``points = remaining + expired + drawn − restored`` (over its draws), and the sum of
``remaining`` equals the ledger's ``member-points`` balance of the point, but for operations
of sagas not yet posted.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Index, String
from sqlmodel import Field, SQLModel

from exchange.db.types import BigIdentity, ExactNumeric, UTCDateTime
from exchange.money import POINT_VALUE_SCALE


class CoalitionLot(SQLModel, table=True):
    """Points one credit gave a member, spent oldest first, expiring at ``expires_at``."""

    __tablename__ = "coalition_lot"
    __table_args__ = (
        CheckConstraint("remaining >= 0 AND expired >= 0 AND remaining + expired <= points", name="coalition_lot_sums"),
        # Spending and the member's expiring view read a member's lots oldest first.
        Index("ix_coalition_lot_member_expiry", "member_id", "expires_at", "id"),
        Index("ix_coalition_lot_expires_at", "expires_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIdentity, primary_key=True, autoincrement=True))
    member_id: str = Field(foreign_key="member.id", max_length=40)
    program_id: str = Field(foreign_key="program.id", max_length=64)
    """The coalition point's program."""
    funded_by: str | None = Field(default=None, foreign_key="program.id", max_length=64)
    """The program whose points paid for the lot (the conversion's source); NULL: the operator."""
    opened_by: str = Field(max_length=200, unique=True)
    """The credit operation that opened it; for a lot a debit's reversal opened with what expired
    lots gave back, the reversal's id and the funder after a ``#`` (``lots.renewal_of``)."""
    points: int = Field(sa_column=Column(BigInteger, nullable=False))
    remaining: int = Field(sa_column=Column(BigInteger, nullable=False))
    expired: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0"))
    earned_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    """The first instant the lot is expired: 00:00 on 1 January, local, two years on."""


class CoalitionOperation(SQLModel, table=True):
    """A write to the coalition point, as a partner would record it (``partners/CONTRACT.md``).

    ``kind`` is ``debit``, ``credit`` or ``reversal``; NULL for an id a reversal voided before
    it arrived. ``saga_id`` is the operation id up to its first ``:`` (the saga's step keys are
    ``<saga id>:<step>``): what ``exchange ledger verify`` joins to the ledger.
    """

    __tablename__ = "coalition_operation"

    operation_id: str = Field(primary_key=True, max_length=128)
    saga_id: str = Field(max_length=128, index=True)
    kind: str | None = Field(default=None, max_length=20)
    status: str = Field(max_length=20)
    member_ref: str | None = Field(default=None, max_length=128)
    points: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    reversed_points: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    reverses: str | None = Field(default=None, max_length=128)
    created_at: datetime = Field(sa_type=UTCDateTime)


class CoalitionDraw(SQLModel, table=True):
    """What one debit took from one lot, and how much of that a reversal has put back."""

    __tablename__ = "coalition_draw"
    __table_args__ = (CheckConstraint("restored >= 0 AND restored <= points", name="coalition_draw_restored"),)

    operation_id: str = Field(
        sa_column=Column(String(128), ForeignKey("coalition_operation.operation_id"), primary_key=True)
    )
    lot_id: int = Field(sa_column=Column(BigInteger, ForeignKey("coalition_lot.id"), primary_key=True))
    points: int = Field(sa_column=Column(BigInteger, nullable=False))
    restored: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class CoalitionExpiry(SQLModel, table=True):
    """Points the expiry job took out of one lot, and the ledger transaction that posted them."""

    __tablename__ = "coalition_expiry"

    id: int | None = Field(default=None, sa_column=Column(BigIdentity, primary_key=True, autoincrement=True))
    lot_id: int = Field(sa_column=Column(BigInteger, ForeignKey("coalition_lot.id"), nullable=False, index=True))
    points: int = Field(sa_column=Column(BigInteger, nullable=False))
    ledger_transaction_id: str = Field(max_length=100, index=True)
    expired_at: datetime = Field(sa_type=UTCDateTime)


class CoalitionLiability(SQLModel, table=True):
    """The point's outstanding liability at the end of a closed period, recorded by the closing:
    the ledger's ``member-points`` balance of the point over that period and every earlier one,
    valued at the point's value then (``liability_minor``, rounded half-even)."""

    __tablename__ = "coalition_liability"

    period: str = Field(primary_key=True, max_length=7)
    program_id: str = Field(max_length=64)
    points: int = Field(sa_column=Column(BigInteger, nullable=False))
    point_value: Decimal = Field(sa_type=ExactNumeric(18, POINT_VALUE_SCALE))
    liability_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    recorded_at: datetime = Field(sa_type=UTCDateTime)
