"""A partner's books of one period as one value, and the same figures as CSV lines.

GraphQL's ``partnerBooks``, the CSV export and ``exchange books`` all render this value, so they
cannot disagree. Money is in minor units of the settlement currency here; a points figure's
value is ``points × point value`` rounded once by ``ROUND_MONEY`` (half-even to the minor unit),
except a figure that is the sum of others (``redeemed``): its value is theirs added, so that the
books foot to the cent even when a point is worth a fraction of the minor unit (1 point at
0.035 TWD is 0.04 twice, 0.08, where 2 points valued at once would be 0.07).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from exchange.books.budget import BudgetStatus
from exchange.books.coalition import CoalitionFigures
from exchange.books.figures import LedgerFigures
from exchange.clock import utc_instant
from exchange.ledger.periods import PeriodStatus
from exchange.money import Currency, rate_shown
from exchange.spreadsheet import spreadsheet_row

CSV_COLUMNS = ("partner", "period", "figure", "points", "amount", "currency")


def value_of(points: int, point_value: Decimal, currency: Currency) -> int:
    """``points`` valued at ``point_value``, in minor units (``ROUND_MONEY``: half-even)."""
    return currency.to_minor(currency.round(Fraction(points) * Fraction(point_value)))


@dataclass(frozen=True, slots=True)
class CoalitionSide:
    """The program's coalition figures, and what values them."""

    figures: CoalitionFigures
    point_value: Decimal
    """The coalition point's value, as :attr:`PartnerBooks.point_value` is fixed."""
    breakage_kept_by: str
    """Who keeps expired points' value: ``operator`` or ``funding-partners``."""

    def value(self, points: int, currency: Currency) -> int:
        return value_of(points, self.point_value, currency)

    def points_lines(self) -> tuple[tuple[str, int | None], ...]:
        figures = self.figures
        return (
            ("coalition_funded", figures.funded),
            ("coalition_spent_at", figures.spent_at),
            ("coalition_outstanding", figures.outstanding),
            ("coalition_breakage", figures.breakage),
            ("coalition_breakage_to_date", figures.breakage_to_date),
            ("coalition_maturing", figures.maturing),
            ("coalition_estimated_breakage", figures.estimated_breakage),
        )


@dataclass(frozen=True, slots=True)
class PartnerBooks:
    partner: str
    period: str
    starts_at: datetime
    ends_at: datetime
    status: PeriodStatus
    """Where the period stands, whatever its point values: a closed period whose closing fixed no
    value of the program (loaded since) is closed still."""
    currency: Currency
    point_value: Decimal
    """What every points figure is valued at: the program's value of one point as the period's
    closing fixed it, or today's declared value (the period is open or closing, or its closing
    fixed no value of the program's)."""
    values_fixed_at: datetime | None
    """When the period's closing fixed the point values; ``None``: today's."""
    figures: LedgerFigures
    budget: BudgetStatus | None
    """None when the program declares no issue budget."""
    coalition: CoalitionSide | None
    """None when the coalition declares no point (or for the point itself)."""

    def value(self, points: int) -> int:
        return value_of(points, self.point_value, self.currency)

    @property
    def cost_per_point(self) -> Decimal | None:
        """What each point taken back through the exchange cost the partner in the period: the
        money it paid for them ÷ the points (a rate: ``ROUND_RATE``); None without any."""
        redeemed = self.figures.redeemed
        if redeemed == 0:
            return None
        return rate_shown(Fraction(-self.figures.money_for_redeemed, 10**self.currency.minor_units) / redeemed)

    @property
    def redeemed_value(self) -> int:
        """The value of every point taken back: its two parts' values added (see the module)."""
        return self.value(self.figures.converted_out) + self.value(self.figures.redeemed_for_rewards)

    def points_lines(self) -> tuple[tuple[str, int, int], ...]:
        """Each points figure by the name the CSV gives it (GraphQL's field, in snake case, but
        ``other`` for ``otherPoints``), with its value in minor units."""
        figures, value = self.figures, self.value
        return (
            ("issued", figures.issued, value(figures.issued)),
            ("converted_out", figures.converted_out, value(figures.converted_out)),
            ("redeemed_for_rewards", figures.redeemed_for_rewards, value(figures.redeemed_for_rewards)),
            ("redeemed", figures.redeemed, self.redeemed_value),
            ("reversed", figures.reversed, value(figures.reversed)),
            ("other", figures.other_points, value(figures.other_points)),
            ("outstanding", figures.outstanding, value(figures.outstanding)),
        )

    def money_lines(self) -> tuple[tuple[str, int], ...]:
        """Each money figure (minor units) by its CSV name: received for issued − paid for
        redeemed + received for rewards + other = net."""
        figures = self.figures
        lines = [
            ("money_received_for_issued", figures.money_for_issued),
            ("money_paid_for_redeemed", -figures.money_for_redeemed),
            ("money_received_for_rewards", figures.money_for_rewards),
            ("money_other", figures.money_other),
            ("money_net", figures.money_net),
        ]
        if self.budget is not None:
            lines += [("budget", self.budget.budget), ("budget_spend", self.budget.spend)]
        return tuple(lines)

    def csv_rows(self) -> Iterator[tuple[str, ...]]:
        """The CSV's rows, header first: one per figure."""
        money = self.currency.from_minor
        yield CSV_COLUMNS
        base = (self.partner, self.period)
        for name, points, value in self.points_lines():
            yield (*base, name, str(points), str(money(value)), self.currency.code)
        for name, minor in self.money_lines():
            yield (*base, name, "", str(money(minor)), self.currency.code)
        cost = self.cost_per_point
        yield (*base, "cost_per_point", "", "" if cost is None else str(cost), self.currency.code)
        yield (*base, "point_value", "", str(self.point_value), self.currency.code)
        fixed = "" if self.values_fixed_at is None else utc_instant(self.values_fixed_at)
        yield (*base, "point_values_fixed_at", "", fixed, "")
        yield (*base, "period_status", "", self.status.value, "")
        if self.coalition is not None:
            side = self.coalition
            for name, count in side.points_lines():
                if count is None:
                    yield (*base, name, "", "", self.currency.code)
                else:
                    amount = money(side.value(count, self.currency))
                    yield (*base, name, str(count), str(amount), self.currency.code)
            rate = side.figures.expiry_rate_shown
            yield (*base, "coalition_expiry_rate", "", "" if rate is None else str(rate), "")
            yield (*base, "coalition_point_value", "", str(side.point_value), self.currency.code)
            yield (*base, "coalition_breakage_kept_by", "", side.breakage_kept_by, "")
        if self.budget is not None:
            yield (*base, "budget_percent_used", "", str(self.budget.percent_used), "")
            yield (*base, "budget_level", "", self.budget.level.value, "")


def csv_lines(books: PartnerBooks) -> Iterator[str]:
    """The CSV export, one text line at a time (RFC 4180: CRLF line ends), every cell written
    so that a spreadsheet opening it shows text or a number, never runs a formula
    (:func:`~exchange.spreadsheet.spreadsheet_row`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in books.csv_rows():
        writer.writerow(spreadsheet_row(row))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
