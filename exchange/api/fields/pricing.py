"""Quotes for members; rates and promotions for the partners whose programs they price into."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.inputs import ChosenId, Text
from exchange.api.permissions import Rule, argument, authorize, own_program, requires
from exchange.api.types.conversions import Quote
from exchange.api.types.pricing import Promotion, RateVersion
from exchange.auth.scopes import Scope
from exchange.pricing.promotions import PromotionTerms
from exchange.pricing.rates import MAX_BANDS, RateTerms

#: A ratio such as "3:1": no sane one is longer.
RatioText = Annotated[str, Text(40)]

#: The target program's partner manages the rates and promotions into its program.
MANAGES_TARGET: Rule = requires(Scope.PARTNER_WRITE) & own_program(argument("input.to_program"))
MANAGES_PROGRAM: Rule = requires(Scope.PARTNER_WRITE) & own_program(argument("input.program_id"))


@strawberry.input(description="What to convert: `points` of `fromProgram` into `toProgram`.")
class QuoteInput:
    from_program: strawberry.ID
    to_program: strawberry.ID
    points: int


@strawberry.input(description='From `fromPoints` points in, convert at `ratio` (e.g. `"2:1"`).')
class RateBandInput:
    from_points: int
    ratio: RatioText


@strawberry.input(
    description="A rate override for conversions from `fromProgram` into your `toProgram`: a fixed "
    '`ratio` (`"3:1"`) or volume `bands`, an optional step bonus, and pair limits on top of '
    "the source program's own. The exchange's fee is not yours to set."
)
class RateOverrideInput:
    from_program: strawberry.ID
    to_program: strawberry.ID
    ratio: RatioText | None = None
    bands: list[RateBandInput] | None = strawberry.field(
        default=None, description=f"Volume bands, rising by `fromPoints`: at most {MAX_BANDS}."
    )
    bonus_every: int | None = None
    bonus_points: int | None = None
    minimum_points: int | None = None
    increment: int | None = None
    member_daily_cap: int | None = None
    member_monthly_cap: int | None = None
    member_yearly_cap: int | None = None

    def to_terms(self) -> RateTerms:
        return RateTerms(
            ratio=self.ratio,
            bands=[(band.from_points, band.ratio) for band in self.bands] if self.bands is not None else None,
            bonus_every=self.bonus_every,
            bonus_points=self.bonus_points,
            minimum_points=self.minimum_points,
            increment=self.increment,
            member_daily_cap=self.member_daily_cap,
            member_monthly_cap=self.member_monthly_cap,
            member_yearly_cap=self.member_yearly_cap,
        )


@strawberry.input(description="A time-limited bonus percent on conversions into your program.")
class PromotionInput:
    program_id: strawberry.ID
    id: ChosenId = strawberry.field(description="Your id for it; creating it again with the same terms is a no-op.")
    bonus_percent: Decimal
    starts_at: datetime
    ends_at: datetime
    from_programs: list[strawberry.ID] | None = strawberry.field(
        default=None,
        description="Only conversions from these programs, each named once, never the promotion's own (null: all).",
    )

    def to_terms(self) -> PromotionTerms:
        return PromotionTerms(
            id=str(self.id),
            program_id=str(self.program_id),
            bonus_percent=self.bonus_percent,
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            sources=tuple(str(source) for source in self.from_programs) if self.from_programs is not None else None,
        )


@strawberry.type
class PricingMutations:
    @strawberry.mutation(
        description="Price converting your points: the amounts are fixed until `expiresAt`. The "
        "tier bonus uses your coalition level, read live from your linked partners.",
        extensions=[authorize(requires(Scope.MEMBER_WRITE))],
    )
    async def create_quote(self, info: Info[Context, None], input: QuoteInput) -> Quote | None:
        priced = await info.context.services.conversions.create_quote(
            info.context.caller(), str(input.from_program), str(input.to_program), input.points
        )
        return Quote.from_row(priced.quote, await info.context.currency(), version=priced.version.version)

    @strawberry.mutation(
        description="Set the rate of conversions into your program from another; it takes effect "
        "now, as a new rate version. A pair declared by the operator cannot be changed here.",
        extensions=[authorize(MANAGES_TARGET)],
    )
    async def set_conversion_rate(self, info: Info[Context, None], input: RateOverrideInput) -> RateVersion | None:
        version = await info.context.services.pricing.set_rate(
            str(input.from_program), str(input.to_program), input.to_terms(), actor=info.context.caller().client_id
        )
        return RateVersion.from_row(version)

    @strawberry.mutation(
        description="Go back to the rate derived from the two programs' point values.",
        extensions=[authorize(requires(Scope.PARTNER_WRITE) & own_program(argument("to_program")))],
    )
    async def clear_conversion_rate(
        self, info: Info[Context, None], from_program: strawberry.ID, to_program: strawberry.ID
    ) -> RateVersion | None:
        version = await info.context.services.pricing.clear_rate(
            str(from_program), str(to_program), actor=info.context.caller().client_id
        )
        return RateVersion.from_row(version)

    @strawberry.mutation(
        description="Start a promotion on conversions into your program.",
        extensions=[authorize(MANAGES_PROGRAM)],
    )
    async def create_promotion(self, info: Info[Context, None], input: PromotionInput) -> Promotion | None:
        row = await info.context.services.pricing.create_promotion(
            input.to_terms(), actor=info.context.caller().client_id
        )
        return Promotion.from_row(row)

    @strawberry.mutation(
        description="End one of your program's promotions now.",
        extensions=[authorize(requires(Scope.PARTNER_WRITE) & own_program(argument("program_id")))],
    )
    async def end_promotion(
        self, info: Info[Context, None], program_id: strawberry.ID, id: strawberry.ID
    ) -> Promotion | None:
        return Promotion.from_row(await info.context.services.pricing.end_promotion(str(program_id), str(id)))
