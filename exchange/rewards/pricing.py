"""What a member pays, in points of the program they pay with, for a reward.

The exchange's fee is the coalition's ``fee_percent`` of the settlement price plus
``fee_fixed``, rounded by ``ROUND_MONEY``. The member pays (price + fee) ÷ the paying
program's point value in whole points, rounded by ``ROUND_POINTS_CHARGED`` (up): the points
always cover the whole amount. The paying program owes price + fee; the publisher is owed
the price; the exchange earns the fee.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from exchange.money import Currency, points_charged


@dataclass(frozen=True, slots=True)
class RedemptionPrice:
    price_minor: int
    fee_minor: int
    points: int
    point_value: Decimal

    @property
    def total_minor(self) -> int:
        return self.price_minor + self.fee_minor


def redemption_price(
    *, price: Decimal, point_value: Decimal, fee_percent: Decimal, fee_fixed: Decimal, currency: Currency
) -> RedemptionPrice:
    fee = currency.round(Fraction(price) * Fraction(fee_percent) / 100 + Fraction(fee_fixed))
    points = points_charged((Fraction(price) + Fraction(fee)) / Fraction(point_value))
    return RedemptionPrice(
        price_minor=currency.to_minor(price),
        fee_minor=currency.to_minor(fee),
        points=points,
        point_value=point_value,
    )
