"""Exact money: decimals from strings only, named rounding rules, minor units."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.money import Currency, canonical, parse_decimal, points_paid, rate_shown

TWD = Currency("TWD", 2)


@pytest.mark.parametrize("value", [0.1, 1.0, float("nan")])
def test_floats_are_refused(value: float) -> None:
    with pytest.raises(ValueError, match="inexact"):
        parse_decimal(value)


@pytest.mark.parametrize(
    "value",
    [
        "NaN",
        "Infinity",
        "-inf",
        "1e3",
        "1E-2",
        "\u0661\u0662",
        "\uff11\uff12.5",
        "1.2.3",
        "+-1",
        "",
        ".",
        "0x10",
        "1_000",
    ],
)
def test_anything_but_plain_ascii_decimal_notation_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="plain decimal notation"):
        parse_decimal(value)


def test_a_non_finite_decimal_object_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_decimal(Decimal("Infinity"))


def test_booleans_are_not_numbers() -> None:
    with pytest.raises(ValueError, match="boolean"):
        parse_decimal(True)


def test_strings_and_ints_are_exact() -> None:
    assert parse_decimal(" 0.10 ") == Decimal("0.10")
    assert [parse_decimal(text) for text in ("-12.5", ".5", "5.", "007")] == [
        Decimal("-12.5"),
        Decimal("0.5"),
        Decimal(5),
        Decimal(7),
    ]
    assert parse_decimal(7) == Decimal(7)


@pytest.mark.parametrize(
    ("amount", "rounded"),
    [("0.125", "0.12"), ("0.135", "0.14"), ("-0.125", "-0.12"), ("2.5", "2.50"), ("0.1251", "0.13")],
)
def test_money_rounds_half_even_to_the_minor_unit(amount: str, rounded: str) -> None:
    assert str(TWD.round(Decimal(amount))) == rounded


def test_minor_units_round_trip_exactly() -> None:
    assert TWD.to_minor(Decimal("12.34")) == 1234
    assert TWD.from_minor(-1234) == Decimal("-12.34")
    assert Currency("JPY", 0).to_minor(Decimal("500")) == 500


def test_amounts_finer_than_the_minor_unit_are_refused() -> None:
    with pytest.raises(ValueError, match="finer than"):
        TWD.to_minor(Decimal("0.005"))


@pytest.mark.parametrize(("value", "paid"), [("9.99", 9), ("10", 10), ("0.5", 0)])
def test_points_paid_round_down(value: str, paid: int) -> None:
    assert points_paid(Decimal(value)) == paid


@given(st.decimals(allow_nan=False, allow_infinity=False, places=6, min_value=-(10**12), max_value=10**12))
def test_canonical_writes_equal_numbers_alike(value: Decimal) -> None:
    padded = value.quantize(Decimal("1e-9"))
    assert canonical(value) == value
    assert str(canonical(padded)) == str(canonical(value))
    assert "E" not in str(canonical(value))


def test_canonical_drops_trailing_zeros_without_an_exponent() -> None:
    assert str(canonical(Decimal("0.400000"))) == "0.4"
    assert str(canonical(Decimal("100.000"))) == "100"


@pytest.mark.parametrize(
    ("rate", "shown"),
    [
        (Fraction(1, 3), "0.333333"),
        (Fraction(2, 3), "0.666667"),
        (Fraction(1, 2_000_000), "0.000000"),  # exactly half a millionth: to the even digit
        (Fraction(3, 2_000_000), "0.000002"),
        (Fraction(1), "1.000000"),
    ],
)
def test_a_rate_is_shown_to_six_decimals_half_even(rate: Fraction, shown: str) -> None:
    assert str(rate_shown(rate)) == shown
