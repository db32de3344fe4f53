"""The rules of a status match, apart from any I/O.

Matching program A's tier into program B gives B's highest tier whose coalition level does
not exceed A's tier's level, capped by B's policy (``max_level``). Nothing is granted when B
grants no matches, when B has no tier at or below that level, when the member already holds
that tier or a higher one at B, or when the member's tier at A is itself a match (a match
is never the ground for another).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from exchange.programs.declarations import StatusMatchDeclaration

#: How long after a match a member must wait for the next one into the same program.
MATCH_COOLDOWN_MONTHS = 12


@dataclass(frozen=True, slots=True)
class Rung:
    """A program's tier and the coalition level it maps to."""

    name: str
    level: int


@dataclass(frozen=True, slots=True)
class Challenge:
    """Earn ``points`` or do ``activities`` while the match lasts to keep the tier
    ``extend_days`` longer."""

    points: int | None
    activities: int | None
    extend_days: int

    def met(self, points: int, activities: int) -> bool:
        if self.points is not None:
            return points >= self.points
        assert self.activities is not None
        return activities >= self.activities


@dataclass(frozen=True, slots=True)
class MatchPolicy:
    """A target program's status-match policy (only programs that grant matches have one)."""

    max_level: int
    valid_days: int
    challenge: Challenge | None

    @property
    def validity(self) -> timedelta:
        return timedelta(days=self.valid_days)

    @classmethod
    def from_stored(cls, stored: dict[str, Any] | None) -> MatchPolicy | None:
        """The policy in a program row's ``status_match`` column (``None``: grants none)."""
        if stored is None:
            return None
        declared = StatusMatchDeclaration.model_validate(stored)
        if not declared.grants:
            return None
        assert declared.max_level is not None and declared.valid_days is not None
        challenge = declared.challenge
        return cls(
            max_level=declared.max_level,
            valid_days=declared.valid_days,
            challenge=None
            if challenge is None
            else Challenge(points=challenge.points, activities=challenge.activities, extend_days=challenge.extend_days),
        )


class Outcome(StrEnum):
    GRANTED = "GRANTED"
    NOT_GRANTED = "NOT_GRANTED"
    """The target program grants no status matches."""
    NO_MATCHING_TIER = "NO_MATCHING_TIER"
    """The target has no tier at or below the level the match reaches."""
    ALREADY_HELD = "ALREADY_HELD"
    """The member's tier at the target is already at or above the matched one."""
    SOURCE_IS_MATCHED = "SOURCE_IS_MATCHED"
    """The member's source tier is itself a match."""


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    reason: str
    level: int | None = None
    """The level the match reaches: the source tier's level, capped by the policy."""
    tier: Rung | None = None
    """The target tier granted (only when ``outcome`` is GRANTED)."""

    @property
    def granted(self) -> bool:
        return self.outcome is Outcome.GRANTED


def decide(
    *,
    source_program: str,
    source: Rung,
    source_is_matched: bool,
    target_program: str,
    target_tiers: Sequence[Rung],
    current: Rung | None,
    policy: MatchPolicy | None,
) -> Decision:
    """What matching ``source`` into ``target_program`` gives, and why.

    ``target_tiers`` lowest first, as declared; ``current`` is the member's tier at the
    target now (``None`` if unknown).
    """
    held = f"{source.name} at {source_program} is coalition level {source.level}"
    if source_is_matched:
        return Decision(Outcome.SOURCE_IS_MATCHED, f"{held}, but it is itself a status match")
    if policy is None:
        return Decision(Outcome.NOT_GRANTED, f"{target_program} grants no status matches")
    level = min(source.level, policy.max_level)
    capped = f"; {target_program} grants up to level {policy.max_level}" if source.level > policy.max_level else ""
    within = [tier for tier in target_tiers if tier.level <= level]
    if not within:
        return Decision(
            Outcome.NO_MATCHING_TIER, f"{held}{capped}; {target_program} has no tier at level {level} or below", level
        )
    best_level = max(tier.level for tier in within)
    tier = next(tier for tier in within if tier.level == best_level)  # the first declared of equals
    reason = f"{held}{capped}; the highest tier of {target_program} at level {level} or below is {tier.name}"
    if current is not None and current.level >= tier.level:
        return Decision(
            Outcome.ALREADY_HELD,
            f"{reason}, and the member already holds {current.name} (level {current.level})",
            level,
        )
    return Decision(Outcome.GRANTED, reason, level, tier)


def next_match_allowed(last_match_at: datetime) -> datetime:
    """When a member may next be matched into a program they were matched into at
    ``last_match_at``: the same moment ``MATCH_COOLDOWN_MONTHS`` later (29 February gives
    28 February in a common year)."""
    years, month0 = divmod(last_match_at.month - 1 + MATCH_COOLDOWN_MONTHS, 12)
    year, month = last_match_at.year + years, month0 + 1
    day = last_match_at.day
    while True:
        try:
            return last_match_at.replace(year=year, month=month, day=day)
        except ValueError:
            day -= 1
