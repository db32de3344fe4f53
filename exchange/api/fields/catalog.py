"""The public catalog: programs, their tiers and limits, the coalition."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.permissions import PUBLIC, authorize
from exchange.api.types.programs import Coalition, Program
from exchange.programs import service as programs


@strawberry.type
class CatalogQueries:
    @strawberry.field(description="Every program in the coalition, by id.", extensions=[authorize(PUBLIC)])
    async def programs(self, info: Info[Context, None]) -> list[Program]:
        async with info.context.services.db.transaction() as session:
            rows = await programs.list_programs(session)
        return [Program.from_row(row) for row in rows]

    @strawberry.field(description="One program by id; `NOT_FOUND` if there is none.", extensions=[authorize(PUBLIC)])
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
