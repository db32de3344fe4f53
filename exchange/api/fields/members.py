"""Members as themselves and as their partners see them."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.permissions import authorize, requires
from exchange.api.types.members import Member
from exchange.auth.scopes import Scope
from exchange.members import service as members


@strawberry.type
class MemberQueries:
    @strawberry.field(
        description="The member behind a member token.",
        extensions=[authorize(requires(Scope.MEMBER_READ))],
    )
    async def me(self, info: Info[Context, None]) -> Member | None:
        member_id = str(info.context.caller().member_id)
        async with info.context.services.db.transaction() as session:
            row, accounts = await members.member_with_accounts(session, member_id)
        return Member.from_rows(row, accounts)

    @strawberry.field(
        description="A member who has an account at the caller's program (partners only); "
        "`FORBIDDEN` for any other id, existing or not.",
        extensions=[authorize(requires(Scope.PARTNER_READ))],
    )
    async def member(self, info: Info[Context, None], id: strawberry.ID) -> Member | None:
        program_id = str(info.context.caller().program_id)
        async with info.context.services.db.transaction() as session:
            row, accounts = await members.get_member_linked_to(session, str(id), program_id)
        return Member.from_rows(row, accounts)
