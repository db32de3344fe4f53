"""Reading conversions back: one by id, or a member's, newest first, a page at a time."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlmodel import and_, col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.conversions.errors import ConversionNotFound
from exchange.conversions.models import CONVERSION_ID_LENGTH, Conversion
from exchange.errors import NOT_A_CURSOR, BadUserInput
from exchange.text import text_problem

MAX_PAGE = 100
#: A cursor is base64 of a creation time and a conversion id: never longer than this.
CURSOR_LENGTH = 128


async def get_conversion(session: AsyncSession, conversion_id: str, *, member_id: str | None) -> Conversion:
    """A conversion; for a member (``member_id`` given) only their own, others are not found."""
    conversion = await session.get(Conversion, conversion_id)
    if conversion is None or (member_id is not None and conversion.member_id != member_id):
        raise ConversionNotFound(conversion_id)
    return conversion


def _cursor(conversion: Conversion) -> str:
    return base64.urlsafe_b64encode(f"{conversion.created_at.isoformat()}|{conversion.id}".encode()).decode()


def _position(cursor: str) -> tuple[datetime, str]:
    """The creation time, in UTC, and the conversion id a cursor holds. A time with an offset
    that takes it off the calendar in UTC (0001-01-01T00:00+14:00) is no cursor this API gave
    out: neither store can compare it; nor is one longer than any it gives out (the GraphQL
    field refuses it before, the portal's paging here)."""
    if text_problem(cursor, CURSOR_LENGTH):
        raise BadUserInput(NOT_A_CURSOR, field="after")
    try:
        created_at, conversion_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        written = datetime.fromisoformat(created_at)
        moment = written.astimezone(UTC) if written.tzinfo is not None else None
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        moment = None
    if moment is None or text_problem(conversion_id, CONVERSION_ID_LENGTH):
        raise BadUserInput(NOT_A_CURSOR, field="after")
    return moment, conversion_id


async def member_conversions(
    session: AsyncSession, member_id: str, *, first: int, after: str | None
) -> tuple[Sequence[Conversion], str | None]:
    """Up to ``first`` of the member's conversions after the cursor ``after``, and the next cursor."""
    if not 1 <= first <= MAX_PAGE:
        raise BadUserInput(f"first must be between 1 and {MAX_PAGE}", field="first")
    statement = select(Conversion).where(Conversion.member_id == member_id)
    if after is not None:
        created_at, conversion_id = _position(after)
        statement = statement.where(
            or_(
                col(Conversion.created_at) < created_at,
                and_(col(Conversion.created_at) == created_at, col(Conversion.id) < conversion_id),
            )
        )
    rows = (
        await session.exec(
            statement.order_by(col(Conversion.created_at).desc(), col(Conversion.id).desc()).limit(first + 1)
        )
    ).all()
    page = rows[:first]
    return page, _cursor(page[-1]) if len(rows) > first else None


async def source_program(session: AsyncSession, conversion_id: str) -> str | None:
    """The program a conversion takes points from (``None``: no conversion has this id): what
    funds the coalition points it credits."""
    row = (await session.exec(select(Conversion.from_program).where(Conversion.id == conversion_id))).first()
    return row


async def quote_conversion(session: AsyncSession, quote_id: str) -> str | None:
    """The id of the conversion a quote became (``None``: it was not converted)."""
    return (await session.exec(select(Conversion.id).where(Conversion.quote_id == quote_id))).first()
