"""``GET /settlement/books/{partnerId}/{period}.csv``: a partner's books as CSV.

The same :class:`~exchange.books.report.PartnerBooks` GraphQL's ``partnerBooks`` shows, from the
same application service, written line by line as a streamed response (one line per figure:
``partner,period,figure,points,amount,currency``). Authorized as ``partnerBooks`` is: staff with
``settlement:read``, or the partner itself with ``partner:read``; refusals are GraphQL-shaped
errors, as the records upload's are.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from exchange.api.fields.settlement import READ_OWN
from exchange.api.records import authorized, domain_refusal, path_refusal
from exchange.books.report import csv_lines
from exchange.errors import ExchangeError
from exchange.services.books import BooksService
from exchange.streaming import CSV_MEDIA_TYPE

#: ``period`` takes the path up to ``.csv``, as the records' route's takes the rest (``11/2026``).
PATH = "/settlement/books/{partner_id}/{period:path}.csv"


class BooksExport:
    """The route's endpoint; ``books`` is the service ``partnerBooks`` calls too."""

    def __init__(self, books: BooksService) -> None:
        self._books = books

    async def get(self, request: Request) -> Response:
        partner, period = request.path_params["partner_id"], request.path_params["period"]
        principal = authorized(request, READ_OWN, {"partner_id": partner})
        if isinstance(principal, Response):
            return principal
        if bad_path := path_refusal(request, partner, period):
            return bad_path
        try:
            books = await self._books.partner_books(partner, period)
        except ExchangeError as refused:
            return domain_refusal(request, refused)
        return StreamingResponse(
            csv_lines(books),
            media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="books-{books.partner}-{books.period}.csv"'},
        )
