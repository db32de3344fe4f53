"""The ``Decimal`` and ``DateTime`` scalars as the exchange reads them from clients.

Strawberry's own scalars take any value Python's ``Decimal`` and ``isoparse`` take: ``NaN``,
``Infinity``, ``1e999999``, Arabic-Indic or fullwidth digits, and times without a UTC offset.
None of those is how a price or a rate is written, and some cannot be priced, compared or
stored, so these replace them under the same names (partners' documents keep working) and
refuse such values while the request is parsed: nothing runs, and the error names the variable
(``BAD_USER_INPUT``). A Decimal is read by the rule every front end reads one by
(:data:`exchange.money.DECIMAL_NOTATION`) and answered in the same notation. Each field's own
bounds (its column's scale, a money amount's digits) are the domain's to check.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

from exchange.money import DECIMAL_RULE, parse_decimal

#: Digits a Decimal input may have before and after its point: more than any column holds.
MAX_DECIMAL_DIGITS = 18
#: The times a DateTime input may name: wide enough for any business date, narrow enough that
#: adding a period or a delivery window to one, or moving it to any time zone, stays on the
#: calendar.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class InvalidValue(ValueError):
    """A client's value a scalar refuses; the message says why."""


def parse_decimal_input(value: Any) -> Decimal:
    """A decimal within :data:`MAX_DECIMAL_DIGITS` digits on either side of the point, from a
    string in plain decimal notation (``"12.50"``, ``"-3"``) or a JSON integer; never from a
    float."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidValue('write a Decimal as a string, such as "12.50"')
    try:
        number = parse_decimal(value)
    except ValueError as refused:
        raise InvalidValue(f"a Decimal {refused}") from None
    if not number:
        return Decimal(0)  # whatever its digits (0.000 is zero)
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    if number.adjusted() >= MAX_DECIMAL_DIGITS or -(exponent + trailing_zeros) > MAX_DECIMAL_DIGITS:
        raise InvalidValue(
            f"{value!r} is out of range: at most {MAX_DECIMAL_DIGITS} digits before the point "
            f"and {MAX_DECIMAL_DIGITS} after it"
        )
    return number


def serialize_decimal(value: Decimal) -> str:
    """``value`` as inputs are written (``str`` would give ``1E-7`` for a tiny one)."""
    return format(value, "f")


def parse_datetime_input(value: Any) -> datetime:
    """An ISO 8601 time with its UTC offset (``2026-11-30T16:00:00+08:00``), as aware UTC."""
    if not isinstance(value, str):
        raise InvalidValue("write a DateTime as an ISO 8601 string with its UTC offset")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidValue(f"{value!r} is not an ISO 8601 date and time") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidValue(f"{value!r} has no UTC offset: add one, such as Z or +08:00")
    try:
        in_utc: datetime | None = moment.astimezone(UTC)
    except OverflowError:
        in_utc = None  # off the calendar once in UTC
    if in_utc is None or not EARLIEST <= in_utc < LATEST:
        raise InvalidValue(f"{value!r} is out of range: from {EARLIEST:%Y-%m-%d} until {LATEST:%Y-%m-%d}")
    return in_utc


DecimalScalar: ScalarDefinition = strawberry.scalar(
    name="Decimal",
    description=(
        f'An exact decimal, written as a string in {DECIMAL_RULE} ("12.50", "-3"; no exponent, '
        f"no NaN or Infinity), or as an integer: at most {MAX_DECIMAL_DIGITS} digits before the point "
        f"and {MAX_DECIMAL_DIGITS} after it (each field may allow fewer: see its description). Answered "
        "in the same notation."
    ),
    serialize=serialize_decimal,
    parse_value=parse_decimal_input,
)

DateTimeScalar: ScalarDefinition = strawberry.scalar(
    name="DateTime",
    description=(
        "A point in time, ISO 8601 with its UTC offset (2026-11-30T16:00:00+08:00, or Z); a time "
        f"without one is refused. From {EARLIEST:%Y-%m-%d} until {LATEST:%Y-%m-%d}. Answers are in UTC."
    ),
    serialize=datetime.isoformat,
    parse_value=parse_datetime_input,
)

#: A whole number of points that may outgrow GraphQL's 32-bit ``Int``: a program's totals, a balance a
#: partner reports (its contract allows 2^53 - 1).
PointTotal = NewType("PointTotal", int)


def parse_point_total(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue("write a PointTotal as a whole number")
    return value


PointTotalScalar: ScalarDefinition = strawberry.scalar(
    name="PointTotal",
    description="A whole number of points that may outgrow a 32-bit Int (a program's totals, a balance a partner "
    "reports), written as a JSON integer; exact in every client up to 2^53.",
    serialize=int,
    parse_value=parse_point_total,
)

#: ``scalar_overrides`` for the schema.
SCALARS: dict[object, ScalarDefinition] = {
    Decimal: DecimalScalar,
    datetime: DateTimeScalar,
    PointTotal: PointTotalScalar,
}
