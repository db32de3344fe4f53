"""The price of a conversion: pure arithmetic on exact fractions, every rounding named.

For ``points_in`` points of program A converted into program B under a rate rule:

1. ``money_value`` = points_in × A's point value, rounded by ``ROUND_MONEY`` (half-even to the
   minor unit). This is what A owes the coalition for the points it takes back.
2. ``fee`` = money_value × fee_percent / 100 + fee_fixed, rounded by ``ROUND_MONEY``, never
   more than money_value. The exchange earns it; B receives money_value − fee.
3. ``base`` points out:
   * a derived rate (no ratio declared): (money_value − fee) / B's point value — the member
     pays the fee in points, and B receives exactly the value of the base points it issues
     (up to the rounding down below);
   * a declared ratio or volume bands: points_in × out / in of the band that the whole
     amount falls in (3:1; or 2:1 from 3,000 and 1:1 from 10,000) — the member gets the
     promised ratio and B bears the fee it agreed to.
4. Bonuses, each computed on its own: a step bonus (``every`` points in earn ``points``
   extra, e.g. 5,000 per 60,000), promotions (percent of base) and the member's tier bonus
   (percent of base, by coalition level).
5. Each component is rounded by ``ROUND_POINTS_PAID`` (down) on its own, so the breakdown's
   integers add up exactly to ``points_out``: nobody is paid a fraction of a point.
6. The value cap: ``points_out`` is never worth more, at the two programs' point values, than
   the points in — at most points_in × A's point value / B's point value, rounded by
   ``ROUND_POINTS_PAID``. Points beyond it are cut from the tier bonus first, then the
   promotions', then the step bonus, and last (a ratio or band better than the two values) the
   base. So no chain of conversions that ends where it began (A → B → A, A → B → C → A, through
   the coalition point or not) pays back more points than it took, whatever the rates, bonuses,
   promotions or roundings: each leg's points are worth at most the last's, so a cycle can only
   shrink. Bonuses can give back at most the exchange's fee. The breakdown keeps the points cut
   (``value_cap_points``, 0 when nothing was), so that a bonus smaller than its percent says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from exchange.errors import BadUserInput
from exchange.money import Currency, points_paid
from exchange.ratio import Ratio
from exchange.text import counted


@dataclass(frozen=True, slots=True)
class Band:
    """From ``from_points`` points in (inclusive), the whole amount converts at ``ratio``."""

    from_points: int
    ratio: Ratio


@dataclass(frozen=True, slots=True)
class StepBonus:
    every: int
    points: int


@dataclass(frozen=True, slots=True)
class RateRule:
    """Everything that prices conversions of one pair in one rate version."""

    source_point_value: Decimal
    target_point_value: Decimal
    fee_percent: Decimal
    fee_fixed: Decimal
    bands: tuple[Band, ...] = ()
    step_bonus: StepBonus | None = None

    @property
    def derived(self) -> bool:
        return not self.bands

    def band_for(self, points_in: int) -> Band:
        eligible = [band for band in self.bands if band.from_points <= points_in]
        if not eligible:
            raise BadUserInput(
                f"{counted(points_in, 'point')} is below this pair's smallest band ({self.bands[0].from_points})",
                field="points",
            )
        return max(eligible, key=lambda band: band.from_points)


@dataclass(frozen=True, slots=True)
class AppliedPromotion:
    id: str
    bonus_percent: Decimal


@dataclass(frozen=True, slots=True)
class PriceBreakdown:
    """The exact result of pricing; amounts of money are in minor units."""

    points_in: int
    money_value_minor: int
    fee_minor: int
    base_points: int
    step_bonus_points: int
    promotion_bonus_points: int
    tier_bonus_points: int
    value_cap_points: int
    """The points rule 6 (the value cap) cut from the parts above, which are what is left: the
    parts' sum before the cut less ``points_out``; 0 when nothing was cut."""
    promotions: tuple[AppliedPromotion, ...]
    tier_bonus_percent: Decimal

    @property
    def points_out(self) -> int:
        return self.base_points + self.step_bonus_points + self.promotion_bonus_points + self.tier_bonus_points

    @property
    def target_receives_minor(self) -> int:
        return self.money_value_minor - self.fee_minor


def _percent_of(amount: Fraction, percent: Decimal) -> Fraction:
    return amount * Fraction(percent) / 100


def _within_value(cap: int, parts: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """``parts`` (base, step, promotion and tier points) cut, last first, until they add up to at
    most ``cap``: the value cap of the module docstring's rule 6."""
    excess = sum(parts) - cap
    kept = list(parts)
    for index in reversed(range(len(kept))):
        cut = min(max(excess, 0), kept[index])
        kept[index] -= cut
        excess -= cut
    base, step, promotion, tier = kept
    return base, step, promotion, tier


def price(
    rule: RateRule,
    points_in: int,
    *,
    currency: Currency,
    promotions: tuple[AppliedPromotion, ...] = (),
    tier_bonus_percent: Decimal = Decimal(0),
) -> PriceBreakdown:
    """Price converting ``points_in`` points under ``rule`` (see the module docstring)."""
    if points_in <= 0:
        raise BadUserInput(f"points must be positive, got {points_in}", field="points")
    money_value = currency.round(Fraction(rule.source_point_value) * points_in)
    fee = min(
        money_value,
        currency.round(_percent_of(Fraction(money_value), rule.fee_percent) + Fraction(rule.fee_fixed)),
    )
    if rule.derived:
        base = Fraction(money_value - fee) / Fraction(rule.target_point_value)
    else:
        ratio = rule.band_for(points_in).ratio
        base = Fraction(points_in * ratio.points_out, ratio.points_in)
    step = rule.step_bonus
    step_points = (points_in // step.every) * step.points if step else 0
    promotion_percent = sum((promotion.bonus_percent for promotion in promotions), Decimal(0))
    uncapped = (
        points_paid(base),
        step_points,
        points_paid(_percent_of(base, promotion_percent)),
        points_paid(_percent_of(base, tier_bonus_percent)),
    )
    capped = _within_value(
        points_paid(Fraction(rule.source_point_value) * points_in / Fraction(rule.target_point_value)), uncapped
    )
    base_points, step_bonus_points, promotion_bonus_points, tier_bonus_points = capped
    return PriceBreakdown(
        points_in=points_in,
        money_value_minor=currency.to_minor(money_value),
        fee_minor=currency.to_minor(fee),
        base_points=base_points,
        step_bonus_points=step_bonus_points,
        promotion_bonus_points=promotion_bonus_points,
        tier_bonus_points=tier_bonus_points,
        value_cap_points=sum(uncapped) - sum(capped),
        promotions=promotions,
        tier_bonus_percent=tier_bonus_percent,
    )
