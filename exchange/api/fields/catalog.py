"""The public catalog: programs, their tiers and limits, the coalition."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.permissions import PUBLIC, authorize
from exchange.api.types.programs import Coalition, Program


@strawberry.type
class CatalogQueries:
    @strawberry.field(description="Every program in the coalition, by id.", extensions=[authorize(PUBLIC)])
    async def programs(self, info: Info[Context, None]) -> list[Program]:
        return [Program.from_row(row) for row in await info.context.services.catalog.programs()]

    @strawberry.field(description="One program by id; `NOT_FOUND` if there is none.", extensions=[authorize(PUBLIC)])
    async def program(
        self,
        info: Info[Context, None],
        id: Annotated[strawberry.ID, strawberry.argument(description="The program's id, e.g. `formosa-air`.")],
    ) -> Program:
        return Program.from_row(await info.context.services.catalog.program(str(id)))

    @strawberry.field(
        description="The coalition's settlement currency and tier ladder.", extensions=[authorize(PUBLIC)]
    )
    async def coalition(self, info: Info[Context, None]) -> Coalition:
        return Coalition.from_view(await info.context.services.catalog.coalition())
