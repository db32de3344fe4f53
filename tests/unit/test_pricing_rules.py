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
        promotions=(AppliedPromotion("promo-a", Decimal("10")), AppliedPromotion("promo-b", Decimal("2.5"))),
        tier_bonus_percent=Decimal("3"),
    )
    # 1003 × 0.25 = 250.75 TWD; fee 2% = 5.015 → 5.02 (half-even); base = 245.73 / 0.1 = 2457.3
    assert breakdown.fee_minor == 502
    assert breakdown.base_points == 2457
    assert breakdown.promotion_bonus_points == 307  # 12.5% of 2457.3 = 307.16
    assert breakdown.tier_bonus_points == 73  # 3% of 2457.3 = 73.72
    assert breakdown.points_out == 2457 + 307 + 73


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
    assert received - issued_value < Fraction(target)  # ... and never a whole point too few
    assert abs(Fraction(breakdown.money_value_minor, 100) - points_in * Fraction(source)) <= Fraction(1, 200)


def test_a_partners_rate_with_more_bands_than_any_tiered_rate_needs_is_refused() -> None:
    """A request body held 60,000 bands, and every quote into the program then walked them on
    the event loop (most of a second each, holding up every other request)."""
    most = tuple((start, "1:1") for start in range(1, MAX_BANDS + 1))
    assert len(RateTerms(bands=most).override().bands) == MAX_BANDS
    with pytest.raises(BadUserInput) as refused:
        RateTerms(bands=(*most, (MAX_BANDS + 1, "1:1"))).override()
    assert refused.value.field == "bands"
