"""GraphQL types of rate versions and promotions: a partner's own, and staff's to read."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import Enum

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.permissions import (
    PUBLIC,
    Rule,
    authorize_fields,
    own_program,
    requires,
    source,
)
from exchange.api.types.money import Money, replaced_by_money
from exchange.auth.scopes import Scope
from exchange.pricing.models import Promotion as PromotionRow
from exchange.pricing.models import RateVersion as RateVersionRow

#: Rates and promotions into a program are its partner's; staff may read all of them.
TARGET_PARTNERS: Rule = (requires(Scope.PARTNER_READ) & own_program(source("to_program"))) | requires(
    Scope.SETTLEMENT_READ, Scope.ADMIN_READ
)
PROMOTION_OWNERS: Rule = (requires(Scope.PARTNER_READ) & own_program(source("program_id"))) | requires(
    Scope.SETTLEMENT_READ, Scope.ADMIN_READ
)


@strawberry.enum(
    description="Who set a rate version: derived from point values, declared by the operator, or set by the partner."
)
class RateOrigin(Enum):
    DERIVED = strawberry.enum_value("derived", description="Derived from the two programs' point values.")
    DECLARED = strawberry.enum_value(
        "declared",
        description="Declared by the exchange in the target program's declaration (`partners/<id>.toml`); not the partner's to change.",
    )
    PARTNER = strawberry.enum_value("partner", description="Set by the target program's partner (`setConversionRate`).")


@authorize_fields(PUBLIC)
@strawberry.type(description="From `fromPoints` points in, the whole amount converts at `pointsIn`:`pointsOut`.")
class RateBand:
    from_points: int = strawberry.field(description="The smallest conversion, in points in, this band prices.")
    points_in: int = strawberry.field(description="The ratio's points in (`3` of `3:1`).")
    points_out: int = strawberry.field(description="The ratio's points out (`1` of `3:1`).")


@authorize_fields(TARGET_PARTNERS)
@strawberry.type(
    description="One version of the rate that prices conversions from one program into another. "
    "A version never changes; a new one supersedes it."
)
class RateVersion:
    id: strawberry.ID = strawberry.field(description="The version's own id, unique across pairs.")
    version: int = strawberry.field(description="1, 2, ... for this pair.")
    from_program_id: strawberry.ID = strawberry.field(description="The program points convert from.")
    to_program_id: strawberry.ID = strawberry.field(description="The program points convert into.")
    effective_from: datetime = strawberry.field(description="When it started pricing quotes.")
    effective_to: datetime | None = strawberry.field(description="Null while current.")
    origin: RateOrigin = strawberry.field(description="Who set it.")
    created_by: str = strawberry.field(description="The client id (or `operator`) that made it.")
    source_point_value: Decimal = strawberry.field(
        description="One `fromProgram` point's value in the settlement currency, fixed when this version was made."
    )
    target_point_value: Decimal = strawberry.field(
        description="One `toProgram` point's value in the settlement currency, fixed when this version was made."
    )
    fee_percent: Decimal = strawberry.field(
        description="The exchange's fee in percent of the money value (`1.5` is 1.5 %), set by the exchange."
    )
    fee_fixed: Decimal = strawberry.field(
        description="A fixed fee per conversion, in the settlement currency, added to the percent fee.",
        deprecation_reason=replaced_by_money("fixedFee"),
    )
    bands: list[RateBand] = strawberry.field(description="Empty: the rate derives from the point values.")
    bonus_every: int | None = strawberry.field(description="A step bonus: every this many points in ...")
    bonus_points: int | None = strawberry.field(description="... earn this many points out extra.")
    minimum_points: int | None = strawberry.field(
        description="The fewest points in one conversion of this pair; the larger of it and the source "
        "program's minimum applies (null: the source program's)."
    )
    increment: int | None = strawberry.field(
        description="Points in must be a multiple of this, in place of the source program's increment "
        "(null: the source program's)."
    )
    member_daily_cap: int | None = strawberry.field(
        description="Most points in a member may convert over this pair per day, in the settlement time zone. "
        "Null: no pair cap (the source program's own caps still apply)."
    )
    member_monthly_cap: int | None = strawberry.field(
        description="The same, per calendar month. Null: no pair cap (the source program's own caps still apply)."
    )
    member_yearly_cap: int | None = strawberry.field(
        description="The same, per calendar year. Null: no pair cap (the source program's own caps still apply)."
    )
    to_program: strawberry.Private[str]

    @strawberry.field(description="A fixed fee per conversion, added to the percent fee.")
    async def fixed_fee(self, info: Info[Context, None]) -> Money:
        return Money(amount=self.fee_fixed, currency=(await info.context.currency()).code)

    @classmethod
    def from_row(cls, row: RateVersionRow) -> RateVersion:
        return cls(
            id=strawberry.ID(str(row.id)),
            version=row.version,
            from_program_id=strawberry.ID(row.from_program),
            to_program_id=strawberry.ID(row.to_program),
            effective_from=row.effective_from,
            effective_to=row.effective_to,
            origin=RateOrigin(row.origin),
            created_by=row.created_by,
            source_point_value=row.source_point_value,
            target_point_value=row.target_point_value,
            fee_percent=row.fee_percent,
            fee_fixed=row.fee_fixed,
            bands=[RateBand(from_points=start, points_in=i, points_out=o) for start, i, o in row.bands],
            bonus_every=row.bonus_every,
            bonus_points=row.bonus_points,
            minimum_points=row.minimum_points,
            increment=row.increment,
            member_daily_cap=row.member_daily_cap,
            member_monthly_cap=row.member_monthly_cap,
            member_yearly_cap=row.member_yearly_cap,
            to_program=row.to_program,
        )


@authorize_fields(PROMOTION_OWNERS)
@strawberry.type(description="A time-limited bonus on conversions into a program.")
class Promotion:
    id: strawberry.ID = strawberry.field(description="Its id, chosen by whoever made it; unique within its program.")
    program_id: strawberry.ID = strawberry.field(description="The program conversions into which earn the bonus.")
    bonus_percent: Decimal = strawberry.field(
        description="Extra points out, in percent of the base points (`25` is +25 %), as a decimal string."
    )
    starts_at: datetime = strawberry.field(description="Quotes made from this moment get the bonus.")
    ends_at: datetime = strawberry.field(description="Quotes made from this moment no longer do.")
    from_programs: list[str] | None = strawberry.field(description="Only conversions from these (null: all).")
    origin: RateOrigin = strawberry.field(description="Who made it: the operator's declaration or the partner.")
    created_by: str = strawberry.field(description="The client id (or `operator`) that made it.")

    @classmethod
    def from_row(cls, row: PromotionRow) -> Promotion:
        return cls(
            id=strawberry.ID(row.id),
            program_id=strawberry.ID(row.program_id),
            bonus_percent=row.bonus_percent,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            from_programs=row.sources,
            origin=RateOrigin(row.origin),
            created_by=row.created_by,
        )
