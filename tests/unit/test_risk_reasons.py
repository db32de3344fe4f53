"""The reasons the exchange writes in the risk decision log are read back into their templates
and values (so pages can say them in the reader's language); a staff member's words are not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from exchange.risk import reasons
from exchange.risk.models import Decision, RiskDecision
from exchange.risk.policy import Per, Velocity
from exchange.web.risk import LoggedDecision
from exchange.web.said import Said


def logged(decision: Decision, reason: str) -> RiskDecision:
    return RiskDecision(
        subject="CONVERSION",
        decision=decision.value,
        reason=reason,
        member_id="m",
        program_id="fresh-mart",
        member_ref="r",
        decided_at=datetime(2026, 12, 2, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("reason", "values"),
    [
        (reasons.HELD_ABOVE, {"limit": "2,000"}),
        (reasons.COOLING_PERIOD, {"program": "fresh-mart", "opens_at": "2026-12-03T00:00:00+00:00"}),
        (reasons.NAMES_DIFFER, {"program": "fresh-mart", "other": "formosa-air"}),
        (reasons.ALLOWED, {}),
        (reasons.CANCELLED_WHILE_HELD, {"by": "member"}),
        (reasons.LINK_VERIFIED, {"program": "formosa-air"}),
        (reasons.LINK_VERIFIED_WITH_NAME, {"program": "formosa-air"}),
    ],
)
def test_a_written_reason_reads_back_as_its_template_and_values(reason: reasons.Reason, values: dict[str, str]) -> None:
    assert reasons.written_by(reason.text(**values)) == (reason, values)


@pytest.mark.parametrize(
    ("count", "points", "over_points", "made"),
    [(5, None, False, "6"), (None, 20_000, True, "23,000"), (5, 20_000, False, "6"), (5, 20_000, True, "23,000")],
)
def test_a_velocity_refusal_reads_back_as_the_one_template_for_its_limits(
    count: int | None, points: int | None, over_points: bool, made: str
) -> None:
    rule = Velocity(per=Per.ACCOUNT, window=timedelta(hours=6), max_count=count, max_points=points)
    written = reasons.velocity("fresh-mart", rule, made=int(made.replace(",", "")), over_points=over_points)
    found = reasons.written_by(written)
    assert found is not None
    reason, values = found
    assert reason.text(**values) == written
    assert values["made"] == made and values["window"] == "6 hours" and values["per"] == "account"


def test_a_reason_no_template_wrote_is_not_read() -> None:
    assert reasons.written_by("fresh-mart reports this account suspended") is None


def test_a_staff_rejection_is_their_own_words_even_when_they_look_like_a_template() -> None:
    shown = LoggedDecision.of(logged(Decision.REJECT, reasons.APPROVED.text()), {})
    assert shown.reason == Said.person(reasons.APPROVED.text())
    assert LoggedDecision.of(logged(Decision.APPROVE, reasons.APPROVED.text()), {}).reason.key == "APPROVED"
