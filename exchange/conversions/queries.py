"""Reading conversions back: one by id, or a member's, newest first, a page at a time."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.conversions.errors import ConversionNotFound
from exchange.conversions.models import Conversion
from exchange.db.paging import Keyset, Page, read_page
from exchange.errors import BadUserInput

MAX_PAGE = 100
#: A member's conversions, newest first.
MEMBER_CONVERSIONS = Keyset("conversions", (col(Conversion.created_at), col(Conversion.id)), descending=True)


async def get_conversion(session: AsyncSession, conversion_id: str, *, member_id: str | None) -> Conversion:
    """A conversion; for a member (``member_id`` given) only their own, others are not found."""
    conversion = await session.get(Conversion, conversion_id)
    if conversion is None or (member_id is not None and conversion.member_id != member_id):
        raise ConversionNotFound(conversion_id)
    return conversion


async def member_conversions(
    session: AsyncSession, member_id: str, *, first: int, after: str | None
) -> Page[Conversion]:
    """Up to ``first`` of the member's conversions after the cursor ``after``, and the next cursor."""
    if not 1 <= first <= MAX_PAGE:
        raise BadUserInput(f"first must be between 1 and {MAX_PAGE}", field="first")
    statement = select(Conversion).where(Conversion.member_id == member_id)
    return await read_page(session, statement, MEMBER_CONVERSIONS, scope=member_id, first=first, after=after)


async def source_program(session: AsyncSession, conversion_id: str) -> str | None:
    """The program a conversion takes points from (``None``: no conversion has this id): what
    funds the coalition points it credits."""
    row = (await session.exec(select(Conversion.from_program).where(Conversion.id == conversion_id))).first()
    return row


async def quote_conversion(session: AsyncSession, quote_id: str) -> str | None:
    """The id of the conversion a quote became (``None``: it was not converted)."""
    return (await session.exec(select(Conversion.id).where(Conversion.quote_id == quote_id))).first()
