"""The reasons the exchange writes in the risk decision log are read back into their templates
and values (so pages can say them in the reader's language); a staff member's words are not."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exchange.risk import reasons
from exchange.risk.models import Decision, RiskDecision


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
        (reasons.LINK_VERIFIED, {"program": "formosa-air"}),
        (reasons.LINK_VERIFIED_WITH_NAME, {"program": "formosa-air"}),
    ],
)
def test_a_written_reason_reads_back_as_its_template_and_values(reason: reasons.Reason, values: dict[str, str]) -> None:
    assert reasons.read(logged(Decision.HOLD, reason.text(**values))) == (reason, values)


def test_a_reason_no_template_wrote_is_not_read() -> None:
    assert reasons.read(logged(Decision.REFUSE, "fresh-mart reports this account suspended")) is None


def test_a_staff_rejection_is_their_own_words_even_when_they_look_like_a_template() -> None:
    assert reasons.read(logged(Decision.REJECT, reasons.APPROVED.text())) is None
