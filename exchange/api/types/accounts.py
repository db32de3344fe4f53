"""GraphQL types of the federated view: a member's live account at each linked partner."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from exchange.api.permissions import PUBLIC, Rule, authorize_fields, own_member, source
from exchange.api.scalars import PointTotal
from exchange.federation.accounts import AccountView
from exchange.programs.models import Program as ProgramRow

if TYPE_CHECKING:
    from exchange.api.types.programs import Program

#: Balances are the member's own business, not even their partners' (each has its own data).
MEMBER_ONLY: Rule = own_member(source("member_id"))


@authorize_fields(PUBLIC)
@strawberry.type(description="Points that expire on a date unless used.")
class ExpiringPoints:
    points: PointTotal = strawberry.field(description="How many points expire on that date.")
    expires_on: date = strawberry.field(description="The date (the partner's calendar) they expire on.")


@authorize_fields(PUBLIC)
@strawberry.type(description="Why a partner's answer is missing from the view.")
class AccountError:
    code: str = strawberry.field(description="`PARTNER_UNAVAILABLE`, `NOT_FOUND`, ... (the closed list).")
    message: str = strawberry.field(description="What went wrong, in words.")


@authorize_fields(MEMBER_ONLY)
@strawberry.type(
    description="A member's account at one linked program, as its partner reports it now. When "
    "the partner cannot be reached, `error` says so and the other fields are null."
)
class Account:
    member_ref: str = strawberry.field(description="The member's id at the partner.")
    balance: PointTotal | None = strawberry.field(description="Points available now.")
    tier: str | None = strawberry.field(description="The partner's name of the member's tier.")
    level: int | None = strawberry.field(
        description="That tier's coalition level (null: a tier the program does not declare)."
    )
    tier_expires_at: datetime | None = strawberry.field(description="When a matched tier ends, if it does.")
    expiring_points: list[ExpiringPoints] | None = strawberry.field(
        description="Points about to expire, soonest first."
    )
    error: AccountError | None = strawberry.field(
        description="Why the partner's answer is missing (the other fields then null); null when it answered."
    )
    member_id: strawberry.Private[str]
    program_row: strawberry.Private[ProgramRow]

    @strawberry.field(description="The program the account is at.")
    def program(self) -> Annotated[Program, strawberry.lazy("exchange.api.types.programs")]:
        from exchange.api.types.programs import (
            Program,  # programs.py imports this module's neighbours
        )

        return Program.from_row(self.program_row)

    @classmethod
    async def answered(cls, view: Awaitable[AccountView]) -> Account:
        """The account of ``view`` once it is there."""
        return cls.from_view(await view)

    @classmethod
    def from_view(cls, view: AccountView) -> Account:
        account, link = view.account, view.link
        return cls(
            member_ref=link.member_ref,
            balance=PointTotal(account.balance) if account else None,
            tier=account.tier if account else None,
            level=view.level,
            tier_expires_at=account.tier_expires_at if account else None,
            expiring_points=(
                [
                    ExpiringPoints(points=PointTotal(item.points), expires_on=item.expires_on)
                    for item in account.expiring
                ]
                if account
                else None
            ),
            error=AccountError(code=view.error.code.value, message=view.error.message) if view.error else None,
            member_id=link.member_id,
            program_row=view.program,
        )
