"""The partner console: a partner's staff manage their own program under ``/console/partner/``.

Every page acts for the one program the signed-in person's account is tied to (their
principal's ``program_id``): no address or form names the program, and a row named by id (a
reward, a redemption, a promotion, a client, a key) is shown or changed only when the same rule
GraphQL applies (:func:`exchange.auth.rules.own_program`) says it is the person's own.
"""

from __future__ import annotations

from exchange.services.container import Services
from exchange.web.access import Page
from exchange.web.partner.access import AccessPages
from exchange.web.partner.books import BooksPages
from exchange.web.partner.pricing import PricingPages
from exchange.web.partner.rewards import RewardPages
from exchange.web.partner.statements import StatementPages
from exchange.web.templating import Pages


class PartnerConsole:
    """The partner console's pages, for the console's router."""

    def __init__(self, *, services: Services, pages: Pages) -> None:
        self.areas = (
            PricingPages(pricing=services.pricing, pages=pages, catalog=services.catalog),
            RewardPages(rewards=services.rewards, pages=pages, catalog=services.catalog),
            AccessPages(access=services.access, pages=pages),
            StatementPages(settlement=services.settlement, pages=pages, catalog=services.catalog),
            BooksPages(books=services.books, pages=pages),
        )

    def routes(self) -> list[Page]:
        return [route for area in self.areas for route in area.routes()]
