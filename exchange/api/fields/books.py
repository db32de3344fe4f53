"""The partners' books: staff read any program's, a partner its own."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.fields.settlement import READ_OWN, PartnerId
from exchange.api.inputs import PeriodName
from exchange.api.permissions import authorize
from exchange.api.types.books import PartnerBooks


@strawberry.type
class BooksQueries:
    @strawberry.field(
        description="A program's books of a settlement period (`YYYY-MM`; an open period's so far): "
        "staff (`settlement:read`) for any program, a partner for its own. Reading them records and "
        "logs, once, each budget alert level newly crossed. An archived period's books, and those "
        "of a period with archived periods both before and after it, are refused (`BAD_USER_INPUT`, "
        "saying why).",
        extensions=[authorize(READ_OWN)],
    )
    async def partner_books(
        self, info: Info[Context, None], partner_id: PartnerId, period: PeriodName
    ) -> PartnerBooks | None:
        return PartnerBooks.of(await info.context.services.books.partner_books(str(partner_id), period))
