"""Money, points and moments as the pages show them, per locale."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from exchange.money import Currency
from exchange.programs.models import Program
from exchange.web.formatting import (
    format_day,
    format_moment,
    format_money,
    format_points,
    format_points_of,
    format_zone,
    point_unit,
)
from exchange.web.i18n import ENGLISH, TRADITIONAL_CHINESE

TAIPEI = ZoneInfo("Asia/Taipei")
TWD = Currency("TWD", 2)


def test_money_is_formatted_by_each_locales_rules_and_always_names_its_currency() -> None:
    assert format_money(Decimal("1234.5"), TWD, ENGLISH.locale) == "NT$1,234.50"
    # CLDR writes Taiwan's dollar as a bare "$" in zh_TW: a "$" that could be any dollar.
    assert format_money(Decimal("1234.5"), "TWD", TRADITIONAL_CHINESE.locale) == "NT$1,234.50"
    assert format_money(Decimal("-3"), TWD, TRADITIONAL_CHINESE.locale) == "-NT$3.00"
    assert format_money(Decimal("-3"), "USD", TRADITIONAL_CHINESE.locale) == "-US$3.00"
    assert format_money(Decimal("3"), "USD", ENGLISH.locale) == "$3.00"


def test_money_keeps_every_digit_it_has() -> None:
    assert format_money(Decimal("0.125"), TWD, ENGLISH.locale) == "NT$0.125"
    assert format_money(Decimal("0.000001"), TWD, ENGLISH.locale) == "NT$0.000001"


@pytest.mark.parametrize("amount", [0.1, 1, "1.00"])
def test_money_that_is_not_a_decimal_is_refused(amount: object) -> None:
    with pytest.raises(TypeError, match="Decimal"):
        format_money(amount, TWD, ENGLISH.locale)  # type: ignore[arg-type]


def test_points_are_whole_numbers_grouped_by_the_locale() -> None:
    assert format_points(1_234_567, ENGLISH.locale) == "1,234,567"
    with pytest.raises(TypeError):
        format_points(Decimal("1"), ENGLISH.locale)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        format_points(True, ENGLISH.locale)


def test_a_programs_points_take_an_english_plural_only_on_an_english_page() -> None:
    miles = Program(id="formosa-air", name="Formosa Air Miles", point_name="Mile", point_name_plural="Miles")
    assert [point_unit(miles, points, ENGLISH.locale) for points in (1, -1, 0, 12_000)] == [
        "Mile",
        "Mile",
        "Miles",
        "Miles",
    ]
    # Chinese has no plural: the name as the partner declared it, whatever the number.
    assert {point_unit(miles, points, TRADITIONAL_CHINESE.locale) for points in (1, 0, 12_000)} == {"Mile"}


@pytest.mark.parametrize(
    ("name", "point_name", "plural", "english", "chinese"),
    [
        ("Coalition Points", "Coalition Point", "Coalition Points", "1,000 Coalition Points", "1,000 Coalition Point"),
        ("Wallet Pay Points", "Wallet Point", "Wallet Points", "1,000 Wallet Points", None),
        ("Happy Card", "Happy Point", "Happy Points", "1,000 Happy Points", "1,000 Happy Point"),
        ("Formosa Air Miles", "Mile", "Miles", "1,000 Miles (Formosa Air)", "1,000 Mile (Formosa Air)"),
        (
            "FreshMart Rewards",
            "FreshMart Point",
            "FreshMart Points",
            "1,000 FreshMart Points",
            None,
        ),
        ("TuneStream", "Note", "Notes", "1,000 Notes (TuneStream)", None),
        ("Miles", "Mile", "Miles", "1,000 Miles", None),
    ],
)
def test_an_amount_of_a_programs_points_says_whose_they_are_without_saying_a_name_twice(
    name: str, point_name: str, plural: str, english: str, chinese: str | None
) -> None:
    """Pages said "1,000 Coalition Points of Coalition Points" and "Wallet Points of Wallet Pay
    Points"; a point whose name begins with its program's first word says whose it is itself
    ("1,000 FreshMart Points", not "… (FreshMart Rewards)")."""
    program = Program(id="p", name=name, point_name=point_name, point_name_plural=plural)
    assert format_points_of(program, 1_000, ENGLISH.locale) == english
    if chinese is not None:
        assert format_points_of(program, 1_000, TRADITIONAL_CHINESE.locale) == chinese


def test_moments_are_shown_to_the_minute_in_the_settlement_time_zone() -> None:
    moment = datetime(2026, 12, 31, 17, 30, tzinfo=UTC)  # 01:30 on 1 January in Taipei
    assert format_moment(moment, TAIPEI, ENGLISH.locale) == "Jan 1, 2027, 1:30\u202fAM"
    assert format_moment(moment, TAIPEI, TRADITIONAL_CHINESE.locale) == "2027年1月1日 凌晨1:30"
    # A short date puts the year first, as zh-TW's does: 1/3/27 is 3 January to some, 1 March to others.
    assert format_moment(moment, TAIPEI, ENGLISH.locale, "short") == "2027-01-01, 1:30\u202fAM"
    assert format_moment(moment, TAIPEI, TRADITIONAL_CHINESE.locale, "short").startswith("2027/1/1")  # its own
    assert format_day(moment, TAIPEI, ENGLISH.locale) == "Jan 1, 2027"
    assert format_day(date(2026, 12, 31), TAIPEI, TRADITIONAL_CHINESE.locale) == "2026年12月31日"


def test_the_zone_moments_are_shown_in_is_named_in_the_readers_language() -> None:
    assert format_zone(TAIPEI, ENGLISH.locale) == "Taiwan Time"
    assert format_zone(TAIPEI, TRADITIONAL_CHINESE.locale) == "台北時間"
    assert format_zone(ZoneInfo("UTC"), TRADITIONAL_CHINESE.locale) == "UTC"  # not "Unknown Region (UTC) Time"


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_moment(datetime(2026, 12, 1, 12, 0), TAIPEI, ENGLISH.locale)
