"""Tables of pricing: rate versions, promotions, quotes and limit usage counters."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from exchange.db.types import ExactNumeric, UTCDateTime
from exchange.money import PERCENT_SCALE, POINT_VALUE_SCALE


class RateVersion(SQLModel, table=True):
    """One immutable version of a pair's rate rule, valid from ``effective_from`` until
    ``effective_to`` (open-ended while current). A change never edits a version: it ends
    the current one and starts the next, so past quotes keep pointing at what they used."""

    __tablename__ = "rate_version"
    __table_args__ = (
        UniqueConstraint("from_program", "to_program", "version"),
        Index("ix_rate_version_pair_window", "from_program", "to_program", "effective_from"),
    )

    id: int | None = Field(default=None, primary_key=True)
    from_program: str = Field(foreign_key="program.id", max_length=64)
    to_program: str = Field(foreign_key="program.id", max_length=64)
    version: int
    effective_from: datetime = Field(sa_type=UTCDateTime)
    effective_to: datetime | None = Field(default=None, sa_type=UTCDateTime)
    origin: str = Field(max_length=10, description="derived, declared or partner")
    created_by: str = Field(max_length=100)
    created_at: datetime = Field(sa_type=UTCDateTime)
    source_point_value: Decimal = Field(sa_type=ExactNumeric(18, POINT_VALUE_SCALE))
    target_point_value: Decimal = Field(sa_type=ExactNumeric(18, POINT_VALUE_SCALE))
    fee_percent: Decimal = Field(sa_type=ExactNumeric(9, 4))
    fee_fixed: Decimal = Field(sa_type=ExactNumeric(18, 4))
    bands: list[list[int]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    bonus_every: int | None = None
    bonus_points: int | None = None
    minimum_points: int | None = None
    increment: int | None = None
    member_daily_cap: int | None = None
    member_monthly_cap: int | None = None
    member_yearly_cap: int | None = None


class Promotion(SQLModel, table=True):
    """A time-limited bonus percent on conversions into ``program_id`` (from ``sources``, or all).

    Its ``id`` is the partner's own choice and names it within its program only (the key is
    both): one partner's ids neither block nor reveal another's."""

    __tablename__ = "promotion"
    # The console lists a program's promotions the latest start first, a page at a time.
    __table_args__ = (Index("ix_promotion_program_start", "program_id", "starts_at", "id"),)

    id: str = Field(primary_key=True, max_length=64)
    program_id: str = Field(primary_key=True, foreign_key="program.id", max_length=64, index=True)
    sources: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    bonus_percent: Decimal = Field(sa_type=ExactNumeric(9, PERCENT_SCALE))
    starts_at: datetime = Field(sa_type=UTCDateTime)
    ends_at: datetime = Field(sa_type=UTCDateTime)
    planned_ends_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """The end it was made with, kept when ``endPromotion`` ended it before then (``ends_at`` is
    the end it had): a repeat of the request that made it is known as one. None: not ended
    early (or ended before this was kept, migration 0052)."""
    origin: str = Field(max_length=10)
    created_by: str = Field(max_length=100)
    created_at: datetime = Field(sa_type=UTCDateTime)


class Quote(SQLModel, table=True):
    """A price fixed for a short time: executing it converts exactly these amounts."""

    __tablename__ = "quote"
    __table_args__ = (Index("ix_quote_expires", "expires_at"),)

    id: str = Field(primary_key=True, max_length=36)
    member_id: str = Field(max_length=64, index=True)
    from_program: str = Field(foreign_key="program.id", max_length=64)
    to_program: str = Field(foreign_key="program.id", max_length=64)
    rate_version_id: int = Field(foreign_key="rate_version.id", index=True)
    points_in: int = Field(sa_column=Column(BigInteger, nullable=False))
    points_out: int = Field(sa_column=Column(BigInteger, nullable=False))
    base_points: int = Field(sa_column=Column(BigInteger, nullable=False))
    step_bonus_points: int = Field(sa_column=Column(BigInteger, nullable=False))
    promotion_bonus_points: int = Field(sa_column=Column(BigInteger, nullable=False))
    tier_bonus_points: int = Field(sa_column=Column(BigInteger, nullable=False))
    value_cap_points: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    """The points the value cap cut from the parts above (``rules.PriceBreakdown``); 0 on quotes
    made before it was kept (migration 0035)."""
    currency: str = Field(max_length=3)
    money_value_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    fee_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    promotions: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    member_level: int
    tier_bonus_percent: Decimal = Field(sa_type=ExactNumeric(9, PERCENT_SCALE))
    tier_activity: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    """The member's tier activity marker (``member.tier_activity``) as it stood when the level of
    ``tier_bonus_percent`` was read: a quote with a tier bonus is executed only while it still
    stands (no account unlinked, no status match ended since). NULL on quotes made before it was
    kept (migration 0056), and on those that did not read it."""
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    usages: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    """The limit counters executing it counts against, with the amounts (``limits.Usage``):
    fixed with the price. NULL on quotes made before they were recorded; those must be asked
    for again."""
    route: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    """The legs of a quote routed through the coalition point (``routes.PricedLeg.record``), in
    order; NULL for a direct quote, whose one leg is the row itself."""


class PricingRevision(SQLModel, table=True):
    """One row whose ``revision`` moves with every change to rate versions or promotions (the
    database's triggers move it), so a process may keep them in memory and know when not to."""

    __tablename__ = "pricing_revision"
    __table_args__ = (CheckConstraint("id = 1", name="pricing_revision_single_row"),)

    id: int = Field(default=1, primary_key=True)
    revision: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class LimitUsage(SQLModel, table=True):
    """How much of one limit one subject has used in one window (e.g. a member's day)."""

    __tablename__ = "limit_usage"

    key: str = Field(primary_key=True, max_length=200)
    used: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
