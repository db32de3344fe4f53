"""The root Query type: each field reads its arguments, calls one service, maps the result."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.permissions import AUTHENTICATED, PUBLIC, authorize, requires
from exchange.api.types.auth import OAuthClient, Viewer
from exchange.api.types.members import Member
from exchange.api.types.programs import Coalition, Program
from exchange.auth import clients
from exchange.auth.scopes import Scope
from exchange.members import service as members
from exchange.programs import service as programs


@strawberry.type
class Query:
    @strawberry.field(description="Every program in the coalition, by id.", extensions=[authorize(PUBLIC)])
    async def programs(self, info: Info[Context, None]) -> list[Program]:
        async with info.context.services.db.transaction() as session:
            rows = await programs.list_programs(session)
        return [Program.from_row(row) for row in rows]

    @strawberry.field(
        description="One program by id; `NOT_FOUND` if there is none.", extensions=[authorize(PUBLIC)]
    )
    async def program(self, info: Info[Context, None], id: strawberry.ID) -> Program:
        async with info.context.services.db.transaction() as session:
            row = await programs.get_program(session, str(id))
        return Program.from_row(row)

    @strawberry.field(
        description="The coalition's settlement currency and tier ladder.", extensions=[authorize(PUBLIC)]
    )
    async def coalition(self, info: Info[Context, None]) -> Coalition:
        async with info.context.services.db.transaction() as session:
            coalition = await programs.get_coalition(session)
        return Coalition.from_view(coalition)

    @strawberry.field(description="Who the access token speaks for.", extensions=[authorize(AUTHENTICATED)])
    def viewer(self, info: Info[Context, None]) -> Viewer | None:
        return Viewer.from_principal(info.context.caller())

    @strawberry.field(
        description="The member behind a member token.",
        extensions=[authorize(requires(Scope.MEMBER_READ))],
    )
    async def me(self, info: Info[Context, None]) -> Member | None:
        member_id = str(info.context.caller().member_id)
        async with info.context.services.db.transaction() as session:
            row = await members.get_member(session, member_id)
            accounts = (await members.linked_accounts(session, [member_id])).get(member_id, [])
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

    @strawberry.field(
        description="Every OAuth client (admins only).",
        extensions=[authorize(requires(Scope.ADMIN_READ))],
    )
    async def clients(self, info: Info[Context, None]) -> list[OAuthClient] | None:
        async with info.context.services.db.transaction() as session:
            rows = await clients.list_clients(session)
        return [OAuthClient.from_row(row) for row in rows]
