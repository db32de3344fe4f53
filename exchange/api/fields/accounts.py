"""Linking a member's accounts at partners (the federated view itself hangs off ``Member``)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.permissions import authorize, requires
from exchange.api.types.members import LinkedAccount
from exchange.auth.scopes import Scope


@strawberry.type
class AccountMutations:
    @strawberry.mutation(
        description="Link your account `memberRef` at a program: its partner checks "
        "`verification` (a value it gave you, such as a PIN) before the link is made. Linking "
        "the same account again is a no-op.",
        extensions=[authorize(requires(Scope.MEMBER_WRITE))],
    )
    async def link_account(
        self, info: Info[Context, None], program_id: strawberry.ID, member_ref: str, verification: str
    ) -> LinkedAccount | None:
        row = await info.context.services.members.link_account(
            info.context.caller(), str(program_id), member_ref, verification
        )
        return LinkedAccount.from_row(row)
