"""Routing a quote directly or through the coalition point: table cases on hand-built books."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from exchange.pricing import quotes, routes
from exchange.pricing.book import PricingBook
from exchange.pricing.errors import LimitExceeded, NoRate
from exchange.pricing.models import RateVersion
from exchange.pricing.rates import PairLimits, PairOverride, RateContent
from exchange.programs.models import CoalitionSettings, Program
from exchange.ratio import Ratio

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
POLICY = quotes.QuotePolicy(ttl=timedelta(seconds=60), timezone=ZoneInfo("Asia/Taipei"))
COALITION = CoalitionSettings(
    settlement_currency="TWD", currency_minor_units=2, fee_percent=Decimal("2"), tier_bonus_percent=["0", "5"]
)
VALUES = {"wallet": Decimal("1"), "mart": Decimal("0.1"), "coin": Decimal("1")}
PROGRAMS = {
    program_id: Program(
        id=program_id,
        name=program_id,
        category="wallet",
        point_name="Point",
        point_value=value,
        minimum_points=1,
        increment=1,
        monthly_issue_budget=5000 if program_id == "coin" else None,
        connector={},
        created_at=T0,
        updated_at=T0,
    )
    for program_id, value in VALUES.items()
}
DERIVED = PairOverride()


def version(source: str, target: str, override: PairOverride, number: int) -> RateVersion:
    content = RateContent(VALUES[source], VALUES[target], Decimal("2"), Decimal("0"), override)
    return RateVersion(
        id=number,
        from_program=source,
        to_program=target,
        version=1,
        effective_from=T0 - timedelta(days=1),
        origin="derived",
        created_by="test",
        created_at=T0,
        **content.columns(),
    )


def book(pairs: dict[tuple[str, str], PairOverride]) -> PricingBook:
    return PricingBook(
        revision=1,
        since=T0,
        versions={
            pair: (version(*pair, override, number),) for number, (pair, override) in enumerate(pairs.items(), 1)
        },
        promotions={},
    )


def chains(pairs: dict[tuple[str, str], PairOverride]) -> list[quotes.Chain]:
    prices = book(pairs)

    def terms_for(source: str, target: str) -> quotes.PairTerms:
        return quotes.PairTerms(
            source=PROGRAMS[source],
            target=PROGRAMS[target],
            coalition=COALITION,
            version=prices.version_at(source, target, T0),
            promotions=(),
        )

    return routes.usable(routes.paths("wallet", "mart", "coin"), terms_for)


def quote(pairs: dict[tuple[str, str], PairOverride], points: int = 1000, used: dict[str, int] | None = None):  # type: ignore[no-untyped-def]
    request = quotes.QuoteRequest(member_id="m1", member_level=0, source="wallet", target="mart", points=points)
    return quotes.price_quote(request, chains(pairs), used or {}, policy=POLICY, now=T0)


ROUTE = {("wallet", "coin"): DERIVED, ("coin", "mart"): DERIVED}
# 1000 wallet points are 1000.00 TWD; the fee is 2% a leg. Directly: (1000 - 20) / 0.1 = 9800
# supermarket points. Through the coin: 980 coins, worth 980.00, less 19.60: 9604 points.
THROUGH_COIN = [("wallet", "coin", 1000, 980, 100000, 2000), ("coin", "mart", 980, 9604, 98000, 1960)]


@pytest.mark.parametrize(
    ("case", "pairs", "points_out", "legs"),
    [
        ("direct better", {("wallet", "mart"): DERIVED, **ROUTE}, 9800, [("wallet", "mart", 1000, 9800, 100000, 2000)]),
        (
            "through the coalition better",
            {("wallet", "mart"): PairOverride.fixed(Ratio(1, 9)), **ROUTE},
            9604,
            THROUGH_COIN,
        ),
        ("no direct pair", ROUTE, 9604, THROUGH_COIN),
        (
            "tie goes direct",
            {("wallet", "mart"): PairOverride.fixed(Ratio(1000, 9604)), **ROUTE},
            9604,
            [("wallet", "mart", 1000, 9604, 100000, 2000)],
        ),
        ("only half a route", {("wallet", "mart"): DERIVED, ("wallet", "coin"): DERIVED}, 9800, None),
    ],
)
def test_the_route_paying_the_member_most_is_chosen(
    case: str,
    pairs: dict[tuple[str, str], PairOverride],
    points_out: int,
    legs: list[tuple[str, str, int, int, int, int]] | None,
) -> None:
    chosen = quote(pairs)
    assert chosen.points_out == points_out, case
    shown = [
        (
            leg["from_program"],
            leg["to_program"],
            leg["points_in"],
            leg["points_out"],
            leg["money_value_minor"],
            leg["fee_minor"],
        )
        for leg in routes.legs_of(chosen)
    ]
    assert shown == (legs or [("wallet", "mart", 1000, 9800, 100000, 2000)]), case
    assert chosen.points_in == 1000 and chosen.money_value_minor == 100000
    assert chosen.fee_minor == sum(leg[5] for leg in shown), "the fee is every leg's"
    assert (chosen.route is None) == (len(shown) == 1), "a direct quote keeps no route"


def test_a_pair_with_no_way_at_all_has_no_rate() -> None:
    with pytest.raises(NoRate) as refused:
        quote({("wallet", "coin"): DERIVED, ("mart", "coin"): DERIVED})
    assert refused.value.field == "toProgram"
    assert "wallet into mart" in refused.value.message


def test_a_route_never_goes_around_the_direct_pairs_limits() -> None:
    below_minimum = {("wallet", "mart"): PairOverride(limits=PairLimits(minimum_points=5000)), **ROUTE}
    with pytest.raises(LimitExceeded) as refused:
        quote(below_minimum)
    assert refused.value.limit == "minimum_points"
    capped = {("wallet", "mart"): PairOverride(limits=PairLimits(member_monthly_cap=1500)), **ROUTE}
    with pytest.raises(LimitExceeded) as refused:
        quote(capped, used={"member:m1:pair:wallet>mart:month:2026-11": 1000})
    assert refused.value.limit == "pair_member_monthly_cap"


def test_a_route_without_room_in_its_limits_leaves_the_direct_pair() -> None:
    # The coin's monthly issuing budget (5,000) has 4,500 used: the 980 coins do not fit.
    budget = "program:coin:issue:month:2026-11"
    pairs = {("wallet", "mart"): PairOverride.fixed(Ratio(1, 9)), **ROUTE}
    assert quote(pairs, used={budget: 4500}).points_out == 9000
    with pytest.raises(LimitExceeded) as refused:
        quote(ROUTE, used={budget: 4500})
    assert refused.value.limit == "monthly_issue_budget"


def test_a_routed_quote_counts_every_legs_limits() -> None:
    routed = quote(ROUTE)
    assert routed.usages == [
        {"key": "program:coin:issue:month:2026-11", "name": "monthly_issue_budget", "limit": 5000, "amount": 980}
    ]
