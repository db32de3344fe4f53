"""The coalition point's declared rules, as the exchange applies them: its value, when a lot
expires, and who keeps the value of what expires."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.errors import NotFound
from exchange.money import Currency
from exchange.programs.models import CoalitionSettings, Program


class NoCoalitionPoint(NotFound):
    def __init__(self) -> None:
        super().__init__("the coalition declares no point ([point] in coalition.toml)", field="program")


def expiry_of(earned_at: datetime, zone: ZoneInfo) -> datetime:
    """The first instant a lot earned at ``earned_at`` is expired: 00:00 local on 1 January two
    years after the local year it was earned in (so it is good to the end of the next year).

    The year is read on the zone's calendar, not UTC's: 23:59:59.999 on 31 December local is
    still that year, and 00:00 on 1 January local is already the next.
    """
    if earned_at.tzinfo is None:
        raise ValueError("earned_at must be timezone-aware")
    local_year = earned_at.astimezone(zone).year
    return datetime(local_year + 2, 1, 1, tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class PointRules:
    """The loaded point: program id, value of one point, currency, expiry zone, breakage keeper."""

    program_id: str
    point_value: Decimal
    currency: Currency
    zone: ZoneInfo
    breakage: str

    def expiry_of(self, earned_at: datetime) -> datetime:
        return expiry_of(earned_at, self.zone)

    def value_minor(self, points: int) -> int:
        """The money value of ``points``, in minor units, rounded half-even (``ROUND_MONEY``)."""
        currency = self.currency
        return currency.to_minor(currency.round(self.point_value * points))


async def point_rules(session: AsyncSession) -> PointRules:
    """The coalition point as loaded; ``NOT_FOUND`` when none is declared."""
    rules = await declared_point(session)
    if rules is None:
        raise NoCoalitionPoint()
    return rules


async def declared_point(session: AsyncSession) -> PointRules | None:
    """The coalition point as loaded, or ``None`` when none is declared."""
    settings = await session.get(CoalitionSettings, 1)
    if settings is None or settings.point_program_id is None:
        return None
    program = await session.get(Program, settings.point_program_id)
    assert program is not None, "partners load writes the point's program with its settings"
    return PointRules(
        program_id=program.id,
        point_value=program.point_value,
        currency=settings.currency,
        zone=ZoneInfo(str(settings.point_timezone)),
        breakage=str(settings.point_breakage),
    )
