"""The console's page of what waits on partners (``/console/partners-waiting``), for settlement
staff: the debits and credits a partner accepted and has not yet settled, and the steps a
partner keeps failing. Both lists are GraphQL's (``pendingOperations``, ``retryingOperations``)
and the command line's (``exchange pending``, ``exchange retrying``), read by the same services
under the same rule (``settlement:read``).

Programs are shown by name; why a step keeps failing is said as :mod:`exchange.web.said` says
the exchange's words (a partner's refusal in its own words, a partner that could not be
reached by name, any other detail marked as English on a page in another language).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from exchange.auth.scopes import Scope
from exchange.programs.catalog import CatalogCache
from exchange.services.late import LateOutcomes
from exchange.services.retrying import ATTENTION_AFTER, RetryingOperations
from exchange.web.access import Page, requires
from exchange.web.said import Said
from exchange.web.templating import Pages

PATH = "/partners-waiting"
#: Who reads it: as ``pendingOperations`` and ``retryingOperations``.
READS = requires(Scope.SETTLEMENT_READ)
#: Rows each list shows, oldest first.
LISTED = 100


class PartnersWaiting:
    def __init__(
        self, *, late: LateOutcomes, retrying: RetryingOperations, catalog: CatalogCache, pages: Pages
    ) -> None:
        self.late = late
        self.retrying = retrying
        self.catalog = catalog
        self.pages = pages

    def routes(self) -> list[Page]:
        return [Page(PATH, self.page, rule=READS)]

    async def page(self, request: Request) -> Response:
        programs = (await self.catalog.get()).programs
        failing = (await self.retrying.listed(first=LISTED)).items
        return self.pages.render(
            request,
            "console/partners_waiting.html",
            {
                "pending": (await self.late.waiting(first=LISTED)).items,
                "failing": [(row, Said.of(row.last_error, programs)) for row in failing],
                "programs": programs,
                "attention_after": ATTENTION_AFTER,
            },
        )
