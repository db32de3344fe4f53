"""Members as themselves and as their partners see them, and the consents they give."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.permissions import authorize, requires
from exchange.api.types.members import DebitConsent, Member
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
        async with info.context.services.db.autocommit() as session:  # one read
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


@strawberry.type
class MemberMutations:
    @strawberry.mutation(
        description="Consent to one debit of exactly `points` of `program`'s points by a request made "
        "under another partner's token (converting out of `program`, or paying with it): only "
        "with a member token `program`'s partner asserted (else `AUTHORITY_REQUIRED`). The "
        "consent lives `EXCHANGE_DEBIT_CONSENT_SECONDS` (300 by default) and is used once.",
        extensions=[authorize(requires(Scope.MEMBER_WRITE))],
    )
    async def authorize_debit(
        self, info: Info[Context, None], program: strawberry.ID, points: int
    ) -> DebitConsent | None:
        caller = info.context.caller()
        granted = await info.context.services.consents.grant(
            member_id=str(caller.member_id), asserted_by=str(caller.asserted_by), program=str(program), points=points
        )
        return DebitConsent.of(granted)
