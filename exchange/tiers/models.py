"""The status-match table: one row per match a member asked for, carrying its saga's state."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from exchange.db.types import UTCDateTime
from exchange.idempotency import IDEMPOTENCY_KEY_LENGTH
from exchange.programs.models import TIER_NAME_LENGTH
from exchange.sagas.state import DONE, SagaState
from exchange.tiers.policy import Challenge


class MatchStatus(StrEnum):
    PENDING = "PENDING"
    """Recorded; the tier is being pushed to the target partner."""
    ACTIVE = "ACTIVE"
    """The target partner holds the matched tier until ``expires_at``."""
    UPDATING = "UPDATING"
    """Being extended (challenge met) or reverted (past ``expires_at``) at the target partner."""
    EXPIRED = "EXPIRED"
    """Reverted at the target partner."""
    FAILED = "FAILED"
    """The target partner does not hold the tier (never applied it, or reverted it before the
    exchange held it); the match does not count."""


class MatchStep(StrEnum):
    PUSH = "PUSH"
    EXTEND = "EXTEND"
    REVERT = "REVERT"
    DONE = DONE


#: Statuses that use up the member's one match per target program per 12 months.
COUNTED = (MatchStatus.PENDING, MatchStatus.ACTIVE, MatchStatus.UPDATING, MatchStatus.EXPIRED)


class StatusMatch(SagaState, table=True):
    __tablename__ = "status_match"
    __table_args__ = (
        Index("ix_status_match_member_target", "member_id", "to_program", "created_at"),
        Index("ix_status_match_due", "status", "next_attempt_at"),
        Index("ix_status_match_expiry", "status", "expires_at"),
        Index("ix_status_match_member_key", "member_id", "idempotency_key", unique=True),
    )

    id: str = Field(primary_key=True, max_length=36)
    member_id: str = Field(foreign_key="member.id", max_length=40)
    idempotency_key: str | None = Field(
        default=None,
        max_length=IDEMPOTENCY_KEY_LENGTH,
        description="The member's key for the request, if they gave one (unique per member; none for "
        "requests sent without one, which are not idempotent).",
    )
    claimed_tier: str | None = Field(
        default=None,
        max_length=TIER_NAME_LENGTH,
        description="The tier the member said they held at the source, if they said (part of what a key names).",
    )
    from_program: str = Field(foreign_key="program.id", max_length=64)
    to_program: str = Field(foreign_key="program.id", max_length=64)
    source_ref: str = Field(max_length=128, description="The member's id at the source program.")
    target_ref: str = Field(max_length=128, description="The member's id at the target program.")
    source_tier: str = Field(max_length=60, description="The tier the source partner reported, live.")
    source_level: int
    tier: str = Field(max_length=60, description="The target program's tier granted.")
    level: int
    expires_at: datetime = Field(sa_type=UTCDateTime)
    tier_operation: str = Field(max_length=60, description="The partner operation that holds the tier now.")
    challenge_points: int | None = Field(default=None, description="Points to earn to keep the tier longer.")
    challenge_activities: int | None = Field(default=None, description="Activities to do to keep the tier longer.")
    extend_days: int | None = None
    points_earned: int = 0
    activities_done: int = 0
    extended: bool = False

    @property
    def challenge(self) -> Challenge | None:
        """The challenge the policy set when the match was made (``None``: none)."""
        if self.extend_days is None:
            return None
        return Challenge(
            points=self.challenge_points, activities=self.challenge_activities, extend_days=self.extend_days
        )

    @property
    def match_operation(self) -> str:
        return f"{self.id}:match"

    @property
    def void_operation(self) -> str:
        return f"{self.id}:void-match"

    @property
    def extend_operation(self) -> str:
        return f"{self.id}:extend"

    @property
    def void_extend_operation(self) -> str:
        return f"{self.id}:void-extend"

    @property
    def revert_operation(self) -> str:
        return f"{self.id}:revert"


class StatusMatchReport(SQLModel, table=True):
    """A partner's report of challenge progress sent with an idempotency key: the same key
    again is the same report, answered without counting it twice."""

    __tablename__ = "status_match_report"

    match_id: str = Field(primary_key=True, foreign_key="status_match.id", max_length=36)
    idempotency_key: str = Field(primary_key=True, max_length=IDEMPOTENCY_KEY_LENGTH)
    points: int
    activities: int
    recorded_at: datetime = Field(sa_type=UTCDateTime)
