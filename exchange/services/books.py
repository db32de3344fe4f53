"""The partners' books: one unit of work reads a program's figures for a period from the
ledger and the coalition point's lots, values them (at the point values the period's closing
fixed, or today's while it is open: :mod:`exchange.programs.valuation`), compares its issue spend (the points it issued and the
coalition points it funded, at their values) with its budget (as the period's closing fixed it too,
or today's declared one) and records (then logs) the alert
levels crossed for the first time. GraphQL, the CSV export and ``exchange books`` call this alone."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.books.budget import BudgetLevel, BudgetStatus, log_crossings, period_budget, record_crossings
from exchange.books.coalition import coalition_figures
from exchange.books.figures import ledger_figures
from exchange.books.report import CoalitionSide, PartnerBooks, value_of
from exchange.clock import Clock
from exchange.db.database import Database
from exchange.ledger.periods import SettlementCalendar, period_status
from exchange.programs.models import CoalitionSettings
from exchange.programs.service import get_coalition, get_program
from exchange.programs.valuation import point_value


@dataclass
class BooksService:
    db: Database
    calendar: SettlementCalendar
    clock: Clock

    def current_period(self) -> str:
        """The period under way, by the settlement calendar and this service's clock."""
        return self.calendar.period_of(self.clock.now())

    async def partner_books(self, partner_id: str, period: str) -> PartnerBooks:
        """``partner_id``'s books of ``period`` (``YYYY-MM``; an open period's so far).

        Refuses a malformed period (``BAD_USER_INPUT``, field ``period``) and an unknown
        program (``NOT_FOUND``, field ``partnerId``) before reading anything.
        """
        period = self.calendar.parse(period)
        async with self.db.transaction() as session:
            program = await get_program(session, partner_id, field="partnerId")
            coalition = (await get_coalition(session)).settings
            currency = coalition.currency
            status = await period_status(session, period)
            value = await point_value(session, program, period)
            figures = await ledger_figures(session, program.id, period)
            side = await self._coalition_side(session, program.id, period, coalition)
            budget: BudgetStatus | None = None
            crossed: tuple[BudgetLevel, ...] = ()
            if value.monthly_issue is not None:
                budget = BudgetStatus(
                    budget=period_budget(currency.to_minor(value.monthly_issue), self.calendar.months),
                    spend=value_of(figures.issued, value.value, currency)
                    + (0 if side is None else value_of(side.figures.funded, side.point_value, currency)),
                )
                crossed = await record_crossings(session, program.id, period, budget, now=self.clock.now())
        if budget is not None:  # logged once committed: a rolled-back crossing was never recorded
            log_crossings(program.id, period, budget, crossed, currency)
        return PartnerBooks(
            partner=program.id,
            period=period,
            starts_at=self.calendar.starts_at(period),
            ends_at=self.calendar.ends_at(period),
            status=status,
            currency=currency,
            point_value=value.value,
            values_fixed_at=value.fixed_at,
            figures=figures,
            budget=budget,
            coalition=side,
        )

    async def _coalition_side(
        self, session: AsyncSession, program_id: str, period: str, coalition: CoalitionSettings
    ) -> CoalitionSide | None:
        point_id = coalition.point_program_id
        if point_id is None or point_id == program_id:
            return None
        point = await get_program(session, point_id)
        year_before = f"{int(period[:4]) - 1:04d}{period[4:]}"
        figures = await coalition_figures(
            session,
            program_id=program_id,
            point_id=point_id,
            period=period,
            starts=self.calendar.starts_at(period),
            ends=self.calendar.ends_at(period),
            since=self.calendar.starts_at(year_before),
        )
        fixed = await point_value(session, point, period)
        return CoalitionSide(figures, fixed.value, str(coalition.point_breakage))
