"""GraphQL types of programs, their tiers and limits, and the coalition.

The catalog is public: readable without a token. A program's members and assertion keys
are its partner's data and carry their own rules.
"""

from __future__ import annotations

from decimal import Decimal
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.inputs import Text
from exchange.api.permissions import (
    PUBLIC,
    authorize,
    authorize_fields,
    own_program,
    requires,
    source,
)
from exchange.api.types.auth import AssertionKey
from exchange.api.types.members import LinkedAccount
from exchange.api.types.pricing import Promotion, RateVersion
from exchange.auth.assertions import MAX_ASSERTION_KEYS
from exchange.auth.scopes import Scope
from exchange.members.models import MEMBER_REF_MAX_LENGTH
from exchange.programs.models import CoalitionLevel, ProgramTier
from exchange.programs.models import Program as ProgramRow
from exchange.programs.models import ProgramKind as ProgramKindValue
from exchange.programs.service import CoalitionView
from exchange.services.pricing import PROMOTIONS_PAGE_MAX

#: A program's own partner, and settlement staff and admins, may read its pricing.
PROGRAM_OWNER_OR_STAFF = (requires(Scope.PARTNER_READ) & own_program(source("id"))) | requires(
    Scope.SETTLEMENT_READ, Scope.ADMIN_READ
)


@strawberry.enum(description="What kind of business runs a program.")
class ProgramCategory(Enum):
    WALLET = strawberry.enum_value("wallet", description="A payment wallet.")
    COALITION_CARD = strawberry.enum_value(
        "coalition-card", description="A coalition loyalty card shared by several shops."
    )
    SUPERMARKET = strawberry.enum_value("supermarket", description="A supermarket.")
    BANK_CARD = strawberry.enum_value("bank-card", description="A bank's card rewards.")
    MUSIC = strawberry.enum_value("music", description="A music service.")
    AIRLINE = strawberry.enum_value("airline", description="An airline's miles.")
    HOTEL = strawberry.enum_value("hotel", description="A hotel group.")
    COALITION = strawberry.enum_value("coalition", description="The coalition point the exchange issues itself.")


@strawberry.enum(description="Whose points a program's are.")
class ProgramKind(Enum):
    PARTNER = strawberry.enum_value(
        ProgramKindValue.PARTNER.value, description="A partner's: kept in its own points system."
    )
    COALITION = strawberry.enum_value(
        ProgramKindValue.COALITION.value,
        description="The coalition point: issued and kept by the exchange itself, in lots that expire.",
    )


@authorize_fields(PUBLIC)
@strawberry.type(description="A tier of a program and the coalition level it is recognised as.")
class Tier:
    name: str = strawberry.field(description="The program's own name for the tier.")
    level: int = strawberry.field(description="Its rung on the coalition tier ladder (0 = entry).")

    @classmethod
    def from_row(cls, row: ProgramTier) -> Tier:
        return cls(name=row.name, level=row.level)


@authorize_fields(PUBLIC)
@strawberry.type(description="A rung of the coalition tier ladder that every program maps onto.")
class CoalitionTierLevel:
    level: int = strawberry.field(description="0 is where every member starts.")
    name: str = strawberry.field(description="The coalition's name for the level.")

    @classmethod
    def from_row(cls, row: CoalitionLevel) -> CoalitionTierLevel:
        return cls(level=row.level, name=row.name)


@authorize_fields(PUBLIC)
@strawberry.type(description="Limits on converting a program's points out through the exchange.")
class ConversionLimits:
    minimum_points: int = strawberry.field(description="Fewest points one conversion may take.")
    increment: int = strawberry.field(description="Points must be a multiple of this step.")
    member_daily_cap: int | None = strawberry.field(
        description="Most points one member may convert out per day (null: no cap)."
    )
    member_monthly_cap: int | None = strawberry.field(
        description="Most points one member may convert out per calendar month (null: no cap)."
    )
    member_yearly_cap: int | None = strawberry.field(
        description="Most points one member may convert out per calendar year (null: no cap)."
    )
    monthly_issue_budget: int | None = strawberry.field(
        description="Most points the program issues through the exchange a month (null: no cap)."
    )


@authorize_fields(PUBLIC)
@strawberry.type(description="A loyalty program in the coalition: a partner's, or the coalition point.")
class Program:
    id: strawberry.ID = strawberry.field(description="Stable program id, e.g. `formosa-air`.")
    name: str = strawberry.field(description="Display name.")
    kind: ProgramKind = strawberry.field(description="A partner's program, or the coalition point.")
    category: ProgramCategory = strawberry.field(description="The kind of business the program belongs to.")
    point_name: str = strawberry.field(description="What the program calls one point.")
    point_name_plural: str = strawberry.field(
        description="What the program calls several points (or none): declared, or `pointName` made plural "
        "by the regular English rules. English both, whatever the reader's language."
    )
    point_value: Decimal = strawberry.field(
        description="Value of one point in the settlement currency, as an exact decimal string."
    )
    limits: ConversionLimits = strawberry.field(
        description="The program's own limits on converting its points out; a pair's rate may add its own "
        "(`RateVersion`)."
    )

    @strawberry.field(description="The program's tiers, lowest first, with their coalition levels.")
    async def tiers(self, info: Info[Context, None]) -> list[Tier]:
        rows = await info.context.loaders.tiers.load(str(self.id))
        return [Tier.from_row(row) for row in rows]

    @strawberry.field(
        description="Members' accounts at this program, by `memberRef`, `first` of them after "
        "the `memberRef` `after`. Only the program's own partner may read them.",
        extensions=[authorize(requires(Scope.PARTNER_READ) & own_program(source("id")))],
    )
    async def linked_accounts(
        self,
        info: Info[Context, None],
        first: Annotated[
            int, strawberry.argument(description="How many, from 1 to 500 (else `BAD_USER_INPUT`).")
        ] = 100,
        after: Annotated[
            str | None,
            Text(MEMBER_REF_MAX_LENGTH),
            strawberry.argument(description="The last `memberRef` of the previous page; null: from the first."),
        ] = None,
    ) -> list[LinkedAccount] | None:
        rows = await info.context.loaders.linked_accounts.load(((first, after), str(self.id)))
        return [LinkedAccount.from_row(row) for row in rows]

    @strawberry.field(
        description=f"Public keys the partner signs member assertions with, newest first: at most "
        f"{MAX_ASSERTION_KEYS} (`registerAssertionKey`). The program's own partner and admins only.",
        extensions=[
            authorize(
                requires(Scope.PARTNER_READ, Scope.PARTNER_WRITE) & own_program(source("id"))
                | requires(Scope.ADMIN_READ)
            )
        ],
    )
    async def assertion_keys(self, info: Info[Context, None]) -> list[AssertionKey] | None:
        rows = await info.context.loaders.assertion_keys.load(str(self.id))
        return [AssertionKey.from_row(row) for row in rows]

    @strawberry.field(
        description="The rate in effect now for conversions into this program, from each other "
        "program (one per program at most): the program's own partner and staff only.",
        extensions=[authorize(PROGRAM_OWNER_OR_STAFF)],
    )
    async def incoming_rates(self, info: Info[Context, None]) -> list[RateVersion] | None:
        rows = await info.context.loaders.incoming_rates.load(str(self.id))
        return [RateVersion.from_row(row) for row in rows]

    @strawberry.field(
        description="Promotions on conversions into this program, past, present and future, by id: "
        "`first` of them after the id `after`. The program's own partner and staff only.",
        extensions=[authorize(PROGRAM_OWNER_OR_STAFF)],
    )
    async def promotions(
        self,
        info: Info[Context, None],
        first: Annotated[
            int,
            strawberry.argument(description=f"How many, from 1 to {PROMOTIONS_PAGE_MAX} (else `BAD_USER_INPUT`)."),
        ] = 100,
        after: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="The last promotion id of the previous page; null: from the first."),
        ] = None,
    ) -> list[Promotion] | None:
        page = (first, None if after is None else str(after))
        rows = await info.context.loaders.promotions.load((page, str(self.id)))
        return [Promotion.from_row(row) for row in rows]

    @classmethod
    def from_row(cls, row: ProgramRow) -> Program:
        return cls(
            id=strawberry.ID(row.id),
            name=row.name,
            kind=ProgramKind(row.kind),
            category=ProgramCategory(row.category),
            point_name=row.point_name,
            point_name_plural=row.point_name_plural,
            point_value=row.point_value,
            limits=ConversionLimits(
                minimum_points=row.minimum_points,
                increment=row.increment,
                member_daily_cap=row.member_daily_cap,
                member_monthly_cap=row.member_monthly_cap,
                member_yearly_cap=row.member_yearly_cap,
                monthly_issue_budget=row.monthly_issue_budget,
            ),
        )


@authorize_fields(PUBLIC)
@strawberry.type(description="What every program of the coalition shares.")
class Coalition:
    settlement_currency: str = strawberry.field(description="ISO 4217 code of the currency partners settle in.")
    currency_minor_units: int = strawberry.field(description="Digits of its minor unit.")
    ladder: list[CoalitionTierLevel] = strawberry.field(description="The tier ladder, level 0 first.")
    point: CoalitionPoint | None = strawberry.field(
        description="The coalition point the exchange issues (null: none is declared)."
    )

    @classmethod
    def from_view(cls, view: CoalitionView) -> Coalition:
        settings = view.settings
        return cls(
            settlement_currency=settings.settlement_currency,
            currency_minor_units=settings.currency_minor_units,
            ladder=[CoalitionTierLevel.from_row(level) for level in view.ladder],
            point=None
            if settings.point_program_id is None
            else CoalitionPoint(
                program_id=strawberry.ID(settings.point_program_id),
                expiry=str(settings.point_expiry),
                timezone=str(settings.point_timezone),
                breakage=str(settings.point_breakage),
            ),
        )


@authorize_fields(PUBLIC)
@strawberry.type(description="The coalition point's rules, as declared in coalition.toml.")
class CoalitionPoint:
    program_id: strawberry.ID = strawberry.field(description="Its program (`programs` shows it as `COALITION`).")
    expiry: str = strawberry.field(
        description="When a lot expires: `end-of-next-year` (the end of the year after it was earned)."
    )
    timezone: str = strawberry.field(description="The time zone whose calendar the expiry follows.")
    breakage: str = strawberry.field(
        description="Who keeps the value of expired points: `operator` or `funding-partners`."
    )
