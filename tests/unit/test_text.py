"""Reading a whole number a person typed: ASCII digits only, whatever else str.isdigit admits."""

from __future__ import annotations

import pytest

from exchange.text import whole_number


@pytest.mark.parametrize(
    ("text", "number"),
    [(" 1,200 ", 1200), ("0", 0), ("9" * 18, 10**18 - 1), ("-5", None), ("", None), ("-", None)]
    + [(odd, None) for odd in ("\u00b2", "\u0661\u0662", "\uff11\uff12", "1.5", "1e3", "0x10", "NaN", "9" * 19)],
)
def test_a_whole_number_is_ascii_digits_within_its_length(text: str, number: int | None) -> None:
    assert whole_number(text) == number


@pytest.mark.parametrize(("text", "number"), [("-5", -5), ("--5", None), ("-", None), ("5-", None)])
def test_a_signed_whole_number_takes_one_leading_minus(text: str, number: int | None) -> None:
    assert whole_number(text, signed=True) == number
