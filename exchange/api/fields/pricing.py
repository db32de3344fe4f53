"""Quotes for members; rates and promotions for the partners whose programs they price into."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.inputs import Text
from exchange.api.permissions import Rule, argument, authorize, own_program, requires
from exchange.api.types.conversions import Quote
from exchange.api.types.pricing import Promotion, RateVersion
from exchange.auth.scopes import Scope
from exchange.errors import BadUserInput
from exchange.pricing import promotions, rates
from exchange.pricing.rates import PairLimits, PairOverride
from exchange.pricing.rules import Band, Ratio, StepBonus
from exchange.programs import service as programs

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
    bands: list[RateBandInput] | None = None
    bonus_every: int | None = None
    bonus_points: int | None = None
    minimum_points: int | None = None
    increment: int | None = None
    member_daily_cap: int | None = None
    member_monthly_cap: int | None = None
    member_yearly_cap: int | None = None

    def to_override(self) -> PairOverride:
        if (self.ratio is None) == (self.bands is None):
            raise BadUserInput("give either ratio or bands", field="input.ratio")
        if self.ratio is not None:
            bands: tuple[Band, ...] = (Band(1, _ratio(self.ratio, "input.ratio")),)
        else:
            assert self.bands is not None
            bands = tuple(
                Band(
                    _positive(band.from_points, f"input.bands[{i}].fromPoints"),
                    _ratio(band.ratio, f"input.bands[{i}].ratio"),
                )
                for i, band in enumerate(self.bands)
            )
            starts = [band.from_points for band in bands]
            if not starts or starts != sorted(set(starts)):
                raise BadUserInput("bands must rise by fromPoints", field="input.bands")
        if (self.bonus_every is None) != (self.bonus_points is None):
            raise BadUserInput("give both bonusEvery and bonusPoints, or neither", field="input.bonusEvery")
        bonus = (
            StepBonus(
                _positive(self.bonus_every, "input.bonusEvery"), _positive(self.bonus_points, "input.bonusPoints")
            )
            if self.bonus_every is not None and self.bonus_points is not None
            else None
        )
        limits = {
            name: _positive(value, f"input.{name}") if value is not None else None
            for name, value in (
                ("minimumPoints", self.minimum_points),
                ("increment", self.increment),
                ("memberDailyCap", self.member_daily_cap),
                ("memberMonthlyCap", self.member_monthly_cap),
                ("memberYearlyCap", self.member_yearly_cap),
            )
        }
        return PairOverride(
            bands=bands,
            step_bonus=bonus,
            limits=PairLimits(
                minimum_points=limits["minimumPoints"],
                increment=limits["increment"],
                member_daily_cap=limits["memberDailyCap"],
                member_monthly_cap=limits["memberMonthlyCap"],
                member_yearly_cap=limits["memberYearlyCap"],
            ),
        )


@strawberry.input(description="A time-limited bonus percent on conversions into your program.")
class PromotionInput:
    program_id: strawberry.ID
    id: strawberry.ID = strawberry.field(
        description="Your id for it; creating it again with the same terms is a no-op."
    )
    bonus_percent: Decimal
    starts_at: datetime
    ends_at: datetime
    from_programs: list[strawberry.ID] | None = None


def _positive(value: int, field: str) -> int:
    if value <= 0:
        raise BadUserInput(f"must be positive, got {value}", field=field)
    return value


def _ratio(text: str, field: str) -> Ratio:
    try:
        return Ratio.parse(text)
    except ValueError as exc:
        raise BadUserInput(str(exc), field=field) from None


@strawberry.type
class PricingMutations:
    @strawberry.mutation(
        description="Price converting your points: the amounts are fixed until `expiresAt`. The "
        "tier bonus uses your coalition level, read live from your linked partners.",
        extensions=[authorize(requires(Scope.MEMBER_WRITE))],
    )
    async def create_quote(self, info: Info[Context, None], input: QuoteInput) -> Quote | None:
        services = info.context.services
        priced = await services.quoting.quote(
            str(info.context.caller().member_id), str(input.from_program), str(input.to_program), input.points
        )
        return Quote.from_row(priced.quote, (await services.catalog.get()).currency, version=priced.version.version)

    @strawberry.mutation(
        description="Set the rate of conversions into your program from another; it takes effect "
        "now, as a new rate version. A pair declared by the operator cannot be changed here.",
        extensions=[authorize(MANAGES_TARGET)],
    )
    async def set_conversion_rate(self, info: Info[Context, None], input: RateOverrideInput) -> RateVersion | None:
        override = input.to_override()
        return await _supersede(info, str(input.from_program), str(input.to_program), override)

    @strawberry.mutation(
        description="Go back to the rate derived from the two programs' point values.",
        extensions=[authorize(requires(Scope.PARTNER_WRITE) & own_program(argument("to_program")))],
    )
    async def clear_conversion_rate(
        self, info: Info[Context, None], from_program: strawberry.ID, to_program: strawberry.ID
    ) -> RateVersion | None:
        return await _supersede(info, str(from_program), str(to_program), PairOverride())

    @strawberry.mutation(
        description="Start a promotion on conversions into your program.",
        extensions=[authorize(MANAGES_PROGRAM)],
    )
    async def create_promotion(self, info: Info[Context, None], input: PromotionInput) -> Promotion | None:
        services = info.context.services
        terms = promotions.PromotionTerms(
            id=str(input.id),
            program_id=str(input.program_id),
            bonus_percent=input.bonus_percent,
            starts_at=input.starts_at,
            ends_at=input.ends_at,
            sources=tuple(str(source) for source in input.from_programs) if input.from_programs is not None else None,
        )
        async with services.db.transaction() as session:
            for source in terms.sources or ():
                await programs.get_program(session, source, field="input.fromPrograms")
            row = await promotions.create_promotion(
                session, terms, actor=info.context.caller().client_id, now=services.clock.now()
            )
        return Promotion.from_row(row)

    @strawberry.mutation(
        description="End one of your program's promotions now.",
        extensions=[authorize(requires(Scope.PARTNER_WRITE) & own_program(argument("program_id")))],
    )
    async def end_promotion(
        self, info: Info[Context, None], program_id: strawberry.ID, id: strawberry.ID
    ) -> Promotion | None:
        services = info.context.services
        async with services.db.transaction() as session:
            row = await promotions.end_promotion(
                session, program_id=str(program_id), promotion_id=str(id), now=services.clock.now()
            )
        return Promotion.from_row(row)


async def _supersede(info: Info[Context, None], source: str, target: str, override: PairOverride) -> RateVersion:
    services = info.context.services
    async with services.db.transaction() as session:
        await programs.get_program(session, source, field="input.fromProgram")
        version = await rates.set_partner_override(
            session,
            target=target,
            source=source,
            override=override,
            actor=info.context.caller().client_id,
            now=services.clock.now(),
        )
    return RateVersion.from_row(version)
