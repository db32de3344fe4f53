"""The partner's statements (read on the page, downloaded as JSON, CSV or the signed JWS) and
the reconciliation of its records, which it reads and settlement staff resolve."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from exchange.errors import ExchangeError
from exchange.services.catalog import CatalogService
from exchange.services.settlement import ReconciliationView, SettlementService
from exchange.settlement.errors import ReconciliationNotFound
from exchange.web.access import Page, query_cursor
from exchange.web.partner.forms import PARTNER_PATH, READ, program_of
from exchange.web.settlement import DOWNLOADS, lines_shown, next_step_said, participant_names, statement_download
from exchange.web.templating import Pages

#: Breaks on one page of the reconciliation; the page links to the next ones.
BREAKS_SHOWN = 500
PERIODS_SHOWN = 24

T = TypeVar("T")


class StatementPages:
    def __init__(self, *, settlement: SettlementService, pages: Pages, catalog: CatalogService) -> None:
        self.settlement = settlement
        self.pages = pages
        self.catalog = catalog

    def routes(self) -> list[Page]:
        prefix = f"{PARTNER_PATH}/statements"
        return [
            Page(prefix, self.periods, rule=READ),
            Page(prefix + "/{period}", self.statement, rule=READ),
            Page(prefix + "/{period}/statement.{format}", self.download, rule=READ),
            Page(prefix + "/{period}/reconciliation", self.reconciliation, rule=READ),
            Page(prefix + "/{period}/breaks.csv", self.break_report, rule=READ),
        ]

    async def periods(self, request: Request) -> Response:
        rows = await self.settlement.partner_periods(program_of(request), first=PERIODS_SHOWN)
        currency = await self.catalog.currency()
        return self.pages.render(request, "console/partner/statements.html", {"periods": rows, "currency": currency})

    async def _own(self, request: Request, read: Callable[[str, str], Awaitable[T]]) -> T:
        """The partner's own statement of the period in the address, as issued, as ``read``
        (partner, period) gives it: with its figures (``SettlementService.statement_figures``), as
        stored (``issued_statement``) or as a download; a period it took no part in, or one not
        closed, is not found."""
        try:
            return await read(program_of(request), str(request.path_params["period"]))
        except ExchangeError:
            raise HTTPException(status_code=404) from None

    async def statement(self, request: Request) -> Response:
        statement = await self._own(request, self.settlement.statement_figures)
        names = await participant_names(self.catalog.cache)
        return self.pages.render(
            request,
            "console/partner/statement.html",
            {
                "statement": statement,
                "shown": await lines_shown(request, statement, self.settlement),
                "currency": statement.currency,
                "names": names,
            },
        )

    async def download(self, request: Request) -> Response:
        fmt = str(request.path_params["format"])
        if fmt not in DOWNLOADS:
            raise HTTPException(status_code=404)
        return await self._own(
            request, lambda partner, period: statement_download(self.settlement, partner, period, fmt)
        )

    async def break_report(self, request: Request) -> Response:
        """Every break of the period's reconciliation as CSV, for a spreadsheet; not found before
        the partner's records are imported."""
        statement = await self._own(request, self.settlement.issued_statement)
        try:
            view = await self.settlement.reconciliation(statement.participant, statement.period)
        except ReconciliationNotFound:
            raise HTTPException(status_code=404) from None
        filename = f"breaks-{statement.participant}-{statement.period}.csv"
        return StreamingResponse(
            self.settlement.break_report(view.reconciliation, say=next_step_said(self.pages, request)),
            media_type=DOWNLOADS["csv"],
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    async def reconciliation(self, request: Request) -> Response:
        after = query_cursor(request)
        statement = await self._own(request, self.settlement.statement_figures)
        view: ReconciliationView | None
        try:
            view = await self.settlement.reconciliation(statement.participant, statement.period)
        except ReconciliationNotFound:
            view, breaks = None, []
        else:
            breaks = await self.settlement.breaks(view.reconciliation, first=BREAKS_SHOWN, after=after)
        more = len(breaks) == BREAKS_SHOWN
        return self.pages.render(
            request,
            "console/partner/reconciliation.html",
            {
                "statement": statement,
                "view": view,
                "breaks": breaks,
                "currency": statement.currency,
                "next_after": breaks[-1].row.id if more else None,
            },
        )
