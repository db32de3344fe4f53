"""Reading a whole number a person or a partner wrote (ASCII digits only, whatever else
str.isdigit admits), and writing a count with its noun."""

from __future__ import annotations

import pytest

from exchange.connectors.batch_files import MalformedLine, parse_credit
from exchange.text import counted, narrowed_digits, whole_number


@pytest.mark.parametrize(
    ("text", "number"),
    [(" 1,200 ", 1200), ("1,234,567", 1234567), ("0", 0), ("9" * 18, 10**18 - 1), ("-5", None), ("", None)]
    + [("-", None)]
    + [(odd, None) for odd in ("\u00b2", "\u0661\u0662", "\uff11\uff12", "1.5", "1e3", "0x10", "NaN", "9" * 19)]
    + [(misplaced, None) for misplaced in ("1,2,3", "12,34", "1,0000", ",100", "100,", "1,,000", "1234,567")],
)
def test_a_whole_number_is_ascii_digits_within_its_length(text: str, number: int | None) -> None:
    assert whole_number(text) == number


@pytest.mark.parametrize(
    ("text", "number"), [("-5", -5), ("--5", None), ("-", None), ("5-", None), ("-0", 0), ("-0,000", 0)]
)
def test_a_signed_whole_number_takes_one_leading_minus(text: str, number: int | None) -> None:
    """``-0`` is 0, as GraphQL's ``Int`` (``stock: -0``) and JSON read it: the partner console's
    form takes for a field what the API takes for it (a reward's stock of ``-0`` is a stock of 0)."""
    assert whole_number(text, signed=True) == number


@pytest.mark.parametrize(
    ("typed", "number"),
    [("\uff11\uff10\uff10\uff10", 1000), ("\uff11\uff0c\uff10\uff10\uff10", 1000), ("\u3000\uff15\u3000", 5)]
    + [(odd, None) for odd in ("10\u00b2", "\u0661\u0662", "\uff11\uff0e\uff15", "\uff0d\uff15")],
)
def test_full_width_digits_and_commas_a_chinese_keyboard_types_read_as_their_number(
    typed: str, number: int | None
) -> None:
    """Only the full-width forms of what whole_number reads: not a superscript, other scripts'
    digits, a full-width point or minus."""
    assert whole_number(narrowed_digits(typed)) == number


@pytest.mark.parametrize("points", ["\u00b2", "\uff11\uff12", "+5", " 5", "-5", "0", str(2**53)])
def test_a_credits_file_line_with_points_that_are_not_ascii_digits_in_range_is_malformed(points: str) -> None:
    with pytest.raises(MalformedLine, match="points must be a whole number"):
        parse_credit(f"op-1,alice,{points}", 2)


@pytest.mark.parametrize(
    ("count", "noun", "written"),
    [
        (1, "transaction", "1 transaction"),
        (2, "transaction", "2 transactions"),
        (0, "transaction", "0 transactions"),
        (1, "settlement period", "1 settlement period"),
        (3, "settlement period", "3 settlement periods"),
        (1, "delivery", "1 delivery"),
        (2, "delivery", "2 deliveries"),
        (1, "status match", "1 status match"),
        (2, "status match", "2 status matches"),
        (2, "day", "2 days"),
        (2, "coalition point", "2 coalition points"),
    ],
)
def test_a_count_takes_the_singular_for_one_and_the_plural_otherwise(count: int, noun: str, written: str) -> None:
    assert counted(count, noun) == written
