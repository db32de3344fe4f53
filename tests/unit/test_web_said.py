"""What a member's page says of a refusal: the exchange's reasons read back into their
templates (to be said in the page's language), a partner's own words kept as the partner's."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from exchange.connectors.errors import REFUSED, InsufficientPoints, PartnerUnreachable
from exchange.errors import BadUserInput, ErrorCode, ExchangeError
from exchange.programs.models import Program
from exchange.risk import reasons
from exchange.risk.policy import Per, Velocity
from exchange.sagas import doubt
from exchange.web.i18n import TRADITIONAL_CHINESE
from exchange.web.said import PARTNER_SAID, PARTNER_UNANSWERED, Refusal, Said
from exchange.web.static import StaticAssets
from exchange.web.templating import Pages

PROGRAMS = {"fresh-mart": Program(id="fresh-mart", name="FreshMart Rewards")}


def test_a_partners_refusal_keeps_the_partners_own_words_and_names_the_partner() -> None:
    written = REFUSED.format(program="fresh-mart", call="DEBIT", detail="點數不足: 100 < 3,000")
    shown = Refusal.of(InsufficientPoints(written, program_id="fresh-mart", call="DEBIT"), PROGRAMS)
    assert shown.code is ErrorCode.INSUFFICIENT_POINTS
    assert shown.said.key == PARTNER_SAID
    assert shown.said.values == {"program": "FreshMart Rewards", "call": "DEBIT", "detail": "點數不足: 100 < 3,000"}


def test_a_staff_rejection_kept_as_why_a_conversion_failed_keeps_their_words() -> None:
    said = Said.of(reasons.REJECTED.text(reason="卡片掛失 {x}"), PROGRAMS)
    assert said.key == "REJECTED" and said.values == {"reason": "卡片掛失 {x}"}


@pytest.mark.parametrize(
    "words",
    [
        "x allows at most 1 conversions or redemptions per member in 1 day; this would make 2",
        "you and your bank have different names for the member",
    ],
)
def test_a_partners_or_staff_members_words_written_as_the_exchanges_reason_stay_theirs(words: str) -> None:
    """Words that read as one of the exchange's own reasons (a velocity limit, names that
    differ) stay the partner's, or the staff member's: a partner cannot have its refusal said
    on a page, translated and unattributed, as the exchange's rule."""
    written = REFUSED.format(program="fresh-mart", call="credit", detail=words)
    said = Said.of(written, PROGRAMS)
    assert (said.key, said.values) == (
        PARTNER_SAID,
        {"program": "FreshMart Rewards", "call": "credit", "detail": words},
    )
    rejected = Said.of(reasons.REJECTED.text(reason=words), PROGRAMS)
    assert (rejected.key, rejected.values) == ("REJECTED", {"reason": words})


def test_a_gates_refusal_is_read_back_into_its_reason_with_the_programs_name() -> None:
    rule = Velocity(per=Per.MEMBER, window=timedelta(days=1), max_count=None, max_points=20_000)
    refused = ExchangeError(reasons.velocity("fresh-mart", rule, made=23_000, over_points=True))
    said = Refusal.of(refused, PROGRAMS).said
    assert said.key == "VELOCITY_POINTS"
    assert said.values == {
        "program": "FreshMart Rewards",
        "points": 20_000,
        "per": "member",
        "window": (1, "day"),
        "made": 23_000,
    }


def test_any_other_text_of_the_exchange_stays_as_written_and_is_not_a_persons_words() -> None:
    said = Refusal.of(BadUserInput("points must be a whole number", field="points"), PROGRAMS).said
    assert said == Said("points must be a whole number")
    assert not said.own_words


def test_a_partner_that_could_not_be_reached_is_named_without_the_connectors_technical_detail() -> None:
    down = PartnerUnreachable(
        "partner fresh-mart: DEBIT: cannot connect (ConnectError('[Errno 111] Connection refused'))",
        program_id="fresh-mart",
        call="DEBIT",
    )
    shown = Refusal.of(down, PROGRAMS)
    assert shown.code is ErrorCode.PARTNER_UNAVAILABLE
    assert (shown.said.key, shown.said.values) == (PARTNER_UNANSWERED, {"program": "FreshMart Rewards"})
    # The same, kept as why a conversion failed.
    failed = Said.failure("PARTNER_UNAVAILABLE", down.message, PROGRAMS)
    assert (failed.key, failed.values) == (PARTNER_UNANSWERED, {"program": "FreshMart Rewards"})
    assert Said.failure("RISK_REJECTED", reasons.REJECTED.text(reason="no"), PROGRAMS).key == "REJECTED"


@pytest.mark.parametrize(
    ("written", "key", "chinese"),
    [
        (
            doubt.WRITE_CONTRADICTED.format(partner="target", write="credit"),
            "WRITE_CONTRADICTED",
            "轉入的計畫記錄的加點與交換平台送出的不同，因此交換平台已將其沖回。",
        ),
        (
            doubt.WRITE_TOO_LATE.format(partner="source", write="debit"),
            "WRITE_TOO_LATE",
            "轉出的計畫太晚確認扣點，因此交換平台已將其沖回。",
        ),
        (
            doubt.WRITE_UNCONFIRMED_IN_TIME.format(partner="source", write="debit"),
            "WRITE_UNCONFIRMED",
            "轉出的計畫未確認扣點，因此交換平台已將其取消。",
        ),
    ],
)
def test_why_a_saga_failed_over_a_partners_write_is_said_in_the_readers_language(
    written: str, key: str, chinese: str
) -> None:
    said = Said.failure(doubt.CONTRADICTED, written, PROGRAMS)
    assert said.key == key
    pages = Pages(StaticAssets(), ZoneInfo("Asia/Taipei"))
    module = pages.env.get_template("_said.html").make_module({"language": TRADITIONAL_CHINESE})
    assert str(module.said(said)).strip() == chinese
