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
from exchange.pricing.limits import MAX_POINTS
from exchange.pricing.models import PERCENT_SCALE
from exchange.pricing.promotions import MAX_BONUS_PERCENT, PromotionTerms
from exchange.pricing.rates import MAX_BANDS, RateTerms

#: A ratio such as "3:1": no sane one is longer.
RatioText = Annotated[str, Text(40)]

#: The target program's partner manages the rates and promotions into its program.
MANAGES_TARGET: Rule = requires(Scope.PARTNER_WRITE) & own_program(argument("input.to_program"))
MANAGES_PROGRAM: Rule = requires(Scope.PARTNER_WRITE) & own_program(argument("input.program_id"))


@strawberry.input(description="What to convert: `points` of `fromProgram` into `toProgram`.")
class QuoteInput:
    from_program: strawberry.ID = strawberry.field(
        description="The program whose points you give (`Program.id`); you must have linked an account there."
    )
    to_program: strawberry.ID = strawberry.field(
        description="The program whose points you get (`Program.id`); you must have linked an account there."
    )
    points: int = strawberry.field(
        description=f"Points of `fromProgram` to give: a positive integer, at most {MAX_POINTS:,}, at least the "
        "pair's minimum and a multiple of its increment (`Program.limits`)."
    )


@strawberry.input(description='From `fromPoints` points in, convert at `ratio` (e.g. `"2:1"`).')
class RateBandInput:
    from_points: int = strawberry.field(
        description="The smallest conversion, in points in, the band prices (positive; the first band's is the floor)."
    )
    ratio: RatioText = strawberry.field(description='Points in : points out for the band, such as `"2:1"`.')


@strawberry.input(
    description="A rate override for conversions from `fromProgram` into your `toProgram`: a fixed "
    '`ratio` (`"3:1"`) or volume `bands`, an optional step bonus, and pair limits on top of '
    "the source program's own. The exchange's fee is not yours to set."
)
class RateOverrideInput:
    from_program: strawberry.ID = strawberry.field(description="The program points convert from.")
    to_program: strawberry.ID = strawberry.field(description="Your program, which points convert into.")
    ratio: RatioText | None = strawberry.field(
        default=None, description='Points in : points out, such as `"3:1"`; give either `ratio` or `bands`.'
    )
    bands: list[RateBandInput] | None = strawberry.field(
        default=None, description=f"Volume bands, rising by `fromPoints`: at most {MAX_BANDS}."
    )
    bonus_every: int | None = strawberry.field(
        default=None, description="A step bonus: every this many points in (positive; with `bonusPoints`) ..."
    )
    bonus_points: int | None = strawberry.field(
        default=None, description="... earn this many points out extra (positive; with `bonusEvery`)."
    )
    minimum_points: int | None = strawberry.field(
        default=None,
        description="The fewest points in one conversion (positive); the larger of it and the source program's "
        "minimum applies. Null: the source program's.",
    )
    increment: int | None = strawberry.field(
        default=None,
        description="Points in must be a multiple of this (positive), in place of the source program's. "
        "Null: the source program's.",
    )
    member_daily_cap: int | None = strawberry.field(
        default=None,
        description="Most points in one member may convert over the pair per day (settlement time zone; positive). "
        "Null: none for the pair (the source program's own still applies).",
    )
    member_monthly_cap: int | None = strawberry.field(
        default=None,
        description="The same, per calendar month. Null: none for the pair (the source program's own still applies).",
    )
    member_yearly_cap: int | None = strawberry.field(
        default=None,
        description="The same, per calendar year. Null: none for the pair (the source program's own still applies).",
    )

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
    program_id: strawberry.ID = strawberry.field(description="Your program: conversions into it earn the bonus.")
    id: ChosenId = strawberry.field(
        description="Your id for it, within your program (another partner's promotions neither take nor reveal one); "
        "creating it again with the same terms is a no-op."
    )
    bonus_percent: Decimal = strawberry.field(
        description="Extra points out, in percent of the base points: more than 0, at most "
        f'{MAX_BONUS_PERCENT}, with at most {PERCENT_SCALE} decimals (a decimal string, `"25"` is +25 %).'
    )
    starts_at: datetime = strawberry.field(description="Quotes made from this moment get the bonus.")
    ends_at: datetime = strawberry.field(
        description="Quotes made from this moment no longer do: after `startsAt` and in the future."
    )
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
        "tier bonus uses your coalition level, read live from your linked partners. A program "
        "not linked, or a pair with no rate (directly or through the coalition point), is "
        "`BAD_USER_INPUT`; points a limit refuses (the minimum, the increment, your caps, the "
        "target's issuing budget) are `LIMIT_EXCEEDED` with `extensions.limit` and "
        "`extensions.remaining`.",
        extensions=[authorize(requires(Scope.MEMBER_WRITE))],
    )
    async def create_quote(
        self,
        info: Info[Context, None],
        input: Annotated[QuoteInput, strawberry.argument(description="What to convert.")],
    ) -> Quote | None:
        priced = await info.context.services.conversions.create_quote(
            info.context.caller(), str(input.from_program), str(input.to_program), input.points
        )
        return Quote.from_row(priced.quote, await info.context.currency(), version=priced.version.version)

    @strawberry.mutation(
        description="Set the rate of conversions into your program from another; it takes effect "
        "now, as a new rate version. The terms in effect sent again (a retry after a lost answer) answer the "
        "version in effect: nothing changed, so no version starts. A pair declared by the operator cannot be "
        "changed here (`FORBIDDEN`, naming the declaration).",
        extensions=[authorize(MANAGES_TARGET)],
    )
    async def set_conversion_rate(
        self,
        info: Info[Context, None],
        input: Annotated[RateOverrideInput, strawberry.argument(description="The pair and its new terms.")],
    ) -> RateVersion | None:
        version = await info.context.services.pricing.set_rate(
            str(input.from_program), str(input.to_program), input.to_terms(), actor=info.context.caller().client_id
        )
        return RateVersion.from_row(version)

    @strawberry.mutation(
        description="Go back to the rate derived from the two programs' point values, as a new rate version; "
        "a rate derived already (a retry after a lost answer) answers the version in effect. A pair "
        "declared by the operator cannot be changed here (`FORBIDDEN`, naming the declaration).",
        extensions=[authorize(requires(Scope.PARTNER_WRITE) & own_program(argument("to_program")))],
    )
    async def clear_conversion_rate(
        self,
        info: Info[Context, None],
        from_program: Annotated[strawberry.ID, strawberry.argument(description="The program points convert from.")],
        to_program: Annotated[
            strawberry.ID, strawberry.argument(description="Your program, which points convert into.")
        ],
    ) -> RateVersion | None:
        version = await info.context.services.pricing.clear_rate(
            str(from_program), str(to_program), actor=info.context.caller().client_id
        )
        return RateVersion.from_row(version)

    @strawberry.mutation(
        description="Start a promotion on conversions into your program. Its `id` is yours to choose: the same "
        "id with the same terms again answers the same promotion as it is now (ended, if `endPromotion` or its "
        "time ended it since); with other terms it is `IDEMPOTENCY_CONFLICT` (`input.id`). An `endsAt` not in "
        "the future is `BAD_USER_INPUT`, unless the request repeats one that made a promotion.",
        extensions=[authorize(MANAGES_PROGRAM)],
    )
    async def create_promotion(
        self,
        info: Info[Context, None],
        input: Annotated[PromotionInput, strawberry.argument(description="The promotion's terms.")],
    ) -> Promotion | None:
        row = await info.context.services.pricing.create_promotion(
            input.to_terms(), actor=info.context.caller().client_id
        )
        return Promotion.from_row(row)

    @strawberry.mutation(
        description="End one of your program's promotions now (one that has ended stays as it ended); an `id` "
        "your program has no promotion by is `NOT_FOUND`.",
        extensions=[authorize(requires(Scope.PARTNER_WRITE) & own_program(argument("program_id")))],
    )
    async def end_promotion(
        self,
        info: Info[Context, None],
        program_id: Annotated[strawberry.ID, strawberry.argument(description="Your program.")],
        id: Annotated[strawberry.ID, strawberry.argument(description="The promotion's id (`Promotion.id`).")],
    ) -> Promotion | None:
        return Promotion.from_row(await info.context.services.pricing.end_promotion(str(program_id), str(id)))
