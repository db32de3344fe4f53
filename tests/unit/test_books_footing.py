"""The partners' books foot: a figure that is the sum of others is valued as their values added,
so a point value finer than the currency's minor unit leaves no cent between the rows."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from decimal import Decimal

from exchange.api.types.books import PartnerBooks as PartnerBooksType
from exchange.books.figures import LedgerFigures
from exchange.books.report import PartnerBooks, csv_lines
from exchange.ledger.periods import PeriodStatus
from exchange.money import Currency

TWD = Currency("TWD", 2)


def books(point_value: str, *, converted_out: int, redeemed_for_rewards: int) -> PartnerBooks:
    figures = LedgerFigures(
        issued=0,
        converted_out=converted_out,
        redeemed_for_rewards=redeemed_for_rewards,
        reversed=0,
        other_points=0,
        outstanding=0,
        money_net=0,
        money_for_redeemed=0,
        money_for_issued=0,
        money_for_rewards=0,
    )
    return PartnerBooks(
        partner="harbor-bank",
        period="2026-11",
        starts_at=datetime(2026, 10, 31, 16, tzinfo=UTC),
        ends_at=datetime(2026, 11, 30, 16, tzinfo=UTC),
        status=PeriodStatus.OPEN,
        currency=TWD,
        point_value=Decimal(point_value),
        values_fixed_at=None,
        figures=figures,
        budget=None,
        coalition=None,
    )


def test_points_taken_back_are_valued_as_their_parts_added_in_the_csv_and_graphql() -> None:
    # 1 point at 0.035 TWD is 0.04 (half-even), twice: 0.08, where 2 points at once would be 0.07.
    read = books("0.035", converted_out=1, redeemed_for_rewards=1)
    rows = {row[2]: row[3:5] for row in csv.reader(csv_lines(read))}
    assert rows["converted_out"] == ["1", "0.04"] and rows["redeemed_for_rewards"] == ["1", "0.04"]
    assert rows["redeemed"] == ["2", "0.08"], "the total row foots: no cent of rounding between the rows"
    shown = PartnerBooksType.of(read)
    assert shown.redeemed.value.amount == shown.converted_out.value.amount + shown.redeemed_for_rewards.value.amount


def test_a_point_value_in_whole_cents_values_a_total_as_its_points_would_be() -> None:
    read = books("0.4", converted_out=3, redeemed_for_rewards=5)
    rows = {row[2]: row[3:5] for row in csv.reader(csv_lines(read))}
    assert rows["redeemed"] == ["8", "3.20"] == ["8", str(TWD.from_minor(read.value(8)))]
