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
