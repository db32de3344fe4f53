"""Routes: converting A into B directly, or through the coalition point (A → coalition → B).

A route is a chain of pairs, each priced exactly as that conversion alone would be
(:func:`~exchange.pricing.quotes.price_on`: the pair's rate version, its minimum and
increment, the exchange's fee the pair declares, the target's promotions, the member's tier
bonus), each leg converting the points the leg before paid out, and each counting against
its own limits. So a route gives the member exactly what converting into coalition points
and then out of them would give, without holding coalition points in between; the
exchange's fee is charged on every leg, on that leg's money value (nobody gains by routing
over converting by hand, or the other way).

Of the routes a pair has (the direct pair when it has a rate in force, the route through the
coalition point when both of its pairs have one), a quote takes the one that pays the member
the most points of B; a tie goes to the fewer legs, the direct pair.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from exchange.pricing import limits
from exchange.pricing.errors import NoRate
from exchange.pricing.rules import PriceBreakdown

T = TypeVar("T")

Pair = tuple[str, str]
"""A (source, target) pair of program ids."""


class Routed(Protocol):
    """A quote or a conversion: its own amounts, and its route's legs when it has one."""

    from_program: str
    to_program: str
    rate_version_id: int
    points_in: int
    points_out: int
    money_value_minor: int
    fee_minor: int
    route: list[dict[str, Any]] | None


def legs_of(row: Routed) -> list[dict[str, Any]]:
    """``row``'s legs as :meth:`PricedLeg.record` keeps them: its route's, or itself, direct."""
    if row.route:
        return row.route
    return [
        {
            "from_program": row.from_program,
            "to_program": row.to_program,
            "rate_version_id": row.rate_version_id,
            "points_in": row.points_in,
            "points_out": row.points_out,
            "money_value_minor": row.money_value_minor,
            "fee_minor": row.fee_minor,
        }
    ]


def paths(source: str, target: str, via: str | None) -> list[tuple[Pair, ...]]:
    """The ways ``source`` may go into ``target``: directly, then through ``via`` (the coalition
    program, if any, and unless it is one of the two); preferred first."""
    ways: list[tuple[Pair, ...]] = [((source, target),)]
    if via is not None and via not in (source, target):
        ways.append(((source, via), (via, target)))
    return ways


def usable(ways: Sequence[tuple[Pair, ...]], terms_for: Callable[[str, str], T]) -> list[tuple[T, ...]]:
    """The terms of each of ``ways`` whose every pair has a rate (``terms_for`` raises
    ``NO_RATE`` for one that has none), in order; the first way's ``NO_RATE`` when none has."""
    usable: list[tuple[T, ...]] = []
    refusal: NoRate | None = None
    for way in ways:
        try:
            usable.append(tuple(terms_for(source, target) for source, target in way))
        except NoRate as error:
            refusal = refusal or error
    if not usable:
        assert refusal is not None, "there is at least one way: the direct pair"
        raise refusal
    return usable


@dataclass(frozen=True, slots=True)
class PricedLeg:
    """One leg of a route: its pair, the rate version that priced it, its price and the limit
    counters it counts against."""

    source: str
    target: str
    rate_version_id: int
    breakdown: PriceBreakdown
    usages: tuple[limits.Usage, ...]

    def record(self) -> dict[str, Any]:
        """The leg as a quote and its conversion keep it (``route``)."""
        return {
            "from_program": self.source,
            "to_program": self.target,
            "rate_version_id": self.rate_version_id,
            "points_in": self.breakdown.points_in,
            "points_out": self.breakdown.points_out,
            "money_value_minor": self.breakdown.money_value_minor,
            "fee_minor": self.breakdown.fee_minor,
        }


@dataclass(frozen=True, slots=True)
class Route:
    legs: tuple[PricedLeg, ...]

    @property
    def first(self) -> PricedLeg:
        return self.legs[0]

    @property
    def last(self) -> PricedLeg:
        return self.legs[-1]

    @property
    def points_out(self) -> int:
        return self.last.breakdown.points_out

    @property
    def money_value_minor(self) -> int:
        """What the source owes for the points in: the first leg's money value."""
        return self.first.breakdown.money_value_minor

    @property
    def fee_minor(self) -> int:
        """The exchange's fees, every leg's."""
        return sum(leg.breakdown.fee_minor for leg in self.legs)

    @property
    def usages(self) -> list[limits.Usage]:
        """Every leg's limit counters, in key order (the order reservations lock them in)."""
        return sorted((usage for leg in self.legs for usage in leg.usages), key=lambda usage: usage.key)

    @property
    def routed(self) -> bool:
        return len(self.legs) > 1

    def record(self) -> list[dict[str, Any]] | None:
        """The legs as a quote keeps them; ``None`` for a direct route (the quote is its leg)."""
        return [leg.record() for leg in self.legs] if self.routed else None


def best(routes: Sequence[Route]) -> Route:
    """The route that pays the most points out; of equals, the one with the fewest legs (and
    of those, the first given)."""
    return max(routes, key=lambda route: (route.points_out, -len(route.legs)))
