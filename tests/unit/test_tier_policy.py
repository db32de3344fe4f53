"""The status-match rules, edge by edge: what a tier maps to, and when nothing is granted."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchange.programs.declarations import DeclarationError, read_partners_directory
from exchange.tiers.policy import (
    Challenge,
    Decision,
    MatchPolicy,
    Outcome,
    Rung,
    decide,
    next_match_allowed,
)

AIRLINE = [Rung("Base", 0), Rung("Silver", 1), Rung("Gold", 2), Rung("Diamond", 4)]
MUSIC = [Rung("Free", 0), Rung("Premium", 1), Rung("Family", 1)]
UP_TO_GOLD = MatchPolicy(max_level=2, valid_days=90, challenge=Challenge(points=5000, activities=None, extend_days=365))
UP_TO_DIAMOND = MatchPolicy(max_level=4, valid_days=90, challenge=None)


def match(
    source: Rung, target: list[Rung], policy: MatchPolicy | None, current: Rung | None = None, matched: bool = False
) -> Decision:
    return decide(
        source_program="harbor-bank",
        source=source,
        source_is_matched=matched,
        target_program="formosa-air",
        target_tiers=target,
        current=current or target[0],
        policy=policy,
    )


def test_a_tier_gets_the_targets_highest_tier_at_or_below_its_level() -> None:
    decision = match(Rung("Platinum Card", 2), AIRLINE, UP_TO_DIAMOND)
    assert decision.outcome is Outcome.GRANTED and decision.tier == Rung("Gold", 2) and decision.level == 2


def test_a_level_between_the_targets_tiers_gets_the_tier_below_it() -> None:
    decision = match(Rung("Infinite", 3), AIRLINE, UP_TO_DIAMOND)
    assert decision.tier == Rung("Gold", 2) and decision.level == 3
    assert "the highest tier of formosa-air at level 3 or below is Gold" in decision.reason


def test_a_tier_above_the_targets_top_gets_the_targets_top_tier() -> None:
    decision = match(Rung("Diamond", 4), MUSIC, MatchPolicy(max_level=4, valid_days=30, challenge=None))
    assert decision.tier == Rung("Premium", 1), "the first declared of the top tiers"


def test_the_policy_caps_the_level_a_match_reaches() -> None:
    decision = match(Rung("Diamond", 4), AIRLINE, UP_TO_GOLD)
    assert decision.tier == Rung("Gold", 2) and decision.level == 2
    assert "formosa-air grants up to level 2" in decision.reason


def test_a_program_that_grants_no_matches_grants_nothing() -> None:
    decision = match(Rung("Infinite", 3), AIRLINE, None)
    assert decision.outcome is Outcome.NOT_GRANTED and decision.tier is None
    assert decision.reason == "formosa-air grants no status matches"


def test_a_target_with_no_tier_at_or_below_the_level_has_no_matching_tier() -> None:
    premium_only = [Rung("Premium", 1), Rung("Elite", 3)]
    decision = match(Rung("Classic", 0), premium_only, UP_TO_DIAMOND, current=Rung("Premium", 1))
    assert decision.outcome is Outcome.NO_MATCHING_TIER and decision.tier is None
    assert "no tier at level 0 or below" in decision.reason


def test_a_member_already_at_or_above_the_matched_tier_gains_nothing() -> None:
    assert match(Rung("Platinum Card", 2), AIRLINE, UP_TO_GOLD, current=Rung("Gold", 2)).outcome is Outcome.ALREADY_HELD
    assert (
        match(Rung("Platinum Card", 2), AIRLINE, UP_TO_GOLD, current=Rung("Diamond", 4)).outcome is Outcome.ALREADY_HELD
    )
    assert match(Rung("Classic", 0), AIRLINE, UP_TO_GOLD).outcome is Outcome.ALREADY_HELD


def test_a_matched_tier_is_never_the_ground_for_another_match() -> None:
    decision = match(Rung("Gold", 2), AIRLINE, UP_TO_GOLD, matched=True)
    assert decision.outcome is Outcome.SOURCE_IS_MATCHED and decision.tier is None


def test_the_next_match_is_possible_twelve_months_later() -> None:
    assert next_match_allowed(datetime(2026, 3, 15, 8, 30, tzinfo=UTC)) == datetime(2027, 3, 15, 8, 30, tzinfo=UTC)
    assert next_match_allowed(datetime(2028, 2, 29, tzinfo=UTC)) == datetime(2029, 2, 28, tzinfo=UTC)


def test_a_challenge_is_met_by_points_or_by_activities() -> None:
    by_points = Challenge(points=5000, activities=None, extend_days=365)
    assert not by_points.met(4999, 100) and by_points.met(5000, 0)
    by_activities = Challenge(points=None, activities=3, extend_days=180)
    assert not by_activities.met(10**6, 2) and by_activities.met(0, 3)


def test_a_stored_policy_reads_back_and_no_policy_grants_none() -> None:
    stored = {"grants": True, "max_level": 2, "valid_days": 90, "challenge": {"points": 5000, "extend_days": 365}}
    assert MatchPolicy.from_stored(stored) == UP_TO_GOLD
    assert MatchPolicy.from_stored(None) is None


def write_program(directory: Path, status_match: str) -> Path:
    sample = Path(__file__).resolve().parents[2] / "partners"
    for name in ("coalition.toml", "fresh-mart.toml"):
        text = (sample / name).read_text()
        if name == "fresh-mart.toml":
            head, _, tail = text.partition("[status_match]\ngrants = false\n")
            text = head + status_match + tail
        (directory / name).write_text(text)
    return directory / "fresh-mart.toml"


@pytest.mark.parametrize(
    ("status_match", "field", "reason"),
    [
        ("[status_match]\ngrants = false\nmax_level = 2\n", "status_match", "takes no max_level"),
        ("[status_match]\ngrants = true\nmax_level = 2\n", "status_match", "needs max_level and valid_days"),
        (
            "[status_match]\ngrants = true\nmax_level = 9\nvalid_days = 30\n",
            "status_match.max_level",
            "outside the coalition ladder",
        ),
        (
            "[status_match]\ngrants = true\nmax_level = 2\nvalid_days = 30\n"
            "challenge = { points = 1, activities = 1, extend_days = 30 }\n",
            "status_match.challenge",
            "exactly one of points or activities",
        ),
        (
            "[status_match]\ngrants = true\nmax_level = 2\nvalid_days = 0\n",
            "status_match.valid_days",
            "greater than or equal to 1",
        ),
    ],
)
def test_a_wrong_status_match_policy_names_file_field_and_reason(
    tmp_path: Path, status_match: str, field: str, reason: str
) -> None:
    path = write_program(tmp_path, status_match)
    with pytest.raises(DeclarationError) as refused:
        read_partners_directory(tmp_path)
    assert str(refused.value).startswith(f"{path}: {field}: ")
    assert reason in refused.value.reason


@pytest.mark.parametrize(
    ("rewards", "field", "reason"),
    [
        (
            '[[rewards]]\nid = "r1"\ntitle = "T"\nprice = "1"\nstock = 1\nmin_level = 9\n',
            "rewards[0].min_level",
            "outside the coalition ladder",
        ),
        ('[[rewards]]\nid = "r1"\ntitle = "T"\nprice = 1.5\nstock = 1\n', "rewards[0].price", "a float is inexact"),
        (
            '[[rewards]]\nid = "r1"\ntitle = "T"\nprice = "1"\nstock = 1\n[[rewards]]\nid = "r1"\ntitle = "U"\nprice = "1"\nstock = 1\n',
            "rewards[1].id",
            "duplicate reward id",
        ),
    ],
)
def test_a_wrong_declared_reward_names_file_field_and_reason(
    tmp_path: Path, rewards: str, field: str, reason: str
) -> None:
    path = write_program(tmp_path, "[status_match]\ngrants = false\n" + rewards)
    with pytest.raises(DeclarationError) as refused:
        read_partners_directory(tmp_path)
    assert str(refused.value).startswith(f"{path}: {field}: ")
    assert reason in refused.value.reason
