"""Tables of the programs package: the coalition's ladder and currency, programs and tiers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from exchange.db.types import ExactNumeric, UTCDateTime
from exchange.money import POINT_VALUE_SCALE, Currency

#: The longest name a program may give a tier.
TIER_NAME_LENGTH = 60


class ProgramKind(StrEnum):
    """Whose points a program's are: a partner's (kept in its own points system, reached through
    its connector) or the coalition point (kept by the exchange itself, in lots)."""

    PARTNER = "PARTNER"
    COALITION = "COALITION"


class CoalitionSettings(SQLModel, table=True):
    """The single row that says which currency the coalition settles in."""

    __tablename__ = "coalition_settings"

    id: int = Field(default=1, primary_key=True)
    settlement_currency: str = Field(max_length=3)
    currency_minor_units: int
    fee_percent: Decimal = Field(default=Decimal(0), sa_type=ExactNumeric(9, 4))
    fee_fixed: Decimal = Field(default=Decimal(0), sa_type=ExactNumeric(18, 4))
    tier_bonus_percent: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    point_program_id: str | None = Field(
        default=None, max_length=64, description="The coalition point's program id, when one is declared."
    )
    point_expiry: str | None = Field(default=None, max_length=40, description="``PointExpiry`` of the point's lots.")
    point_timezone: str | None = Field(default=None, max_length=64, description="The zone the expiry follows.")
    point_breakage: str | None = Field(
        default=None, max_length=20, description="``BreakageKeeper``: who keeps the value of expired points."
    )

    @property
    def currency(self) -> Currency:
        return Currency(self.settlement_currency, self.currency_minor_units)

    def tier_bonus_for(self, level: int) -> Decimal:
        """The tier bonus percent of a coalition level (0 where none is declared)."""
        return Decimal(self.tier_bonus_percent[level]) if level < len(self.tier_bonus_percent) else Decimal(0)


class CoalitionLevel(SQLModel, table=True):
    """One rung of the coalition tier ladder (0 is the entry level)."""

    __tablename__ = "coalition_level"

    level: int = Field(primary_key=True)
    name: str = Field(max_length=40)


class Program(SQLModel, table=True):
    """A partner's loyalty program, as declared in ``partners/<id>.toml``."""

    __tablename__ = "program"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=80)
    kind: str = Field(default=ProgramKind.PARTNER.value, max_length=20)
    """``ProgramKind``: ``COALITION`` for the point the exchange keeps itself."""
    category: str = Field(max_length=20)
    point_name: str = Field(max_length=40)
    point_name_plural: str = Field(max_length=40)
    """What several points are called (declared, or ``point_name`` made plural)."""
    point_value: Decimal = Field(sa_type=ExactNumeric(18, POINT_VALUE_SCALE))
    minimum_points: int
    increment: int
    member_daily_cap: int | None = None
    member_monthly_cap: int | None = None
    member_yearly_cap: int | None = None
    monthly_issue_budget: int | None = None
    budget_monthly_issue: Decimal | None = Field(
        default=None,
        sa_type=ExactNumeric(18, 4),
        description="The declared monthly issue budget (settlement currency): the books' alerts.",
    )
    connector: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status_match: dict[str, Any] | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="The declared status-match policy; null for a program that grants no matches.",
    )
    risk: dict[str, Any] | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="The declared risk gates (``exchange.risk.policy``); null for a program with none.",
    )
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class ProgramTier(SQLModel, table=True):
    """A program's own tier and the coalition level it maps to; ``rank`` orders them."""

    __tablename__ = "program_tier"
    __table_args__ = (UniqueConstraint("program_id", "name"),)

    program_id: str = Field(foreign_key="program.id", primary_key=True, max_length=64, ondelete="CASCADE")
    rank: int = Field(primary_key=True)
    name: str = Field(max_length=TIER_NAME_LENGTH)
    level: int = Field(foreign_key="coalition_level.level")


class PeriodPointValue(SQLModel, table=True):
    """A program's point value and monthly issue budget as a period's closing fixed them: what
    that period's books value its points at, and budget its issuing against, ever after,
    whatever the program declares later (:mod:`.valuation`)."""

    __tablename__ = "period_point_value"

    period: str = Field(primary_key=True, max_length=7)
    program_id: str = Field(primary_key=True, max_length=64, foreign_key="program.id", ondelete="CASCADE")
    point_value: Decimal = Field(sa_type=ExactNumeric(18, POINT_VALUE_SCALE))
    monthly_issue: Decimal | None = Field(
        default=None,
        sa_type=ExactNumeric(18, 4),
        description="``Program.budget_monthly_issue`` at the closing (none: it declared no budget then).",
    )
    fixed_at: datetime = Field(sa_type=UTCDateTime)
