"""Column types that keep values exact and times aware on PostgreSQL and SQLite alike.

SQLite has no decimal type: SQLAlchemy's ``Numeric`` would round-trip through a float there.
:class:`ExactNumeric` stores ``NUMERIC(p, s)`` on PostgreSQL and the decimal's text on SQLite,
so no float ever touches a stored amount; both read back in :func:`~exchange.money.canonical`
form. :class:`UTCDateTime` stores ``timestamptz`` on
PostgreSQL and always hands back timezone-aware UTC datetimes, on SQLite too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, Numeric, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from exchange.money import canonical


class ExactNumeric(TypeDecorator[Decimal]):
    """An exact decimal column: ``NUMERIC(precision, scale)`` or, on SQLite, its text."""

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        super().__init__()
        self.precision = precision
        self.scale = scale

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(self.precision + 2))
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"ExactNumeric takes Decimal, not {type(value).__name__}")
        if dialect.name == "sqlite":
            return str(value)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return canonical(value if isinstance(value, Decimal) else Decimal(value))


class UTCDateTime(TypeDecorator[datetime]):
    """A point in time, stored with its zone and always read back as aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are refused: pass an aware UTC time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


#: The largest value a 32-bit (``INTEGER``) column holds.
MAX_INTEGER = 2**31 - 1
#: The largest value a 64-bit (``BIGINT``) column holds.
MAX_BIGINT = 2**63 - 1
#: A 64-bit auto-increment key; on SQLite only ``INTEGER PRIMARY KEY`` auto-increments.
BigIdentity = BigInteger().with_variant(Integer(), "sqlite")
