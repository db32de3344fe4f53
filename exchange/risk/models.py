"""The risk decision log: every gate's verdict on a link, a conversion or a redemption, staff's
on a hold, and how a hold ended otherwise (expired, or a redemption cancelled)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, Index
from sqlmodel import Field, SQLModel

from exchange.db.types import BigIdentity, UTCDateTime


class Decision(StrEnum):
    ALLOW = "ALLOW"
    REFUSE = "REFUSE"
    HOLD = "HOLD"
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    CANCEL = "CANCEL"
    """A held redemption's member or publisher cancelled it before staff decided."""


class Subject(StrEnum):
    """What was decided on."""

    LINK = "LINK"
    CONVERSION = "CONVERSION"
    REDEMPTION = "REDEMPTION"


class RiskDecision(SQLModel, table=True):
    """One decision and its reason. ``rule`` is the gate that decided (``NAME_MISMATCH``,
    ``VELOCITY_EXCEEDED``, ``HOLD_ABOVE``, ...; null for an allow that no gate stopped);
    ``decided_by`` is the staff client that approved or rejected a hold (null: the gates)."""

    __tablename__ = "risk_decision"
    __table_args__ = (
        Index("ix_risk_decision_conversion", "conversion_id"),
        Index("ix_risk_decision_redemption", "redemption_id"),
        Index("ix_risk_decision_member", "member_id", "decided_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIdentity, primary_key=True, autoincrement=True))
    subject: str = Field(max_length=12)
    decision: str = Field(max_length=8)
    rule: str | None = Field(default=None, max_length=40)
    reason: str = Field(max_length=500)
    member_id: str = Field(max_length=40)
    program_id: str = Field(max_length=64)
    member_ref: str = Field(max_length=128)
    conversion_id: str | None = Field(default=None, max_length=36)
    redemption_id: str | None = Field(default=None, max_length=36)
    points: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    decided_by: str | None = Field(default=None, max_length=80)
    decided_at: datetime = Field(sa_type=UTCDateTime)
