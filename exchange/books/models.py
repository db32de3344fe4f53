"""Tables of the books package."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column
from sqlmodel import Field, SQLModel

from exchange.db.types import UTCDateTime


class BudgetCrossing(SQLModel, table=True):
    """A program's issue spend crossed one alert level of its budget in one period.

    The primary key is what makes the alert once-only: whoever first computes the books after
    the crossing inserts the row (``ON CONFLICT DO NOTHING``) and logs it; every later read finds
    it there and logs nothing.
    """

    __tablename__ = "budget_crossing"

    program_id: str = Field(primary_key=True, max_length=64, foreign_key="program.id", ondelete="CASCADE")
    period: str = Field(primary_key=True, max_length=7)
    level: str = Field(primary_key=True, max_length=10)
    crossed_at: datetime = Field(sa_type=UTCDateTime)
    spend_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    """The spend (minor units) when the crossing was first seen."""
    budget_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    """The period's budget (minor units) it was compared with."""


class OutstandingPoints(SQLModel, table=True):
    """A program's outstanding points at the end of a closed period, recorded by its closing:
    the net points the exchange moved into its members' accounts over that period and every
    earlier one (``LedgerFigures.outstanding``). A later period's figure is this plus the
    entries of the periods since, so the books never sum a program's whole history."""

    __tablename__ = "outstanding_points"

    # (program, period): the primary key's index finds a program's latest record before a period.
    program_id: str = Field(primary_key=True, max_length=64)
    period: str = Field(primary_key=True, max_length=7)
    points: int = Field(sa_column=Column(BigInteger, nullable=False))
