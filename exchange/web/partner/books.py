"""The partner's books: a period's figures on the page, and the same as CSV."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from exchange.books.report import PartnerBooks, csv_lines
from exchange.errors import ExchangeError
from exchange.services.books import BooksService
from exchange.web.access import Page
from exchange.web.partner.forms import BASE, PARTNER_PATH, READ, program_of
from exchange.web.templating import Pages

BOOKS_PATH = f"{PARTNER_PATH}/books"


class BooksPages:
    def __init__(self, *, books: BooksService, pages: Pages) -> None:
        self.books = books
        self.pages = pages

    def routes(self) -> list[Page]:
        return [
            Page(BOOKS_PATH, self.current, rule=READ),
            Page(BOOKS_PATH + "/{period}", self.period, rule=READ),
            Page(BOOKS_PATH + "/{period}/books.csv", self.download, rule=READ),
        ]

    async def current(self, request: Request) -> Response:
        """The period under way, by the settlement calendar."""
        return RedirectResponse(f"{BASE}/books/{self.books.current_period()}", status_code=303)

    async def _books(self, request: Request) -> PartnerBooks:
        """The partner's own books of the period in the address; a malformed period is not found."""
        try:
            return await self.books.partner_books(program_of(request), str(request.path_params["period"]))
        except ExchangeError:
            raise HTTPException(status_code=404) from None

    async def period(self, request: Request) -> Response:
        books = await self._books(request)
        calendar = self.books.calendar
        return self.pages.render(
            request,
            "console/partner/books.html",
            {
                "books": books,
                "currency": books.currency,
                # None past either end of the calendar: no link to a page that is not there.
                "previous": calendar.within_years(calendar.previous(books.period)),
                "next": calendar.within_years(calendar.next(books.period)),
                # A later period's figures are today's (its forecast): the page says so.
                "not_begun": books.period > self.books.current_period(),
            },
        )

    async def download(self, request: Request) -> Response:
        books = await self._books(request)
        return StreamingResponse(
            csv_lines(books),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="books-{books.partner}-{books.period}.csv"'},
        )
