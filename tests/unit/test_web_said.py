"""What a member's page says of a refusal: the exchange's reasons read back into their
templates (to be said in the page's language), a partner's own words kept as the partner's."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from exchange.connectors.errors import REFUSED, InsufficientPoints, PartnerUnreachable
from exchange.errors import BadUserInput, ErrorCode, ExchangeError
from exchange.pricing import limits
from exchange.pricing.errors import LimitExceeded
from exchange.programs.models import Program
from exchange.rewards.errors import TiersChanged
from exchange.risk import reasons
from exchange.risk.policy import Per, Velocity
from exchange.sagas import doubt
from exchange.tiers.errors import TierNotVerified
from exchange.web.i18n import ENGLISH, TRADITIONAL_CHINESE
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


@pytest.mark.parametrize("points", [0, -5, limits.MAX_POINTS + 1, 99_999_999_999])
def test_points_out_of_range_are_read_back_into_the_range_with_its_most(points: int) -> None:
    with pytest.raises(BadUserInput) as refused:
        limits.check_points(points)
    said = Refusal.of(refused.value, PROGRAMS).said
    assert (said.key, said.values["points"]) == ("POINTS_RANGE", limits.MAX_POINTS)


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
            doubt.WRITE_STANDS.format(
                partner="target",
                write="credit",
                contradiction="its points is 4900, the exchange sent 2450",
                refusal="partner fresh-mart refused REVERSE: member alice has 900 points, 2450 asked",
            ),
            "WRITE_STANDS",
            "轉入的計畫記錄的加點與交換平台送出的不同，且未能收回：您的轉換依送出的內容成立，差額由交換平台與該計畫結算。",
        ),
        (
            doubt.WRITE_TOO_LATE.format(partner="source", write="debit"),
            "WRITE_TOO_LATE",
            "轉出的計畫太晚確認扣點，因此交換平台已將其沖回。",
        ),
        (
            doubt.WRITE_GIVEN_BACK.format(partner="source", write="debit"),
            "WRITE_GIVEN_BACK",
            "轉出的計畫在確認扣點前已自行將其沖回：這筆扣點已不存在。",
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


def said_in_chinese(said: Said) -> str:
    pages = Pages(StaticAssets(), ZoneInfo("Asia/Taipei"))
    module = pages.env.get_template("_said.html").make_module({"language": TRADITIONAL_CHINESE})
    return " ".join(str(module.said(said)).split())


@pytest.mark.parametrize(
    ("points", "key", "chinese"),
    [(1_000, "BELOW_MINIMUM", "至少須轉換 3,000 點。"), (3_500, "NOT_AN_INCREMENT", "點數須以 1,000 點為單位轉換。")],
)
def test_an_amount_a_conversion_refuses_is_said_in_the_readers_language(points: int, key: str, chinese: str) -> None:
    """A member's page said "at least 3000 points must be converted", in English, ungrouped."""
    with pytest.raises(LimitExceeded) as refused:
        limits.AmountRule(3_000, 1_000).check(points)
    said = Refusal.of(refused.value, PROGRAMS).said
    assert said.key == key
    assert said_in_chinese(said) == chinese


@pytest.mark.parametrize(
    ("cap", "chinese"),
    [
        ("member_daily_cap", "這會超過您單日可轉換的上限（20,000 點）：尚餘 1,500 點，本次要求 3,000 點。"),
        (
            "pair_member_monthly_cap",
            "這會超過這兩個計畫之間您單月可轉換的上限（20,000 點）：尚餘 1,500 點，本次要求 3,000 點。",
        ),
        ("monthly_issue_budget", "這會超過轉入計畫單月發放點數的上限（20,000 點）：尚餘 1,500 點，本次要求 3,000 點。"),
    ],
)
def test_a_cap_a_conversion_would_exceed_is_said_without_its_name_in_the_api(cap: str, chinese: str) -> None:
    """The cap was named as the API names it ("member_daily_cap of 20000 would be exceeded")."""
    written = limits.CAP_EXCEEDED.format(name=cap, limit=20_000, remaining=1_500, amount=3_000)
    said = Refusal.of(LimitExceeded(written, limit=cap, remaining=1_500), PROGRAMS).said
    assert said.key == "CAP_EXCEEDED"
    assert said_in_chinese(said) == chinese


@pytest.mark.parametrize("override", ["\u202a", "\u202b", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068"])
def test_a_partners_or_staff_members_words_cannot_reorder_the_page_around_them(override: str) -> None:
    """A partner's words that open a bidirectional override (``\u202e`` and never closed) would
    reorder the page's own text after them to the end of its paragraph: they are shown in an
    element the browser isolates (``<bdi>``), closed at their end (``|theirs``)."""
    words = f"{override}gnp.exe refused"
    closed = "\u202c" if override in "\u202a\u202b\u202d\u202e" else "\u2069"
    partner = Said.of(REFUSED.format(program="fresh-mart", call="debit", detail=words), PROGRAMS)
    staff = Said.of(reasons.REJECTED.text(reason=words), PROGRAMS)
    for said in (partner, staff):
        assert f'<q class="own-words" lang=""><bdi>{words}{closed}</bdi></q>' in said_in_chinese(said)


def test_the_exchanges_sentence_quoting_a_partners_tier_cannot_reorder_the_page() -> None:
    """A status match refused because the partner reports a lower tier quotes the tier the
    partner reported, as the partner wrote it: the sentence is isolated (``|theirs``), its
    override closed at its end, in English and on a Chinese page alike."""
    reported = "\u202edloG"
    refused = Refusal.of(TierNotVerified("fresh-mart", "Gold", reported), PROGRAMS)
    closed = f"<bdi>fresh-mart reports your tier as {reported}, not Gold\u202c</bdi>"
    assert f'<span lang="en">{closed}</span>' in said_in_chinese(refused.said)
    pages = Pages(StaticAssets(), ZoneInfo("Asia/Taipei"))
    module = pages.env.get_template("_said.html").make_module({"language": ENGLISH})
    assert " ".join(str(module.said(refused.said)).split()) == closed


@pytest.mark.parametrize(
    ("language", "headline"),
    [
        (
            ENGLISH,
            "Your tiers changed while this was being redeemed: an account was unlinked, or a status match "
            "ended. Nothing was redeemed; redeem again to have your level checked anew.",
        ),
        (
            TRADITIONAL_CHINESE,
            "兌換期間您的等級有所變動：有帳戶已解除連結，或某項等級比對已結束。未兌換任何項目；請再兌換一次，以重新確認您的等級。",
        ),
    ],
)
def test_a_redemption_refused_because_the_tiers_changed_says_to_redeem_again_not_unavailable(
    language: str, headline: str
) -> None:
    """The level a reward needs was read, then an unlink moved the member's tiers before the
    redemption was recorded: the page says to redeem again, in the reader's language, where it
    said "This reward is not available to you" above an English sentence saying the opposite."""
    pages = Pages(StaticAssets(), ZoneInfo("Asia/Taipei"))
    problem = Refusal.of(TiersChanged("lounge", 2, 2), PROGRAMS)
    shown = " ".join(pages.env.get_template("portal/_problem.html").render(problem=problem, language=language).split())
    assert f"<h2> {headline} </h2> </div>" in shown
