"""Members as themselves and as their partners see them."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.permissions import authorize, requires
from exchange.api.types.members import Member
from exchange.auth.scopes import Scope


@strawberry.type
class MemberQueries:
    @strawberry.field(
        description="The member behind a member token.",
        extensions=[authorize(requires(Scope.MEMBER_READ))],
    )
    async def me(self, info: Info[Context, None]) -> Member | None:
        return Member.of(await info.context.services.members.me(info.context.caller()))

    @strawberry.field(
        description="A member who has an account at the caller's program (partners only); "
        "`FORBIDDEN` for any other id, existing or not.",
        extensions=[authorize(requires(Scope.PARTNER_READ))],
    )
    async def member(self, info: Info[Context, None], id: strawberry.ID) -> Member | None:
        return Member.of(await info.context.services.members.member_for_partner(info.context.caller(), str(id)))
