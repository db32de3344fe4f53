"""What a period's points are valued at, and its issuing budgeted against: the figures its
closing fixed, or today's while it is open.

A program's declared point value and monthly issue budget change when its partner says so
(partners/*.toml, loaded again). A closed period's books must not change with them: a partner's
finance team reads the books of a signed-off month again and expects the figures it booked. So
the closing records every program's value and budget of that moment in the same unit of work as
the netting (one set-based statement), and the books of a closed period use those; an open
period's books use today's declared figures, and say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import literal, select, true
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db import dialects
from exchange.db.types import UTCDateTime
from exchange.programs.models import PeriodPointValue, Program


@dataclass(frozen=True, slots=True)
class PointValue:
    value: Decimal
    monthly_issue: Decimal | None
    """The program's monthly issue budget (none declared: ``None``), fixed with the value."""
    fixed_at: datetime | None
    """When ``period``'s closing fixed them; ``None``: today's declared figures."""


async def fix_point_values(session: AsyncSession, period: str, now: datetime) -> None:
    """Record every program's declared point value and monthly issue budget as ``period``'s (its
    closing; figures fixed already stay: a closing that is finished again changes nothing)."""
    table = PeriodPointValue.__table__  # type: ignore[attr-defined]
    programs = select(
        literal(period).label("period"),
        col(Program.id),
        col(Program.point_value),
        col(Program.budget_monthly_issue),
        literal(now, UTCDateTime()).label("fixed_at"),
    ).where(true())  # SQLite reads ON CONFLICT after a SELECT without WHERE as a join's ON

    await session.exec(
        dialects.insert(session, table)
        .from_select(["period", "program_id", "point_value", "monthly_issue", "fixed_at"], programs)
        .on_conflict_do_nothing()
    )


async def point_value(session: AsyncSession, program: Program, period: str) -> PointValue:
    """``program``'s point value and monthly issue budget for ``period``'s figures: fixed at its
    closing, else today's."""
    fixed = await session.get(PeriodPointValue, (period, program.id))
    if fixed is not None:
        return PointValue(fixed.point_value, fixed.monthly_issue, fixed.fixed_at)
    return PointValue(program.point_value, program.budget_monthly_issue, None)
