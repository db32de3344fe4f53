"""GraphQL types of the partners' books: a program's points and their cost over one period.

Every figure comes from one :class:`~exchange.books.report.PartnerBooks`, the value the CSV
export renders too, so the two always agree.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from enum import Enum

import strawberry

from exchange.api.permissions import PUBLIC, authorize_fields
from exchange.api.scalars import PointTotal
from exchange.api.types.money import Money
from exchange.api.types.settlement import STAFF_OR_OWNER, PeriodStatus
from exchange.books.budget import BudgetLevel as BudgetLevelValue
from exchange.books.budget import BudgetStatus
from exchange.books.report import CoalitionSide, value_of
from exchange.books.report import PartnerBooks as PartnerBooksValue
from exchange.money import Currency


@strawberry.enum(description="How much of its issue budget a program has spent in the period.")
class BudgetLevel(Enum):
    NONE = strawberry.enum_value(BudgetLevelValue.NONE.value, description="Under 80 %.")
    WARNING = strawberry.enum_value(BudgetLevelValue.WARNING.value, description="At least 80 %.")
    EXHAUSTED = strawberry.enum_value(BudgetLevelValue.EXHAUSTED.value, description="At least 100 %.")


@authorize_fields(PUBLIC)  # a value: whoever may read the books may read it
@strawberry.type(
    description="A number of points and their value (points × pointValue, half-even to the currency's minor "
    "unit), at the point value the books give: PartnerBooks.pointValue, or CoalitionBooks.pointValue for the "
    "coalition point's figures; the values the period's closing fixed, or today's while it is open."
)
class PointsFigure:
    points: PointTotal = strawberry.field(description="A whole number of the program's points.")
    value: Money = strawberry.field(description="Their value in the settlement currency.")

    @classmethod
    def valued_at(cls, point_value: Decimal, currency: Currency) -> Callable[[int], PointsFigure]:
        """The builder of every figure of one program's books (or of the coalition point's side):
        a number of points, valued at ``point_value``."""

        def figure(points: int) -> PointsFigure:
            return cls(
                points=PointTotal(points), value=Money.of_minor(value_of(points, point_value, currency), currency)
            )

        return figure


@authorize_fields(PUBLIC)
@strawberry.type(
    description="The program's side of the coalition point in the period. Movements (`funded`, `spentAt`) "
    "are read from the ledger; what it funded that is outstanding or expired from the point's lots "
    "(`funded_by` the program). Values are at the coalition point's value."
)
class CoalitionBooks:
    point_id: strawberry.ID = strawberry.field(description="The coalition point's program id.")
    point_value: Decimal = strawberry.field(
        description="Its value in the settlement currency, fixed as PartnerBooks.pointValue is."
    )
    breakage_kept_by: str = strawberry.field(
        description="Who keeps the value of expired points: `operator` or `funding-partners`."
    )
    funded: PointsFigure = strawberry.field(
        description="Coalition points the program funded: its members converted its points into them."
    )
    spent_at: PointsFigure = strawberry.field(
        description="Coalition points spent with the program (converted into its points, or paying for its "
        "rewards), net of reversals: what it received from the coalition."
    )
    outstanding: PointsFigure = strawberry.field(
        description="Of the coalition points it ever funded, those members still held at the period's end."
    )
    breakage: PointsFigure = strawberry.field(description="Of those it funded, the points that expired in the period.")
    breakage_to_date: PointsFigure = strawberry.field(
        description="Of those it funded, every point that expired up to the period's end."
    )
    maturing: PointsFigure = strawberry.field(description="Points of the lots it funded that expire in the period.")
    expiry_rate: Decimal | None = strawberry.field(
        description="The estimator: over every lot of the point whose expiry fell in the twelve months before the "
        "period, the points that lapsed (a matured lot's unspent rest included) ÷ the points those lots held; six "
        "decimals, half-even (the rule rates are shown by: the CSV and the partner console write the same digits). "
        "Null when no lot matured then."
    )
    estimated_breakage: PointsFigure | None = strawberry.field(
        description="expiryRate × maturing, half-even to whole points: the breakage to expect in the period."
    )

    @classmethod
    def of(cls, side: CoalitionSide, currency: Currency) -> CoalitionBooks:
        figures, points = side.figures, PointsFigure.valued_at(side.point_value, currency)
        estimate = figures.estimated_breakage
        return cls(
            point_id=strawberry.ID(figures.point_id),
            point_value=side.point_value,
            breakage_kept_by=side.breakage_kept_by,
            funded=points(figures.funded),
            spent_at=points(figures.spent_at),
            outstanding=points(figures.outstanding),
            breakage=points(figures.breakage),
            breakage_to_date=points(figures.breakage_to_date),
            maturing=points(figures.maturing),
            expiry_rate=figures.expiry_rate_shown,
            estimated_breakage=None if estimate is None else points(estimate),
        )


@authorize_fields(PUBLIC)
@strawberry.type(
    description="Issue spend against the declared budget (`[budget] monthly_issue` × the months of the "
    "period; the figure the period's closing recorded, as `pointValuesFixedAt` says of the point values, "
    "else today's). Alerts at exactly 80 % (WARNING) and 100 % (EXHAUSTED), each logged once."
)
class IssueBudget:
    budget: Money = strawberry.field(description="The period's budget.")
    spend: Money = strawberry.field(
        description="The value of what the program issued in the period: `issued.value` + `coalition.funded.value`."
    )
    percent_used: Decimal = strawberry.field(description="spend ÷ budget × 100, two decimals, half-even.")
    level: BudgetLevel = strawberry.field(description="The alert level `percentUsed` has reached.")

    @classmethod
    def of(cls, status: BudgetStatus, currency: Currency) -> IssueBudget:
        return cls(
            budget=Money.of_minor(status.budget, currency),
            spend=Money.of_minor(status.spend, currency),
            percent_used=status.percent_used,
            level=BudgetLevel(status.level.value),
        )


@authorize_fields(STAFF_OR_OWNER)
@strawberry.type(
    description="A program's books of one settlement period, from the clearing ledger: points it issued "
    "and took back through the exchange, what is outstanding and what it is worth, the money behind "
    "them and the cost per point. Entries count in the period they were posted into, as statements "
    "count them. The same figures as CSV: GET /settlement/books/{partnerId}/{period}.csv."
)
class PartnerBooks:
    partner_id: strawberry.ID = strawberry.field(description="The program the books are of.")
    period: str = strawberry.field(description="YYYY-MM.")
    starts_at: datetime = strawberry.field(description="The period's first instant.")
    ends_at: datetime = strawberry.field(description="The first instant after it.")
    period_status: PeriodStatus = strawberry.field(
        description="Where the period stands (OPEN: its figures so far), whatever `pointValuesFixedAt` says."
    )
    point_value: Decimal = strawberry.field(
        description="The point value every figure is valued at: the program's as the period's closing fixed it, "
        "or its declared value today while the period is open or closing, or when its closing fixed none of "
        "the program's (a program loaded since)."
    )
    point_values_fixed_at: datetime | None = strawberry.field(
        description="When the period's closing fixed the point values (the program's and the coalition point's); "
        "null while the period is open or closing, and for a closed period whose closing fixed no value of the "
        "program's (`periodStatus` says which): the figures are valued at today's declared values and change "
        "with them."
    )
    issued: PointsFigure = strawberry.field(
        description="Points the program issued to its members on the exchange's instruction."
    )
    converted_out: PointsFigure = strawberry.field(description="Its members' points converted out of the program.")
    redeemed_for_rewards: PointsFigure = strawberry.field(
        description="Its members' points paying for rewards, net of reversals."
    )
    redeemed: PointsFigure = strawberry.field(
        description="convertedOut + redeemedForRewards, points and value alike (its value is theirs added, "
        "so the books foot to the cent)."
    )
    reversed: PointsFigure = strawberry.field(
        description="Points given back by reversals in the period (already netted in the figures above)."
    )
    other_points: PointsFigure = strawberry.field(description="Points issued (+) or taken back (−) by adjustments.")
    outstanding: PointsFigure = strawberry.field(
        description="The outstanding liability the exchange created: points issued less points taken back, "
        "from the beginning to the period's end (negative when more left than came in), and its value."
    )
    money_received_for_issued: Money = strawberry.field(
        description="What the program was owed for the points it issued in the period."
    )
    money_paid_for_redeemed: Money = strawberry.field(
        description="What it owed for the points taken back (fees included)."
    )
    money_received_for_rewards: Money = strawberry.field(
        description="What it was owed for the rewards it published that members paid for with other programs' "
        "points, net of reversals."
    )
    money_other: Money = strawberry.field(
        description="The rest of moneyNet: adjustments, coalition points' breakage. moneyReceivedForIssued − "
        "moneyPaidForRedeemed + moneyReceivedForRewards + moneyOther = moneyNet."
    )
    money_net: Money = strawberry.field(description="Its whole clearing movement in the period: its statement's net.")
    cost_per_point: Decimal | None = strawberry.field(
        description="moneyPaidForRedeemed ÷ redeemed points, six decimals, half-even; null when none were taken back."
    )
    budget: IssueBudget | None = strawberry.field(
        description="Null when the program declares no issue budget (or, for a closed period, declared none when "
        "it closed)."
    )
    coalition: CoalitionBooks | None = strawberry.field(
        description="Its side of the coalition point; null when the coalition declares none (and for the point itself)."
    )

    @classmethod
    def of(cls, books: PartnerBooksValue) -> PartnerBooks:
        figures, currency = books.figures, books.currency
        points = PointsFigure.valued_at(books.point_value, currency)
        return cls(
            partner_id=strawberry.ID(books.partner),
            period=books.period,
            starts_at=books.starts_at,
            ends_at=books.ends_at,
            period_status=PeriodStatus(books.status.value),
            point_value=books.point_value,
            point_values_fixed_at=books.values_fixed_at,
            issued=points(figures.issued),
            converted_out=points(figures.converted_out),
            redeemed_for_rewards=points(figures.redeemed_for_rewards),
            redeemed=PointsFigure(
                points=PointTotal(figures.redeemed), value=Money.of_minor(books.redeemed_value, currency)
            ),
            reversed=points(figures.reversed),
            other_points=points(figures.other_points),
            outstanding=points(figures.outstanding),
            money_received_for_issued=Money.of_minor(figures.money_for_issued, currency),
            money_paid_for_redeemed=Money.of_minor(-figures.money_for_redeemed, currency),
            money_received_for_rewards=Money.of_minor(figures.money_for_rewards, currency),
            money_other=Money.of_minor(figures.money_other, currency),
            money_net=Money.of_minor(figures.money_net, currency),
            cost_per_point=books.cost_per_point,
            budget=None if books.budget is None else IssueBudget.of(books.budget, currency),
            coalition=None if books.coalition is None else CoalitionBooks.of(books.coalition, currency),
        )
