"""GraphQL types of status matches: previews, matches and their challenges.

A match is its member's, and the target program's partner's (who holds the tier and reports
the challenge's progress).
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from exchange.api.permissions import (
    PUBLIC,
    Rule,
    authorize_fields,
    own_member,
    own_program,
    requires,
    source,
)
from exchange.api.types.programs import Tier
from exchange.auth.scopes import Scope
from exchange.tiers.matching import Assessment
from exchange.tiers.models import MatchStatus as MatchStatusValue
from exchange.tiers.models import StatusMatch as StatusMatchRow
from exchange.tiers.policy import Challenge, Outcome

#: A match is seen by its member and by the partner of the program it matched into.
STATUS_MATCH_RULE: Rule = own_member(source("member_id")) | (
    requires(Scope.PARTNER_READ, Scope.PARTNER_WRITE) & own_program(source("to_program"))
)


@strawberry.enum(description="Where a status match stands.")
class StatusMatchStatus(Enum):
    PENDING = strawberry.enum_value(
        MatchStatusValue.PENDING.value, description="Recorded; the tier is being pushed to the target partner."
    )
    ACTIVE = strawberry.enum_value(
        MatchStatusValue.ACTIVE.value, description="The target partner holds the matched tier until `expiresAt`."
    )
    UPDATING = strawberry.enum_value(
        MatchStatusValue.UPDATING.value,
        description="Being extended (its challenge met) or reverted (past `expiresAt`) at the target partner.",
    )
    EXPIRED = strawberry.enum_value(
        MatchStatusValue.EXPIRED.value,
        description="Reverted at the target partner: past `expiresAt`, or early when its extension was reverted "
        "there (`failureCode` PARTNER_CONTRADICTED: recorded otherwise than sent; PARTNER_REFUSED: reverted by "
        "the partner on its own).",
    )
    FAILED = strawberry.enum_value(
        MatchStatusValue.FAILED.value,
        description="The target partner never applied the tier, recorded another tier, member or expiry than sent "
        "(`failureCode` PARTNER_CONTRADICTED: reverted), or reverted it on its own before the exchange held it "
        "(`failureCode` PARTNER_REFUSED); the match does not count towards the yearly limit.",
    )


@strawberry.enum(description="What the target program's policy gives the member, in one word.")
class StatusMatchOutcome(Enum):
    GRANTED = strawberry.enum_value(Outcome.GRANTED.value, description="The target program grants the matched tier.")
    NOT_GRANTED = strawberry.enum_value(
        Outcome.NOT_GRANTED.value, description="The target program grants no status matches."
    )
    NO_MATCHING_TIER = strawberry.enum_value(
        Outcome.NO_MATCHING_TIER.value,
        description="The target program has no tier at or below the level the match reaches.",
    )
    ALREADY_HELD = strawberry.enum_value(
        Outcome.ALREADY_HELD.value,
        description="The member's tier at the target is already at or above the matched one.",
    )
    SOURCE_IS_MATCHED = strawberry.enum_value(
        Outcome.SOURCE_IS_MATCHED.value,
        description="The member's tier at the source program is itself a match, which is not matched again.",
    )


@authorize_fields(PUBLIC)
@strawberry.type(description="What a matched member must do while the match lasts to keep the tier longer.")
class StatusMatchChallenge:
    points: int | None = strawberry.field(description="Points to earn at the target program (or null).")
    activities: int | None = strawberry.field(description="Qualifying activities to do there (or null).")
    extend_days: int = strawberry.field(description="Days the tier is kept beyond the match's expiry once met.")

    @classmethod
    def of(cls, challenge: Challenge | None) -> StatusMatchChallenge | None:
        if challenge is None:
            return None
        return cls(points=challenge.points, activities=challenge.activities, extend_days=challenge.extend_days)


@authorize_fields(own_member(source("member_id")))
@strawberry.type(description="What a status match would give the member now, and why (tiers read live).")
class StatusMatchPreview:
    from_program: strawberry.ID = strawberry.field(description="The program whose tier would be matched.")
    to_program: strawberry.ID = strawberry.field(description="The program the tier would be matched into.")
    source_tier: Tier = strawberry.field(description="The member's tier at the source, as its partner reports it now.")
    current_tier: Tier = strawberry.field(description="The member's tier at the target now.")
    outcome: StatusMatchOutcome = strawberry.field(description="What the target's policy gives, in one word.")
    granted: bool = strawberry.field(description="Whether requesting the match now would grant a tier.")
    reason: str = strawberry.field(description="Why, in words: the levels, the policy's cap, the tier chosen.")
    level: int | None = strawberry.field(description="The coalition level the match reaches (capped by policy).")
    tier: Tier | None = strawberry.field(description="The target tier the match would give.")
    expires_at: datetime | None = strawberry.field(description="When that match would end.")
    challenge: StatusMatchChallenge | None = strawberry.field(description="What keeps the tier longer.")
    next_match_possible_at: datetime | None = strawberry.field(
        description="Set when the member was matched into the target less than 12 months ago: "
        "when the next match becomes possible."
    )
    member_id: strawberry.Private[str]

    @classmethod
    def of(cls, member_id: str, assessment: Assessment) -> StatusMatchPreview:
        decision = assessment.decision
        return cls(
            from_program=strawberry.ID(assessment.from_program),
            to_program=strawberry.ID(assessment.to_program),
            source_tier=Tier(name=assessment.source.name, level=assessment.source.level),
            current_tier=Tier(name=assessment.current.name, level=assessment.current.level),
            outcome=StatusMatchOutcome(decision.outcome.value),
            granted=decision.granted and assessment.possible_at is None,
            reason=decision.reason,
            level=decision.level,
            tier=Tier(name=decision.tier.name, level=decision.tier.level) if decision.tier else None,
            expires_at=assessment.expires_at,
            challenge=StatusMatchChallenge.of(assessment.challenge),
            next_match_possible_at=assessment.possible_at,
            member_id=member_id,
        )


@authorize_fields(STATUS_MATCH_RULE)
@strawberry.type(description="A status match: a tier of one program recognised in another, for a time.")
class StatusMatch:
    id: strawberry.ID = strawberry.field(description="The match's id (the partner's operation ids start with it).")
    member_id: strawberry.ID = strawberry.field(description="The member's exchange id.")
    from_program: strawberry.ID = strawberry.field(description="The program whose tier was matched.")
    to_program: strawberry.ID = strawberry.field(description="The program the tier was matched into.")
    source_tier: Tier = strawberry.field(description="The source tier its partner verified live.")
    tier: Tier = strawberry.field(description="The target tier granted.")
    status: StatusMatchStatus = strawberry.field(description="Where it stands.")
    expires_at: datetime = strawberry.field(description="When the tier lapses and is reverted.")
    extended: bool = strawberry.field(description="Whether a met challenge extended it.")
    challenge: StatusMatchChallenge | None = strawberry.field(
        description="What keeps the tier longer; null: the target's policy sets no challenge."
    )
    points_earned: int = strawberry.field(description="Points the target partner reported towards the challenge.")
    activities_done: int = strawberry.field(description="Activities the target partner reported.")
    failure_code: str | None = strawberry.field(
        description="FAILED: why the target did not apply the tier, an error code of the closed list "
        "(`PARTNER_REFUSED`, ...) or `PARTNER_CONTRADICTED` (it recorded another tier, member or expiry than "
        "sent); EXPIRED "
        "early: why its extension was reverted; ACTIVE: why an extension was refused (the expiry kept); else null."
    )
    failure_message: str | None = strawberry.field(description="Set with `failureCode`: why, in words; else null.")
    created_at: datetime = strawberry.field(description="When it was requested.")

    @classmethod
    def from_row(cls, row: StatusMatchRow) -> StatusMatch:
        return cls(
            id=strawberry.ID(row.id),
            member_id=strawberry.ID(row.member_id),
            from_program=strawberry.ID(row.from_program),
            to_program=strawberry.ID(row.to_program),
            source_tier=Tier(name=row.source_tier, level=row.source_level),
            tier=Tier(name=row.tier, level=row.level),
            status=StatusMatchStatus(row.status),
            expires_at=row.expires_at,
            extended=row.extended,
            challenge=StatusMatchChallenge.of(row.challenge),
            points_earned=row.points_earned,
            activities_done=row.activities_done,
            failure_code=row.failure_code,
            failure_message=row.failure_message,
            created_at=row.created_at,
        )
