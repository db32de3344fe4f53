"""Pricing: table cases from real points' cash values, and the rounding rules as properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.errors import BadUserInput
from exchange.money import Currency
from exchange.pricing.promotions import PromotionTerms
from exchange.pricing.rates import MAX_BANDS, RateTerms
from exchange.pricing.rules import (
    AppliedPromotion,
    Band,
    RateRule,
    StepBonus,
    price,
)
from exchange.ratio import Ratio

TWD = Currency("TWD", 2)
HAPPY_CARD = Decimal("0.25")  # 4 points = 1 TWD (HAPPY GO)
FRESH_MART = Decimal("0.1")  # 10 points = 1 TWD (PX Mart)
WALLET = Decimal("1")  # 1 point = 1 TWD (LINE Points)
BANK_CARD = Decimal("0.05")  # 1000 points = 50 TWD
MILE = Decimal("0.4")


def derived(source: Decimal, target: Decimal, fee_percent: str = "0", fee_fixed: str = "0") -> RateRule:
    return RateRule(source, target, Decimal(fee_percent), Decimal(fee_fixed))


@pytest.mark.parametrize(
    ("rule", "points_in", "money", "fee", "points_out"),
    [
        # 1000 coalition-card points (250 TWD) into supermarket points (0.1 TWD each).
        (derived(HAPPY_CARD, FRESH_MART), 1000, 25000, 0, 2500),
        # ... with the exchange's 2% fee: 5 TWD, paid in points by the member.
        (derived(HAPPY_CARD, FRESH_MART, "2"), 1000, 25000, 500, 2450),
        # ... with 1.5% plus 1 TWD fixed: 3.75 + 1 = 4.75 TWD.
        (derived(HAPPY_CARD, FRESH_MART, "1.5", "1"), 1000, 25000, 475, 2452),
        # 999 coalition-card points are 249.75 TWD: 249.75 wallet points, paid as 249.
        (derived(HAPPY_CARD, WALLET), 999, 24975, 0, 249),
        # 1000 bank-card points (50 TWD) into the wallet with 2% fee: 49 points.
        (derived(BANK_CARD, WALLET, "2"), 1000, 5000, 100, 49),
        # Supermarket points into the coalition card: 10 points = 1 TWD = 4 card points.
        (derived(FRESH_MART, HAPPY_CARD), 10, 100, 0, 4),
    ],
)
def test_derived_rates_from_real_cash_values(
    rule: RateRule, points_in: int, money: int, fee: int, points_out: int
) -> None:
    breakdown = price(rule, points_in, currency=TWD)
    assert (breakdown.money_value_minor, breakdown.fee_minor, breakdown.points_out) == (money, fee, points_out)
    assert breakdown.target_receives_minor == money - fee


def test_fixed_ratio_with_step_bonus_like_hotel_points_into_miles() -> None:
    rule = RateRule(
        BANK_CARD, MILE, Decimal("2"), Decimal(0), bands=(Band(1, Ratio(10, 1)),), step_bonus=StepBonus(60000, 1000)
    )
    breakdown = price(rule, 130000, currency=TWD)
    assert breakdown.base_points == 13000
    assert breakdown.step_bonus_points == 2000  # two whole blocks of 60,000
    assert breakdown.points_out == 15000
    assert breakdown.money_value_minor == 650000  # 6,500.00 TWD
    assert breakdown.fee_minor == 13000  # the target bears the fee on a declared ratio


@pytest.mark.parametrize(
    ("miles", "points_out"), [(3000, 1500), (9000, 4500), (9999, 4999), (10000, 10000), (25000, 25000)]
)
def test_volume_bands_like_miles_into_ponta(miles: int, points_out: int) -> None:
    rule = RateRule(MILE, HAPPY_CARD, Decimal(0), Decimal(0), bands=(Band(3000, Ratio(2, 1)), Band(10000, Ratio(1, 1))))
    assert price(rule, miles, currency=TWD).points_out == points_out


def test_amounts_below_the_first_band_are_refused() -> None:
    rule = RateRule(MILE, HAPPY_CARD, Decimal(0), Decimal(0), bands=(Band(3000, Ratio(2, 1)),))
    with pytest.raises(BadUserInput) as caught:
        price(rule, 2999, currency=TWD)
    assert caught.value.field == "points"


def test_bonuses_are_rounded_down_each_and_add_up_to_points_out() -> None:
    breakdown = price(
        derived(HAPPY_CARD, FRESH_MART, "2"),
        1003,
        currency=TWD,
        promotions=(AppliedPromotion("promo-a", Decimal("0.5")), AppliedPromotion("promo-b", Decimal("0.25"))),
        tier_bonus_percent=Decimal("1"),
    )
    # 1003 × 0.25 = 250.75 TWD; fee 2% = 5.015 → 5.02 (half-even); base = 245.73 / 0.1 = 2457.3
    assert breakdown.fee_minor == 502
    assert breakdown.base_points == 2457
    assert breakdown.promotion_bonus_points == 18  # 0.75% of 2457.3 = 18.43
    assert breakdown.tier_bonus_points == 24  # 1% of 2457.3 = 24.57
    assert breakdown.points_out == 2457 + 18 + 24
    assert breakdown.value_cap_points == 0  # 2499 points are worth less than the 250.75 TWD in


def test_bonuses_beyond_the_value_of_the_points_in_are_cut_tier_bonus_first() -> None:
    breakdown = price(
        derived(HAPPY_CARD, FRESH_MART, "2"),
        1003,
        currency=TWD,
        promotions=(AppliedPromotion("promo-a", Decimal("10")), AppliedPromotion("promo-b", Decimal("2.5"))),
        tier_bonus_percent=Decimal("3"),
    )
    # Uncut: 2457 base + 307 promotion (12.5%) + 73 tier (3%) = 2837 fresh-mart points, worth
    # 283.70 TWD for 250.75 TWD of happy-card points. The cap is 250.75 / 0.1 = 2507 points.
    assert breakdown.points_out == 2507
    assert (breakdown.base_points, breakdown.promotion_bonus_points, breakdown.tier_bonus_points) == (2457, 50, 0)
    assert breakdown.value_cap_points == 2837 - 2507, "the breakdown names the points the cap cut"


def test_a_ratio_better_than_the_point_values_pays_at_most_their_value() -> None:
    # 1 wallet point (1 TWD) for 10 happy-card points (2.50 TWD), a 1,000-point step bonus too.
    rule = RateRule(
        WALLET, HAPPY_CARD, Decimal(0), Decimal(0), bands=(Band(1, Ratio(1, 10)),), step_bonus=StepBonus(100, 1000)
    )
    breakdown = price(rule, 100, currency=TWD)
    assert (breakdown.base_points, breakdown.step_bonus_points, breakdown.points_out) == (400, 0, 400)
    assert breakdown.value_cap_points == 1000 + 1000 - 400  # the step bonus, then the base beyond 400


def test_a_diamond_members_round_trip_between_wallet_and_music_points_gains_nothing() -> None:
    """The demo's coalition: a 2% fee, a 5% bonus at the top level, tune-stream into wallet-pay
    at 2:1, back at the derived rate. Uncut, 100,000 music points came back as 108,045."""
    top = Decimal(5)
    there = price(
        RateRule(Decimal("0.5"), WALLET, Decimal(2), Decimal(0), bands=(Band(1, Ratio(2, 1)),)),
        100_000,
        currency=TWD,
        tier_bonus_percent=top,
    )
    back = price(derived(WALLET, Decimal("0.5"), "2"), there.points_out, currency=TWD, tier_bonus_percent=top)
    assert there.points_out == 50_000
    assert back.points_out == 100_000


@pytest.mark.parametrize(("points", "money_minor"), [(1, 0), (3, 2), (5, 2), (7, 4)])
def test_money_rounds_half_even_to_the_cent(points: int, money_minor: int) -> None:
    # 0.005 TWD a point: 1 → 0.005 → 0.00; 3 → 0.015 → 0.02; 5 → 0.025 → 0.02; 7 → 0.035 → 0.04
    breakdown = price(derived(Decimal("0.005"), WALLET), points, currency=TWD)
    assert breakdown.money_value_minor == money_minor


def test_the_fee_never_exceeds_the_money_value() -> None:
    breakdown = price(derived(WALLET, HAPPY_CARD, "0", "10"), 3, currency=TWD)
    assert (breakdown.money_value_minor, breakdown.fee_minor, breakdown.points_out) == (300, 300, 0)


def test_non_positive_points_are_refused() -> None:
    with pytest.raises(BadUserInput):
        price(derived(WALLET, HAPPY_CARD), 0, currency=TWD)


@pytest.mark.parametrize("text", ["١:٢", "²:1", "1:1000000001", "-1:2", "1.5:1", "1:"])
def test_a_written_ratio_is_two_sides_of_ascii_digits_up_to_a_billion(text: str) -> None:
    with pytest.raises(ValueError, match="ratio"):
        Ratio.parse(text)
    assert Ratio.parse(" 3 : 1000000000 ") == Ratio(3, 1_000_000_000)


@pytest.mark.parametrize("sources", [(), ("wallet-pay", "wallet-pay"), ("wallet-pay", "fresh-mart")])
def test_a_promotion_names_each_program_it_applies_from_once_and_never_its_own(sources: tuple[str, ...]) -> None:
    start = datetime(2031, 1, 1, tzinfo=UTC)
    terms = PromotionTerms("p", "fresh-mart", Decimal(5), start, start + timedelta(days=1), sources)
    with pytest.raises(BadUserInput) as refused:
        terms.check()
    assert refused.value.field == "fromPrograms"


point_values = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("1000"), places=6)
percents = st.decimals(min_value=Decimal(0), max_value=Decimal(100), places=4)


@given(
    source=point_values,
    target=point_values,
    fee_percent=percents,
    fee_fixed=st.decimals(min_value=Decimal(0), max_value=Decimal(50), places=2),
    points_in=st.integers(min_value=1, max_value=10**9),
)
def test_derived_rates_never_issue_more_value_than_the_target_receives(
    source: Decimal, target: Decimal, fee_percent: Decimal, fee_fixed: Decimal, points_in: int
) -> None:
    breakdown = price(derived(source, target, str(fee_percent), str(fee_fixed)), points_in, currency=TWD)
    received = Fraction(breakdown.target_receives_minor, 100)
    issued_value = breakdown.points_out * Fraction(target)
    assert 0 <= breakdown.fee_minor <= breakdown.money_value_minor
    assert issued_value <= received  # points out round down: never a fraction too many
    # ... and never a whole point too few: of what the target receives, or (when the money
    # value rounded up) of what the points in are worth, the value cap
    assert min(received, points_in * Fraction(source)) - issued_value < Fraction(target)
    assert abs(Fraction(breakdown.money_value_minor, 100) - points_in * Fraction(source)) <= Fraction(1, 200)


def test_a_partners_rate_with_more_bands_than_any_tiered_rate_needs_is_refused() -> None:
    """A request body held 60,000 bands, and every quote into the program then walked them on
    the event loop (most of a second each, holding up every other request)."""
    most = tuple((start, "1:1") for start in range(1, MAX_BANDS + 1))
    assert len(RateTerms(bands=most).override().bands) == MAX_BANDS
    with pytest.raises(BadUserInput) as refused:
        RateTerms(bands=(*most, (MAX_BANDS + 1, "1:1"))).override()
    assert refused.value.field == "bands"


leg_rules = st.builds(
    lambda fee, ratio, step, tier, promotion: (fee, ratio, step, tier, promotion),
    percents,
    st.none() | st.tuples(st.integers(1, 1000), st.integers(1, 1000)),
    st.none() | st.tuples(st.integers(1, 10**6), st.integers(1, 10**6)),
    percents,
    st.decimals(min_value=Decimal(0), max_value=Decimal(1000), places=4),
)


@given(
    values=st.lists(point_values, min_size=2, max_size=4),
    legs=st.lists(leg_rules, min_size=4, max_size=4),
    points_in=st.integers(min_value=1, max_value=10**9),
)
def test_no_cycle_of_conversions_pays_back_more_points_than_it_took(
    values: list[Decimal],
    legs: list[tuple[Decimal, tuple[int, int] | None, tuple[int, int] | None, Decimal, Decimal]],
    points_in: int,
) -> None:
    """A → B (→ C (→ D)) → A under any fees, ratios, step bonuses, promotions and tier bonuses:
    each leg's points are worth at most the last's, so the member ends with at most what they
    began with (a leg that would pay nothing ends the cycle with nothing)."""
    points = points_in
    for index, (fee, ratio, step, tier, promotion) in enumerate(legs[: len(values)]):
        source, target = values[index], values[(index + 1) % len(values)]
        rule = RateRule(
            source,
            target,
            fee,
            Decimal(0),
            bands=(Band(1, Ratio(*ratio)),) if ratio else (),
            step_bonus=StepBonus(*step) if step else None,
        )
        if points == 0:
            break
        points = price(
            rule, points, currency=TWD, promotions=(AppliedPromotion("p", promotion),), tier_bonus_percent=tier
        ).points_out
    assert points <= points_in
