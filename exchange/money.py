"""Exact money: every Decimal the exchange uses is made and rounded here.

Rules (each rounding names one of them):

* ``ROUND_MONEY`` — money rounds half-even to the settlement currency's minor unit.
* ``ROUND_POINTS_PAID`` — points paid out round down (toward zero for the positive amounts
  the exchange pays), so the exchange never pays a fraction it does not have.
* ``ROUND_POINTS_CHARGED`` — points a member pays for something round up, so the points
  always cover the whole price: a member pays whole points, never a fraction short.
* ``ROUND_RATE`` — a rate shown (the coalition point's expiry rate, a cost per point) rounds
  half-even, once, from its exact value, to :data:`RATE_SCALE` decimals: every page, file and
  API field that shows it writes the same digits (:func:`rate_shown`).

Floats are refused everywhere: a float cannot hold 0.1 exactly, so one reaching a balance,
a rate or an amount is a bug, and these helpers make it a loud one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal
from fractions import Fraction

ROUND_MONEY = ROUND_HALF_EVEN
ROUND_POINTS_PAID = ROUND_DOWN
ROUND_POINTS_CHARGED = ROUND_UP
ROUND_RATE = ROUND_HALF_EVEN

#: Fractional digits a program's point value may carry (1000 points = 33 TWD needs 3).
POINT_VALUE_SCALE = 6
#: Decimals a rate is shown with (``ROUND_RATE``): as many as a point value has.
RATE_SCALE = POINT_VALUE_SCALE
#: Decimals a percent keeps (a fee, a promotion's or a tier's bonus; their columns are NUMERIC(9, 4)).
PERCENT_SCALE = 4
#: Digits a money amount may have before its point (999,999,999,999,999.99): its minor units,
#: with up to three decimals, fit the 64-bit integer columns amounts are stored in.
MAX_MONEY_INTEGER_DIGITS = 15
#: How people and partners write a decimal: an optional minus, ASCII digits, at most one point
#: (``-12.50``, ``0.25``, ``.5``). No exponent (``1e3``), no ``NaN`` or ``Infinity``, no digits
#: of other scripts (``١٢``, ``１２``), which Python's ``Decimal`` would all take.
DECIMAL_NOTATION = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
DECIMAL_RULE = 'plain decimal notation: ASCII digits with at most one ".", and an optional leading "-"'


def parse_decimal(value: object) -> Decimal:
    """Read an exact decimal from a string (in :data:`DECIMAL_NOTATION`, spaces around
    allowed), an int or a Decimal; refuse floats and junk.

    Raises ``ValueError`` with a reason a person can act on.
    """
    if isinstance(value, bool):
        raise ValueError('must be a decimal string such as "0.25", not a boolean')
    if isinstance(value, float):
        raise ValueError(f'must be a decimal string such as "{value}": a float is inexact')
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        if not DECIMAL_NOTATION.fullmatch(value.strip()):
            raise ValueError(f"must be written in {DECIMAL_RULE}, got {value!r}")
        result = Decimal(value.strip())
    else:
        raise ValueError(f"must be a decimal string, not {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"{value!r} is not a finite decimal number")
    return result


def canonical(value: Decimal) -> Decimal:
    """The same number without trailing zeros or an exponent (``0.400000`` → ``0.4``).

    PostgreSQL hands back ``NUMERIC(18, 6)`` values with all six digits; SQLite hands back
    the text it stored. Reading through this makes both give the same value, written the
    same way.
    """
    return Decimal(format(value.normalize(), "f"))


def decimal_places(value: Decimal) -> int:
    """How many fractional digits ``value`` is written with (``Decimal("1.50")`` → 2)."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite decimals only
    return max(0, -exponent)


@dataclass(frozen=True, slots=True)
class Currency:
    """A settlement currency: its ISO 4217 code and the digits of its minor unit."""

    code: str
    minor_units: int

    @property
    def quantum(self) -> Decimal:
        return Decimal(1).scaleb(-self.minor_units)

    def round(self, amount: Decimal | Fraction) -> Decimal:
        """Round an exact amount to the minor unit by ``ROUND_MONEY`` (half-even)."""
        # round() of a Fraction rounds half to even, which is ROUND_MONEY.
        return self.from_minor(round(Fraction(amount) * 10**self.minor_units))

    def to_minor(self, amount: Decimal) -> int:
        """Exact amount in minor units; refuses an amount finer than the minor unit, or with more
        than :data:`MAX_MONEY_INTEGER_DIGITS` digits before its point."""
        if not amount.is_finite() or (amount and amount.adjusted() >= MAX_MONEY_INTEGER_DIGITS):
            raise ValueError(
                f"{amount} {self.code} is out of range: at most {MAX_MONEY_INTEGER_DIGITS} digits before the point"
            )
        minor = amount.scaleb(self.minor_units)
        if minor != minor.to_integral_value():
            raise ValueError(f"{amount} {self.code} is finer than the currency's minor unit")
        return int(minor)

    def from_minor(self, minor: int) -> Decimal:
        return Decimal(minor).scaleb(-self.minor_units).quantize(self.quantum)


def rate_shown(value: Fraction) -> Decimal:
    """An exact rate to :data:`RATE_SCALE` decimals by ``ROUND_RATE`` (half-even)."""
    # round() of a Fraction rounds half to even, which is ROUND_RATE.
    return Decimal(round(value * 10**RATE_SCALE)).scaleb(-RATE_SCALE)


def points_paid(value: Decimal | Fraction) -> int:
    """Whole points to pay out for an exact ``value``, by ``ROUND_POINTS_PAID`` (down)."""
    return math.trunc(Fraction(value))  # toward zero: ROUND_DOWN


def points_charged(value: Decimal | Fraction) -> int:
    """Whole points to charge for an exact, positive ``value``, by ``ROUND_POINTS_CHARGED`` (up)."""
    return math.ceil(Fraction(value))
