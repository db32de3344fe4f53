"""A program's issue spend against its declared monthly budget, and alerts at 80 % and 100 %.

The spend of a period is the value of what the program issued through the exchange in it: its
own points issued (× its point value) and the coalition points it funded (× the coalition
point's value), each rounded once by ``ROUND_MONEY``. The budget is declared per
calendar month (``[budget] monthly_issue`` in ``partners/<program>.toml``); a settlement period
of several months has that many months of budget.

Levels are compared exactly, in integers (``spend × 100 ≥ budget × percent``): a spend of exactly
80 % of the budget is a WARNING, exactly 100 % is EXHAUSTED. Each level a program's spend
reaches in a period is recorded once (``budget_crossing``) and logged once, by whoever first
computes the books after the crossing; reading the books again logs nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.books.models import BudgetCrossing
from exchange.db import dialects
from exchange.money import Currency
from exchange.observability.logs import log_context

logger = logging.getLogger(__name__)


class BudgetLevel(StrEnum):
    NONE = "NONE"
    """Under 80 % of the budget."""
    WARNING = "WARNING"
    """At least 80 %."""
    EXHAUSTED = "EXHAUSTED"
    """At least 100 %."""


#: Alert levels and the percent of the budget at which each begins, lowest first.
THRESHOLDS: tuple[tuple[BudgetLevel, int], ...] = ((BudgetLevel.WARNING, 80), (BudgetLevel.EXHAUSTED, 100))


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """The period's budget and spend, in minor units of the settlement currency."""

    budget: int
    spend: int

    @property
    def crossed(self) -> tuple[BudgetLevel, ...]:
        """Every alert level the spend has reached, lowest first."""
        return tuple(level for level, percent in THRESHOLDS if self.spend * 100 >= self.budget * percent)

    @property
    def level(self) -> BudgetLevel:
        return self.crossed[-1] if self.crossed else BudgetLevel.NONE

    @property
    def level_begins_at(self) -> int | None:
        """The percent of the budget at which :attr:`level` begins (None below the first alert)."""
        return dict(THRESHOLDS).get(self.level)

    @property
    def percent_used(self) -> Decimal:
        """spend ÷ budget × 100, to two decimals by ``ROUND_MONEY`` (shown, never compared)."""
        return Decimal(round(Fraction(self.spend * 10_000, self.budget))).scaleb(-2)  # round(): half-even


def period_budget(monthly_minor: int, months: int) -> int:
    """A period's budget: a month's, once per month the period spans."""
    return monthly_minor * months


async def record_crossings(
    session: AsyncSession, program_id: str, period: str, status: BudgetStatus, *, now: datetime
) -> tuple[BudgetLevel, ...]:
    """Record every level ``status`` has reached that was not recorded yet; the levels this call
    recorded (what the caller logs, once its unit of work has committed). Concurrent callers
    race on the row's key: one inserts, the others find it."""
    recorded: list[BudgetLevel] = []
    for level in status.crossed:  # at most two levels
        inserted = await session.exec(
            dialects.insert(session, BudgetCrossing)
            .values(
                program_id=program_id,
                period=period,
                level=level.value,
                crossed_at=now,
                spend_minor=status.spend,
                budget_minor=status.budget,
            )
            .on_conflict_do_nothing(index_elements=["program_id", "period", "level"])
            .returning(BudgetCrossing.__table__.c.level)  # type: ignore[attr-defined]
        )
        if inserted.first() is not None:
            recorded.append(level)
    return tuple(recorded)


def log_crossings(
    program_id: str, period: str, status: BudgetStatus, levels: tuple[BudgetLevel, ...], currency: Currency
) -> None:
    """One structured warning per newly crossed level (``event=budget_alert`` and its figures
    as the record's fields, in JSON logs too)."""
    for level in levels:
        with log_context(
            event="budget_alert",
            program_id=program_id,
            period=period,
            level=level.value,
            spend=str(currency.from_minor(status.spend)),
            budget=str(currency.from_minor(status.budget)),
            currency=currency.code,
        ):
            logger.warning(
                "issue budget %s: %s spent %s of %s %s in %s (%s %%)",
                level.value,
                program_id,
                currency.from_minor(status.spend),
                currency.from_minor(status.budget),
                currency.code,
                period,
                status.percent_used,
            )
