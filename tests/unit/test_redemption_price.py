"""What a member pays for a reward: price plus fee, in whole points rounded up."""

from __future__ import annotations

from decimal import Decimal

from exchange.money import Currency, points_charged
from exchange.rewards.pricing import redemption_price

TWD = Currency("TWD", 2)


def test_points_charged_round_up_to_a_whole_point() -> None:
    assert points_charged(Decimal("100")) == 100
    assert points_charged(Decimal("100.0001")) == 101


def test_the_member_pays_price_and_fee_at_the_paying_programs_point_value() -> None:
    price = redemption_price(
        price=Decimal("150"), point_value=Decimal("0.4"), fee_percent=Decimal("2"), fee_fixed=Decimal(0), currency=TWD
    )
    assert (price.price_minor, price.fee_minor, price.total_minor, price.points) == (15000, 300, 15300, 383)


def test_points_always_cover_the_whole_amount() -> None:
    price = redemption_price(
        price=Decimal("99.99"),
        point_value=Decimal("0.05"),
        fee_percent=Decimal("2"),
        fee_fixed=Decimal("1"),
        currency=TWD,
    )
    assert price.fee_minor == 300  # 2 % of 99.99 is 2.0 (half-even), plus 1
    assert price.points == 2060  # 102.99 / 0.05 = 2059.8, up
    assert price.points * Decimal("0.05") >= Decimal(price.total_minor) / 100
