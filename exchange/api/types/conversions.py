"""GraphQL types of quotes and conversions: a member's own, and settlement staff's to read."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.permissions import (
    PUBLIC,
    Rule,
    authorize_fields,
    own_member,
    requires,
    source,
)
from exchange.api.types.money import Money
from exchange.auth.scopes import Scope
from exchange.conversions.models import Conversion as ConversionRow
from exchange.conversions.models import ConversionStatus as RowStatus
from exchange.money import Currency
from exchange.pricing.models import Quote as QuoteRow
from exchange.pricing.routes import legs_of

if TYPE_CHECKING:
    from exchange.api.types.programs import Program

#: A conversion or quote is its member's; settlement staff may read any.
MEMBERS_OWN: Rule = own_member(source("member_id")) | requires(Scope.SETTLEMENT_READ)

ProgramRef = Annotated["Program", strawberry.lazy("exchange.api.types.programs")]


async def _program(info: Info[Context, None], program_id: str) -> ProgramRef:
    from exchange.api.types.programs import (
        Program,  # programs.py imports this module's neighbours
    )

    return Program.from_row(await info.context.loaders.programs.load(program_id))


async def _rate_version(info: Info[Context, None], version_id: int) -> int:
    return (await info.context.loaders.rate_versions.load(version_id)).version


@authorize_fields(PUBLIC)
@strawberry.type(description="A promotion a quote applied, and its bonus percent.")
class AppliedPromotion:
    id: str = strawberry.field(description="The promotion's id, as its program published it.")
    bonus_percent: Decimal = strawberry.field(
        description="Its bonus, in percent of the base points (`25` is +25 %), as a decimal string."
    )


@authorize_fields(PUBLIC)
@strawberry.type(
    description="How a quote's points out are made up; each part is rounded down on its own and "
    "they add up exactly to `pointsOut`. Points out are never worth more, at the two programs' point "
    "values, than the points in: beyond that, the tier bonus is cut first, then the promotions', the "
    "step bonus and the base (so no cycle of conversions creates points); `valueCapPoints` says how many "
    "points were cut."
)
class QuoteBreakdown:
    base_points: int = strawberry.field(description="Points the rate gives for the points in.")
    step_bonus_points: int = strawberry.field(description="The pair's bonus per whole step converted.")
    promotion_bonus_points: int = strawberry.field(description="The target program's promotions.")
    tier_bonus_points: int = strawberry.field(description="The member's coalition-level bonus.")
    value_cap_points: int = strawberry.field(
        description="Points the value cap cut from the parts above (the pricing rule that points out are never "
        "worth more, at the two programs' point values, than the points in): the parts' sum before the cut "
        "less `pointsOut`; `0` when nothing was cut. Why a tier bonus or a promotion's bonus can be smaller "
        "than its percent."
    )
    promotions: list[AppliedPromotion] = strawberry.field(
        description="The target program's promotions in effect when quoted (empty: none)."
    )
    member_level: int = strawberry.field(description="The coalition level the tier bonus used.")
    tier_bonus_percent: Decimal = strawberry.field(
        description="The bonus, in percent of the base points, that `memberLevel` earns (`0`: none)."
    )


@authorize_fields(PUBLIC)
@strawberry.type(
    description="One leg of a quote's or a conversion's route: a conversion from one program into "
    "another, priced on that pair's rate with its own fee. A direct conversion has one leg; one "
    "through the coalition point two, the second converting the coalition points the first paid out."
)
class QuoteLeg:
    points_in: int = strawberry.field(description="Points of `fromProgram` the leg converts.")
    points_out: int = strawberry.field(description="Points of `toProgram` the leg pays out.")
    money_value: Money = strawberry.field(description="What `fromProgram` owes for the leg's points in.")
    fee: Money = strawberry.field(description="The exchange's fee on this leg, out of its money value.")
    from_program_id: strawberry.Private[str]
    to_program_id: strawberry.Private[str]
    rate_version_id: strawberry.Private[int]

    @strawberry.field(description="The version of the leg's pair rate (1, 2, ...).")
    async def rate_version(self, info: Info[Context, None]) -> int:
        return await _rate_version(info, self.rate_version_id)

    @strawberry.field(description="The program the leg converts from.")
    async def from_program(self, info: Info[Context, None]) -> ProgramRef:
        return await _program(info, self.from_program_id)

    @strawberry.field(description="The program the leg converts into.")
    async def to_program(self, info: Info[Context, None]) -> ProgramRef:
        return await _program(info, self.to_program_id)

    @classmethod
    def route_of(cls, legs: list[dict[str, Any]], currency: Currency) -> list[QuoteLeg]:
        """The legs a quote or conversion keeps (``legs``), as the API shows them."""
        return [
            cls(
                points_in=leg["points_in"],
                points_out=leg["points_out"],
                money_value=Money.of_minor(leg["money_value_minor"], currency),
                fee=Money.of_minor(leg["fee_minor"], currency),
                from_program_id=leg["from_program"],
                to_program_id=leg["to_program"],
                rate_version_id=leg["rate_version_id"],
            )
            for leg in legs
        ]


@authorize_fields(MEMBERS_OWN)
@strawberry.type(description="A conversion's price, fixed until `expiresAt`.")
class Quote:
    id: strawberry.ID = strawberry.field(description="Pass it to `executeConversion(quoteId)` before `expiresAt`.")
    points_in: int = strawberry.field(description="Points of `fromProgram` the member gives.")
    points_out: int = strawberry.field(description="Points of `toProgram` the member gets.")
    fee: Money = strawberry.field(description="The exchange's fee, out of the money value: every leg's of `route`.")
    money_value: Money = strawberry.field(description="What `fromProgram` owes for the points in.")
    breakdown: QuoteBreakdown = strawberry.field(
        description="How `pointsOut` is made up: the last leg's, for a quote through the coalition point."
    )
    route: list[QuoteLeg] = strawberry.field(
        description="The way the points go, leg by leg: `fromProgram` into `toProgram` directly (one leg), "
        "or through the coalition point (two) when that pays more of `toProgram`, or when the pair has "
        "no rate of its own. The member holds no coalition point in between."
    )
    expires_at: datetime = strawberry.field(
        description="After this, executing it is `QUOTE_EXPIRED`: ask for a new quote "
        "(quotes hold for `EXCHANGE_QUOTE_TTL_SECONDS`, 60 by default)."
    )
    created_at: datetime = strawberry.field(description="When it was quoted.")
    member_id: strawberry.Private[str]
    from_program_id: strawberry.Private[str]
    to_program_id: strawberry.Private[str]
    version: strawberry.Private[int]

    @strawberry.field(
        description="The version of the pair's rate this quote used (1, 2, ...); the first leg's, for a "
        "quote through the coalition point (each leg names its own in `route`)."
    )
    def rate_version(self) -> int:
        return self.version

    @strawberry.field(description="The program points are converted from.")
    async def from_program(self, info: Info[Context, None]) -> ProgramRef:
        return await _program(info, self.from_program_id)

    @strawberry.field(description="The program points are converted into.")
    async def to_program(self, info: Info[Context, None]) -> ProgramRef:
        return await _program(info, self.to_program_id)

    @classmethod
    def from_row(cls, row: QuoteRow, currency: Currency, *, version: int) -> Quote:
        """``version``: the number of the rate version it used (``row`` has its id)."""
        return cls(
            id=strawberry.ID(row.id),
            points_in=row.points_in,
            points_out=row.points_out,
            fee=Money.of_minor(row.fee_minor, currency),
            money_value=Money.of_minor(row.money_value_minor, currency),
            breakdown=QuoteBreakdown(
                base_points=row.base_points,
                step_bonus_points=row.step_bonus_points,
                promotion_bonus_points=row.promotion_bonus_points,
                tier_bonus_points=row.tier_bonus_points,
                value_cap_points=row.value_cap_points,
                promotions=[
                    AppliedPromotion(id=p["id"], bonus_percent=Decimal(p["bonus_percent"])) for p in row.promotions
                ],
                member_level=row.member_level,
                tier_bonus_percent=row.tier_bonus_percent,
            ),
            route=QuoteLeg.route_of(legs_of(row), currency),
            expires_at=row.expires_at,
            created_at=row.created_at,
            member_id=row.member_id,
            from_program_id=row.from_program,
            to_program_id=row.to_program,
            version=version,
        )


@strawberry.enum(description="Where a conversion stands.")
class ConversionStatus(Enum):
    HELD = strawberry.enum_value("HELD", description="Held by a risk gate for staff review; nothing has moved yet.")
    PENDING = strawberry.enum_value(
        "PENDING",
        description="Under way: a partner's answer is awaited, or the exchange will ask again; read it back with `conversion(id)`.",
    )
    COMPLETED = strawberry.enum_value(
        "COMPLETED", description="Debited at the source, credited at the target and posted to the clearing ledger."
    )
    FAILED = strawberry.enum_value("FAILED", description="Nothing moved (`failure` says why).")
    REVERSED = strawberry.enum_value(
        "REVERSED",
        description="The target did not credit the points, so the debit at the source was given back (`failure` says why).",
    )


@authorize_fields(MEMBERS_OWN)
@strawberry.type(description="Why a conversion failed or was reversed.")
class ConversionFailure:
    code: str = strawberry.field(
        description="An error code of the closed list (`INSUFFICIENT_POINTS`, `PARTNER_REFUSED`, ...), or one "
        "only a saga ends with: `PARTNER_CONTRADICTED` (a partner recorded another write than the one sent), "
        "`RISK_REJECTED` (staff rejected its hold) or `HOLD_EXPIRED` (nobody reviewed its hold in time)."
    )
    message: str = strawberry.field(description="What happened, in words (the partner's reason, where it gave one).")
    member_id: strawberry.Private[str]


@authorize_fields(MEMBERS_OWN)
@strawberry.type(
    description="Points moved from one program into another. PENDING while the partners are "
    "being asked; then COMPLETED, FAILED (nothing moved) or REVERSED (the debit was given back). "
    "HELD first if the source program's risk gates hold it for staff review: approved, it goes on; "
    "rejected, it is FAILED (`failure.code` RISK_REJECTED); not reviewed by `heldUntil`, it is FAILED "
    "(`failure.code` HOLD_EXPIRED). A partner that recorded another write than the one sent ends it "
    "REVERSED with `failure.code` PARTNER_CONTRADICTED; COMPLETED with that code when the target "
    "refused to reverse such a credit because the member had spent it: the credit stands, posted as sent. "
    "A source partner that reverted a debit in doubt on its own (before the exchange learnt whether it "
    "applied) ends it REVERSED with `failure.code` PARTNER_REFUSED."
)
class Conversion:
    id: strawberry.ID = strawberry.field(description="The exchange's id; partners dedupe its debit and credit on it.")
    status: ConversionStatus = strawberry.field(description="Where it stands; only COMPLETED moved the points.")
    quote_id: strawberry.ID = strawberry.field(description="The quote it executed.")
    idempotency_key: str = strawberry.field(description="The key the client chose when executing it.")
    points_in: int = strawberry.field(description="Points of `fromProgram` debited (its quote's `pointsIn`).")
    points_out: int = strawberry.field(description="Points of `toProgram` credited (its quote's `pointsOut`).")
    fee: Money = strawberry.field(description="The exchange's fee, out of the money value, in the settlement currency.")
    money_value: Money = strawberry.field(
        description="What `fromProgram` owes for the points in, in the settlement currency."
    )
    failure: ConversionFailure | None = strawberry.field(description="FAILED or REVERSED: why; else null.")
    route: list[QuoteLeg] = strawberry.field(
        description="The legs its quote fixed: one, or two through the coalition point (see `Quote.route`)."
    )
    created_at: datetime = strawberry.field(description="When it was executed.")
    updated_at: datetime = strawberry.field(description="When its status or step last changed.")
    finished_at: datetime | None = strawberry.field(
        description="When it reached COMPLETED, FAILED or REVERSED; null while HELD or PENDING."
    )
    held_until: datetime | None = strawberry.field(
        description="While HELD: when the hold ends FAILED (HOLD_EXPIRED) unless staff decide before; else null."
    )
    member_id: strawberry.Private[str]
    from_program_id: strawberry.Private[str]
    to_program_id: strawberry.Private[str]
    rate_version_id: strawberry.Private[int]

    @strawberry.field(description="The version of the pair's rate the conversion's quote used.")
    async def rate_version(self, info: Info[Context, None]) -> int:
        return await _rate_version(info, self.rate_version_id)

    @strawberry.field(description="The program points were converted from.")
    async def from_program(self, info: Info[Context, None]) -> ProgramRef:
        return await _program(info, self.from_program_id)

    @strawberry.field(description="The program points were converted into.")
    async def to_program(self, info: Info[Context, None]) -> ProgramRef:
        return await _program(info, self.to_program_id)

    @classmethod
    def from_row(cls, row: ConversionRow, currency: Currency) -> Conversion:
        failure = (
            ConversionFailure(code=row.failure_code, message=row.failure_message or "", member_id=row.member_id)
            if row.failure_code
            else None
        )
        return cls(
            id=strawberry.ID(row.id),
            status=ConversionStatus(row.status),
            quote_id=strawberry.ID(row.quote_id),
            idempotency_key=row.idempotency_key,
            points_in=row.points_in,
            points_out=row.points_out,
            fee=Money.of_minor(row.fee_minor, currency),
            money_value=Money.of_minor(row.money_value_minor, currency),
            failure=failure,
            route=QuoteLeg.route_of(legs_of(row), currency),
            created_at=row.created_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
            held_until=row.next_attempt_at if row.status == RowStatus.HELD else None,
            member_id=row.member_id,
            from_program_id=row.from_program,
            to_program_id=row.to_program,
            rate_version_id=row.rate_version_id,
        )
