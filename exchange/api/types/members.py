"""GraphQL types of members and their linked accounts.

A member's data is seen by the member, and by a partner only as far as its own program
goes: a member linked at several programs shows each partner only the account there.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, cast

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.permissions import (
    Rule,
    authorize,
    authorize_fields,
    own_member,
    own_program,
    requires,
    source,
)
from exchange.api.scalars import PointTotal
from exchange.auth.scopes import Scope
from exchange.members.consents import GrantedConsent
from exchange.members.models import ActivityMarkers
from exchange.members.models import LinkedAccount as LinkedAccountRow
from exchange.members.models import LinkMethod as LinkMethodValue
from exchange.services.members import MemberView
from exchange.unlinking.service import Unlinked

if TYPE_CHECKING:
    from exchange.api.types.accounts import Account
    from exchange.api.types.programs import Program

#: An account is its member's, and its program's partner's.
LINKED_ACCOUNT_RULE: Rule = own_member(source("member_id")) | (
    requires(Scope.PARTNER_READ) & own_program(source("program_id"))
)
#: A member is seen by themself, and by partners of programs they have an account at.
MEMBER_RULE: Rule = own_member(source("id")) | (requires(Scope.PARTNER_READ) & own_program(source("program_ids")))


@strawberry.enum(description="How a linked account was established.")
class LinkMethod(Enum):
    ASSERTION = strawberry.enum_value(
        LinkMethodValue.ASSERTION.value,
        description="The partner vouched for the member with a signed assertion (the JWT-bearer grant, or the portal's sign-in).",
    )
    VERIFIED = strawberry.enum_value(
        LinkMethodValue.VERIFIED.value,
        description="The member proved the account with a value the partner verified (`linkAccount`).",
    )
    COALITION = strawberry.enum_value(
        LinkMethodValue.COALITION.value, description="The member's own account at the coalition point."
    )


@authorize_fields(LINKED_ACCOUNT_RULE)
@strawberry.type(description="A member's account at one partner's program.")
class LinkedAccount:
    member_id: strawberry.ID = strawberry.field(description="The exchange's id of the member.")
    member_ref: str = strawberry.field(description="The member's id at the program's partner.")
    linked_at: datetime = strawberry.field(description="When the account was linked.")
    established_by: LinkMethod = strawberry.field(description="How the link was established.")
    program_id: strawberry.Private[str]

    @strawberry.field(description="The program the account is at.")
    async def program(
        self, info: Info[Context, None]
    ) -> Annotated[Program, strawberry.lazy("exchange.api.types.programs")]:
        from exchange.api.types.programs import (
            Program,  # programs.py imports this module
        )

        return Program.from_row(await info.context.loaders.programs.load(self.program_id))

    @classmethod
    def from_row(cls, row: LinkedAccountRow) -> LinkedAccount:
        return cls(
            member_id=strawberry.ID(row.member_id),
            member_ref=row.member_ref,
            linked_at=row.linked_at,
            established_by=LinkMethod(row.established_by),
            program_id=row.program_id,
        )


@authorize_fields(own_member(source("member_id")))
@strawberry.type(
    description="An account you unlinked: the link as it stood and when it ended. Your conversions, "
    "redemptions and status matches through it, and the ledger's entries, stay as they were."
)
class UnlinkedAccount:
    member_ref: str = strawberry.field(description="Your id at the program's partner.")
    linked_at: datetime = strawberry.field(description="When the account had been linked.")
    unlinked_at: datetime = strawberry.field(description="When it was unlinked.")
    already_unlinked: bool = strawberry.field(
        description="True when the account was unlinked before this request (a repeat changes nothing)."
    )
    member_id: strawberry.Private[str]
    program_id: strawberry.Private[str]

    @strawberry.field(description="The program the account is at.")
    async def program(
        self, info: Info[Context, None]
    ) -> Annotated[Program, strawberry.lazy("exchange.api.types.programs")]:
        from exchange.api.types.programs import Program

        return Program.from_row(await info.context.loaders.programs.load(self.program_id))

    @classmethod
    def of(cls, unlinked: Unlinked) -> UnlinkedAccount:
        record = unlinked.record
        return cls(
            member_ref=record.member_ref,
            linked_at=record.linked_at,
            unlinked_at=record.unlinked_at,
            already_unlinked=unlinked.already,
            member_id=record.member_id,
            program_id=record.program_id,
        )


@authorize_fields(own_member(source("member_id")))
@strawberry.type(description="Coalition points of a member's balance that expire together.")
class ExpiringCoalitionPoints:
    points: PointTotal = strawberry.field(description="How many.")
    expires_at: datetime = strawberry.field(
        description="The instant they expire: 00:00 on 1 January in the point's time zone (spendable "
        "until just before)."
    )
    member_id: strawberry.Private[str]


@authorize_fields(MEMBER_RULE)
@strawberry.type(description="A member of the exchange.")
class Member:
    id: strawberry.ID = strawberry.field(description="The exchange's member id (a member token's `sub`).")
    created_at: datetime = strawberry.field(description="When the exchange first met the member.")
    links: strawberry.Private[Sequence[LinkedAccount]]
    link_rows: strawberry.Private[Sequence[LinkedAccountRow]]
    program_ids: strawberry.Private[frozenset[str]]
    activity: strawberry.Private[ActivityMarkers]

    @strawberry.field(description="The member's linked accounts; a partner sees only the one at its program.")
    def linked_accounts(self, info: Info[Context, None]) -> list[LinkedAccount]:
        return LINKED_ACCOUNT_RULE.visible(info.context.principal, self.links)

    @strawberry.field(
        description="Every linked account as its partner reports it now (balance, tier, expiring "
        "points), all partners asked at once; an unreachable partner gives that account an "
        "`error` and the others still show. Only the member sees this.",
        extensions=[authorize(own_member(source("id")))],
    )
    async def accounts(
        self, info: Info[Context, None]
    ) -> list[Annotated[Account, strawberry.lazy("exchange.api.types.accounts")]] | None:
        from exchange.api.types.accounts import Account

        views = await info.context.services.members.accounts_as_answered(self.link_rows, self.activity)
        # Awaitable items: graphql-core completes each account's fields as its partner answers,
        # so that once the slowest has answered only its own account is left to complete.
        return cast(list[Account], [Account.answered(view) for view in views])

    @strawberry.field(
        description="The member's coalition points by when they expire, soonest first: one entry per "
        "lot date (points earned in one year expire together at the end of the next). Only the member "
        "sees this.",
        extensions=[authorize(own_member(source("id")))],
    )
    async def expiring_points(self, info: Info[Context, None]) -> list[ExpiringCoalitionPoints] | None:
        lots = await info.context.services.coalition.expiring_points(info.context.caller())
        return [
            ExpiringCoalitionPoints(points=PointTotal(lot.points), expires_at=lot.expires_at, member_id=str(self.id))
            for lot in lots
        ]

    @strawberry.field(
        description="The member's coalition level: the highest among their accounts' current tiers.",
        extensions=[authorize(own_member(source("id")))],
    )
    async def coalition_level(self, info: Info[Context, None]) -> int | None:
        return await info.context.services.members.coalition_level(str(self.id))

    @classmethod
    def of(cls, view: MemberView) -> Member:
        return cls(
            id=strawberry.ID(view.member.id),
            created_at=view.member.created_at,
            links=[LinkedAccount.from_row(account) for account in view.accounts],
            link_rows=view.accounts,
            program_ids=frozenset(account.program_id for account in view.accounts),
            activity=view.member.markers,
        )


@authorize_fields(own_member(source("member_id")))
@strawberry.type(
    description="Your consent, given through `program`'s partner, to one debit of exactly `points` of "
    "its points by a request made under another partner's token: pass `id` as `consent` to "
    "`executeConversion` (converting `points` out of `program`) or `redeemReward` (paying `points` "
    "with `program`). It is used once, even if that conversion or redemption then fails, and "
    "expires at `expiresAt`."
)
class DebitConsent:
    id: strawberry.ID = strawberry.field(
        description="The consent's secret: shown this once (the exchange keeps only its hash), or, given "
        "under an `idempotencyKey`, again to that request sent again (kept sealed for that). Keep it "
        "like a password until it is used."
    )
    points: int = strawberry.field(description="The exact points it lets one request debit.")
    expires_at: datetime = strawberry.field(description="Unusable from then on.")
    member_id: strawberry.Private[str]
    program_id: strawberry.Private[str]

    @strawberry.field(description="The program whose points it lets a request debit.")
    async def program(
        self, info: Info[Context, None]
    ) -> Annotated[Program, strawberry.lazy("exchange.api.types.programs")]:
        from exchange.api.types.programs import Program

        return Program.from_row(await info.context.loaders.programs.load(self.program_id))

    @classmethod
    def of(cls, granted: GrantedConsent) -> DebitConsent:
        return cls(
            id=strawberry.ID(granted.secret),
            points=granted.consent.points,
            expires_at=granted.consent.expires_at,
            member_id=granted.consent.member_id,
            program_id=granted.consent.program_id,
        )
