"""The settlement console (``/console/settlement/…``), for settlement staff.

Every page calls the settlement service under the rules GraphQL declares for the same work:
reading needs ``settlement:read`` or ``settlement:write`` (GraphQL's ``STAFF``), changing needs
``settlement:write`` (``closePeriod``, ``reconcileCoalitionPoint``, ``resolveBreaks``,
``signOffPeriod``). Closing is queued as a job that the gateway's job runner does (the page polls
its progress with htmx); a partner's file is streamed to the same import as
``PUT /settlement/records/…``, and the coalition point's records are written from the exchange's
own book of the point by the same import as ``exchange settle reconcile-point``; breaks are
resolved in bulk by ids or by the page's filter. A refusal re-renders the page with the reason
and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from exchange.auth.scopes import Scope
from exchange.errors import BadUserInput, ExchangeError, http_status
from exchange.programs.catalog import CatalogCache
from exchange.services.settlement import SettlementService
from exchange.settlement.break_kinds import BreakKind, Resolution
from exchange.settlement.break_report import NextStep
from exchange.settlement.breaks import MAX_REASON, BreakSelection, BulkResolveRequest
from exchange.settlement.errors import ReconciliationNotFound
from exchange.settlement.issued import IssuedFigures
from exchange.settlement.models import JobState, SettlementJob
from exchange.settlement.statements import StatementLine
from exchange.streaming import records_upload_problem, spooled
from exchange.text import quoted, text_problem, whole_number
from exchange.web.access import BadRequest, Endpoint, Page, Rule, form_fields, form_text, query_cursor, requires
from exchange.web.field_rules import FieldProblem
from exchange.web.netting_picture import draw
from exchange.web.templating import Pages, Place
from exchange.web.visitors import visitor_of

BASE = "/console/settlement"
#: Who reads settlement pages: as GraphQL's settlement fields (``STAFF``).
READS = requires(Scope.SETTLEMENT_READ, Scope.SETTLEMENT_WRITE)
#: Who changes settlement: as ``closePeriod``, ``reconcileCoalitionPoint``, ``resolveBreaks`` and ``signOffPeriod``.
WRITES = requires(Scope.SETTLEMENT_WRITE)
BREAKS_PAGE = 50
TRAIL_LENGTH = 50
BREAK_KINDS = [kind for kind in BreakKind if kind is not BreakKind.MATCHED]
#: A statement's downloads, by extension: their media types (both consoles serve them).
DOWNLOADS = {"json": "application/json", "csv": "text/csv; charset=utf-8", "jws": "application/jose"}
#: How many of a statement's lines its page shows at a time (both consoles); the downloads hold them all.
LINES_SHOWN = 200
#: What a refused form of a reconciliation's page held that the page shows again as typed.
ENTERED_FIELDS = ("scope", "resolution", "adjust_against", "reason", "note")
#: How long the ids the exchange makes (a job's, a reconciliation's: UUIDs) are.
ID_LENGTH = 36
#: How long a path parameter may be; any other is refused before a service sees it.
PATH_LIMITS = {"period": 7, "partner": 64, "participant": 64, "job_id": ID_LENGTH, "form": 8}


def _checked(value: str, name: str, limit: int) -> str:
    if problem := text_problem(value, limit):
        raise BadUserInput(f"{name} {problem}", field=name)
    return value


def _field(form: FormData, name: str, limit: int = MAX_REASON) -> str:
    """A form field as typed (trimmed); refused if too long or holding a NUL."""
    return _checked(form_text(form, name).strip(), name, limit)


def period_url(period: str) -> str:
    return f"{BASE}/{period}"


def reconciliation_url(period: str, partner: str, **query: str) -> str:
    chosen = {name: value for name, value in query.items() if value}
    return f"{BASE}/{period}/reconciliations/{partner}" + (f"?{urlencode(chosen)}" if chosen else "")


class SettlementConsole:
    def __init__(self, *, settlement: SettlementService, pages: Pages, catalog: CatalogCache) -> None:
        self.settlement = settlement
        self.pages = pages
        self.catalog = catalog

    async def _render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        *,
        status_code: int = 200,
        place: Place | None = None,
    ) -> Response:
        """A page that names participants: by their programs' names (``names``, program id to
        name; ``_labels.html``'s ``participant`` says one), with the id beside the name for
        staff who match it in files. ``place``: as :meth:`Pages.render` takes it."""
        names = await participant_names(self.catalog)
        return self.pages.render(request, template, {**context, "names": names}, status_code=status_code, place=place)

    def _page(
        self,
        path: str,
        endpoint: Endpoint,
        *,
        rule: Rule,
        methods: Collection[str] = ("GET",),
        lists: Collection[str] = (),
    ) -> Page:
        """A page whose path parameters are checked first: one it cannot take is refused with
        the reason, and no service sees it. ``lists``: as :class:`Page` takes them."""

        async def checked(request: Request) -> Response:
            try:
                for name, value in request.path_params.items():
                    _checked(value, name, PATH_LIMITS[name])
            except BadUserInput as refused:
                if request.method == "PUT":
                    return self._refused_upload(request, refused)
                return self._problem(request, refused)
            return await endpoint(request)

        return Page(path, checked, rule=rule, methods=methods, name=endpoint.__name__, lists=lists)

    def routes(self) -> list[Page]:
        return [
            self._page("/settlement/", self.periods, rule=READS),
            self._page("/settlement/close", self.close, rule=WRITES, methods=["POST"]),
            self._page("/settlement/jobs/{job_id}", self.job, rule=READS),
            self._page("/settlement/jobs/{job_id}/progress", self.job_progress, rule=READS),
            self._page("/settlement/{period}", self.period, rule=READS),
            self._page("/settlement/{period}/statements/{participant}", self.statement, rule=READS),
            self._page("/settlement/{period}/statements/{participant}/{form}", self.download, rule=READS),
            self._page("/settlement/{period}/reconciliations/{partner}", self.reconciliation, rule=READS),
            self._page("/settlement/{period}/reconciliations/{partner}/breaks.csv", self.break_report, rule=READS),
            self._page(
                "/settlement/{period}/reconciliations/{partner}/records", self.upload, rule=WRITES, methods=["PUT"]
            ),
            self._page(
                "/settlement/{period}/reconciliations/{partner}/from-book",
                self.reconcile_point,
                rule=WRITES,
                methods=["POST"],
            ),
            self._page(
                "/settlement/{period}/reconciliations/{partner}/resolve",
                self.resolve,
                rule=WRITES,
                methods=["POST"],
                lists=["break"],
            ),
            self._page(
                "/settlement/{period}/reconciliations/{partner}/sign-off", self.sign_off, rule=WRITES, methods=["POST"]
            ),
        ]

    def _actor(self, request: Request) -> str:
        principal = visitor_of(request).principal
        assert principal is not None
        return principal.client_id

    def _problem(self, request: Request, refused: ExchangeError) -> Response:
        return self.pages.render(
            request,
            "console/settlement/problem.html",
            {"error": FieldProblem.of(refused)},
            status_code=http_status(refused.code),
        )

    def _refused_upload(
        self, request: Request, refused: ExchangeError, *, status_code: int | None = None
    ) -> JSONResponse:
        """A refused upload, for the page's script: ``message`` says why in the reader's
        language, as a page says a refusal; the error's extensions keep the API's terms.
        ``status_code``: other than the error's code gives."""
        said = self.pages.macro(request, "console/settlement/_labels.html", "refusal")(FieldProblem.of(refused))
        return JSONResponse(
            {**refused.extensions(), "message": said}, status_code=status_code or http_status(refused.code)
        )

    # Periods and closing

    async def periods(
        self, request: Request, *, error: ExchangeError | None = None, entered: str | None = None
    ) -> Response:
        """The periods and the form that closes one; refused (``error``), the form keeps what
        was ``entered``."""
        return self.pages.render(
            request,
            "console/settlement/periods.html",
            {
                "periods": await self.settlement.periods(),
                "previous": self.settlement.previous_period(),
                "entered": entered,
                "jobs": await self.settlement.recent_jobs(),
                "error": FieldProblem.of(error) if error else None,
                "can_write": WRITES.allows(visitor_of(request).principal),
            },
            status_code=http_status(error.code) if error else 200,
            # Shown for a refused POST: its language links lead to the periods, not to the form's address.
            place=Place({}, path=f"{BASE}/") if error else None,
        )

    async def close(self, request: Request) -> Response:
        form = await request.form()
        try:
            job = await self.settlement.request_close(_field(form, "period", 7), by=self._actor(request))
        except ExchangeError as refused:
            return await self.periods(request, error=refused, entered=form_text(form, "period")[:MAX_REASON])
        return RedirectResponse(f"{BASE}/jobs/{job.id}", status_code=303)

    async def job(self, request: Request) -> Response:
        try:
            job = await self.settlement.job(request.path_params["job_id"])
        except ExchangeError as refused:
            return self._problem(request, refused)
        return self.pages.render(request, "console/settlement/job.html", job_context(job))

    async def job_progress(self, request: Request) -> Response:
        try:
            job = await self.settlement.job(request.path_params["job_id"])
        except ExchangeError as refused:
            return self._problem(request, refused)
        return self.pages.render(request, "console/settlement/job_progress.html", job_context(job))

    # A closed period: the netting picture and every participant's position

    async def period(self, request: Request) -> Response:
        try:
            report = await self.settlement.period(request.path_params["period"])
            job = None if report.saving else await self.settlement.closing_job(report.period)
        except ExchangeError as refused:
            return self._problem(request, refused)
        nets = {p.participant: p.net for p in report.positions}
        return await self._render(
            request,
            "console/settlement/period.html",
            {
                "report": report,
                "picture": draw(report.obligations, nets) if report.saving else None,
                "saving": report.saving,
                "money": report.currency.from_minor,
                "currency": report.currency,
                "job": job,
            },
        )

    # Statements

    async def statement(self, request: Request) -> Response:
        period, participant = request.path_params["period"], request.path_params["participant"]
        try:
            statement = await self.settlement.statement_figures(participant, period)
        except ExchangeError as refused:
            return self._problem(request, refused)
        return await self._render(
            request,
            "console/settlement/statement.html",
            {
                "statement": statement,
                "shown": await lines_shown(request, statement, self.settlement),
                "money": statement.currency.from_minor,
                "currency": statement.currency,
                "downloads": {form: f"{BASE}/{period}/statements/{participant}/{form}" for form in DOWNLOADS},
            },
        )

    async def download(self, request: Request) -> Response:
        period, participant, form = (request.path_params[name] for name in ("period", "participant", "form"))
        if form not in DOWNLOADS:
            return self.pages.render(request, "refused.html", _not_found(), status_code=404)
        try:
            return await statement_download(self.settlement, participant, period, form)
        except ExchangeError as refused:
            return self._problem(request, refused)

    # Reconciliation

    async def break_report(self, request: Request) -> Response:
        """Every break of the partner's reconciliation as CSV (what its console downloads too)."""
        period, partner = request.path_params["period"], request.path_params["partner"]
        try:
            view = await self.settlement.reconciliation(partner, period)
        except ExchangeError as refused:
            return self._problem(request, refused)
        filename = f"breaks-{partner}-{view.reconciliation.period}.csv"
        return StreamingResponse(
            self.settlement.break_report(view.reconciliation, say=next_step_said(self.pages, request)),
            media_type=DOWNLOADS["csv"],
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    async def reconciliation(
        self,
        request: Request,
        *,
        error: ExchangeError | None = None,
        notice: str | None = None,
        entered: FormData | None = None,
    ) -> Response:
        """A partner's reconciliation; refused (``error``), its forms keep what was ``entered``
        (the breaks ticked, how and why to resolve them, the note), so that sending them again
        after a correction does not fall back to the defaults (accepting the ledger's figure)."""
        period, partner = request.path_params["period"], request.path_params["partner"]
        query = request.query_params
        # A refused form is shown with the filter it was sent under (its hidden fields): the
        # breaks it meant, and a form that, sent again, means them still.
        filters = form_fields(entered if entered is not None else query, ("kind", "counterparty"))
        kind = filters["kind"] or None
        counterparty = filters["counterparty"] or None
        if counterparty is not None and text_problem(counterparty, PATH_LIMITS["partner"]):
            counterparty = None  # a filter no break can match
        after = query_cursor(request)
        context: dict[str, Any] = {
            "period": period,
            "partner": partner,
            "kinds": BREAK_KINDS,
            "kind": kind if kind in {k.value for k in BREAK_KINDS} else None,
            "counterparty": counterparty,
            "error": FieldProblem.of(error) if error else None,
            "notice": notice or query.get("notice"),
            "can_write": WRITES.allows(visitor_of(request).principal),
            "is_point": await self._is_point(partner),
            "reconciliation": None,
            "trail": [],
            "max_reason": MAX_REASON,
            "entered": form_fields(entered or FormData(), ENTERED_FIELDS),
            "ticked": {value for value in (entered or FormData()).getlist("break") if isinstance(value, str)},
        }
        try:
            position = await self.settlement.position(partner, period)
            context["position"] = position
            try:
                view = await self.settlement.reconciliation(partner, period)
            except ReconciliationNotFound:
                # No records imported yet: the page offers the upload. The exchange, which has
                # no reconciliation at all (ExchangeNotReconciled), is refused with the reason.
                view = None
            if view is not None:
                breaks = await self.settlement.breaks(
                    view.reconciliation,
                    kind=BreakKind(context["kind"]) if context["kind"] else None,
                    counterparty=counterparty,
                    first=BREAKS_PAGE,
                    after=after,
                )
                context.update(
                    reconciliation=view.reconciliation,
                    unresolved=view.unresolved,
                    totals=view.totals,
                    breaks=breaks,
                    money=view.currency.from_minor,
                    currency=view.currency,
                    trail=await self.settlement.trail(view.reconciliation, first=TRAIL_LENGTH),
                    next_url=reconciliation_url(
                        period,
                        partner,
                        kind=context["kind"] or "",
                        counterparty=counterparty or "",
                        after=str(breaks[-1].row.id),
                    )
                    if len(breaks) == BREAKS_PAGE
                    else None,
                )
        except ExchangeError as refused:
            return self._problem(request, refused)
        return await self._render(
            request,
            "console/settlement/reconciliation.html",
            context,
            status_code=http_status(error.code) if error else 200,
            # Shown for a refused POST: its language links lead to this page, under its filter.
            place=Place(filters, path=reconciliation_url(period, partner)) if request.method == "POST" else None,
        )

    async def upload(self, request: Request) -> Response:
        """The partner's file, taken whole and then imported (``PUT`` with the CSRF token as a
        header, as the page's script sends it); answers JSON for the script."""
        period, partner = request.path_params["period"], request.path_params["partner"]
        if problem := records_upload_problem(request.headers):
            refused = BadUserInput(problem, field="csv")
            return self._refused_upload(request, refused, status_code=415)
        try:
            async with spooled(request.stream()) as body:
                view = await self.settlement.import_records(partner, period, body, by=self._actor(request))
        except ExchangeError as refused:
            return self._refused_upload(request, refused)
        return JSONResponse(
            {
                "location": reconciliation_url(period, partner, notice="imported"),
                "lines": view.reconciliation.lines,
                "unresolvedBreaks": view.unresolved,
            }
        )

    async def _is_point(self, participant: str) -> bool:
        """Whether ``participant`` is the coalition point, whose records come from the exchange's
        own book of it rather than from a partner's file."""
        return (await self.catalog.get()).coalition.point_program_id == participant

    async def reconcile_point(self, request: Request) -> Response:
        """The coalition point's records, written from the exchange's own book of the point and
        imported (``reconcileCoalitionPoint``); any other participant has no such book here."""
        period, partner = request.path_params["period"], request.path_params["partner"]
        if not await self._is_point(partner):
            return self.pages.render(request, "refused.html", _not_found(), status_code=404)
        try:
            await self.settlement.import_point_records(period, by=self._actor(request))
        except ExchangeError as refused:
            return await self.reconciliation(request, error=refused)
        return RedirectResponse(reconciliation_url(period, partner, notice="reconciled-from-book"), status_code=303)

    async def resolve(self, request: Request) -> Response:
        period, partner = request.path_params["period"], request.path_params["partner"]
        form = await request.form()
        try:
            kind, counterparty = _field(form, "kind"), _field(form, "counterparty")
            selection = _selection(form)
            done = await self.settlement.resolve_many(
                BulkResolveRequest(
                    partner=partner,
                    period=period,
                    selection=selection,
                    resolution=_resolution(_field(form, "resolution")),
                    reason=_field(form, "reason"),
                    actor=self._actor(request),
                    counterparty=_field(form, "adjust_against") or None,
                    reconciliation=_seen(form),
                )
            )
        except ExchangeError as refused:
            return await self.reconciliation(request, error=refused, entered=form)
        return RedirectResponse(
            reconciliation_url(
                period, partner, kind=kind, counterparty=counterparty, notice=f"resolved:{done.resolved}"
            ),
            status_code=303,
        )

    async def sign_off(self, request: Request) -> Response:
        period, partner = request.path_params["period"], request.path_params["partner"]
        form = await request.form()
        try:
            note = _field(form, "note") or None
            await self.settlement.sign_off(partner, period, by=self._actor(request), note=note, seen=_seen(form))
        except ExchangeError as refused:
            return await self.reconciliation(request, error=refused, entered=form)
        return RedirectResponse(reconciliation_url(period, partner, notice="signed-off"), status_code=303)


@dataclass(frozen=True)
class LinesShown:
    """The lines of a statement its page shows: ``lines``, from the ``first``-th (counted from
    1) of ``total``; ``previous`` and ``following`` are the ``after`` cursors of the pages
    before and after (``None``: there is none; ``0``: the first page)."""

    lines: Sequence[StatementLine]
    first: int
    total: int
    previous: int | None
    following: int | None

    @property
    def last(self) -> int:
        return self.first + len(self.lines) - 1


async def lines_shown(request: Request, statement: IssuedFigures, settlement: SettlementService) -> LinesShown:
    """The page of ``statement``'s lines that ``request`` asks for by its ``after`` cursor (the
    number of lines before it; none: the first page). A statement of a busy month holds many
    thousands of lines, more than a page can show and a browser lay out: the page reads its own
    lines alone, by their numbers (``issued_statement_line``). A cursor past them all is refused
    (``400``), not shown as an empty statement."""
    after = query_cursor(request) or 0
    participant, period = statement.participant, statement.period
    total = await settlement.statement_line_count(participant, period)
    if after and after >= total:
        raise BadRequest(f"after must be below {total}: the statement has {total} lines", field="after")
    shown = await settlement.statement_lines_after(participant, period, number=after, first=LINES_SHOWN)
    return LinesShown(
        lines=shown,
        first=after + 1,
        total=total,
        previous=max(0, after - LINES_SHOWN) if after else None,
        following=after + LINES_SHOWN if after + LINES_SHOWN < total else None,
    )


async def statement_download(settlement: SettlementService, participant: str, period: str, form: str) -> Response:
    """The participant's issued statement of ``period`` as the file its download ``form`` (a key
    of :data:`DOWNLOADS`) serves: the document as issued, its signature, or its CSV, streamed
    from the statement's lines a page at a time (``SettlementService.statement_csv``: the
    document is not read). A statement not found or not closed is refused before any of it."""
    filename = f"statement-{participant}-{period}.{form}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if form == "csv":
        pieces = await settlement.statement_csv(participant, period)
        return StreamingResponse(pieces, media_type=DOWNLOADS[form], headers=headers)
    statement = await settlement.issued_statement(participant, period)
    body = statement.document if form == "json" else statement.jws
    return Response(body, media_type=DOWNLOADS[form], headers=headers)


async def participant_names(catalog: CatalogCache) -> dict[str, str]:
    """Each program's name by its id, which names it as a participant of settlement."""
    return {program.id: program.name for program in (await catalog.get()).programs.values()}


def next_step_said(pages: Pages, request: Request) -> Callable[[NextStep], str]:
    """How a break report downloaded from a page says each break's next step: in the page's
    language (the file's columns keep their names)."""
    return pages.macro(request, "_next_step.html", "next_step")


def job_context(job: SettlementJob) -> dict[str, Any]:
    """What a job's page and its progress fragment show: the job, whether it still runs, and
    why it failed, read back into the rule that said it (for the reader's language)."""
    return {
        "job": job,
        "running": job.state in (JobState.QUEUED, JobState.RUNNING),
        "failure": FieldProblem.read(job.error) if job.error else None,
    }


def _not_found() -> Mapping[str, Any]:
    return {"reason": "not-found", "sign_in_path": "/console/sign-in", "layout": "console/layout.html"}


def _resolution(value: str) -> Resolution:
    try:
        return Resolution(value)
    except ValueError:
        raise BadUserInput(
            "choose how to resolve them: accept the ledger's figure, or adjust", field="resolution"
        ) from None


def _seen(form: FormData) -> str | None:
    """The reconciliation the page showed when it made the form (its id), which the form acts
    on only if no import has replaced it since; None from a form that names none."""
    return _field(form, "reconciliation", ID_LENGTH) or None


def _selection(form: FormData) -> BreakSelection:
    """The breaks ticked (``scope=selected``), or every open break the page's filter shows
    (``scope=filter``); a form that says neither is refused, not taken for every open break."""
    scope = _field(form, "scope")
    if scope not in ("selected", "filter"):
        raise BadUserInput("choose which breaks: those selected, or every open break the filter shows", field="scope")
    if scope == "selected":
        ids = [whole_number(value) if isinstance(value, str) else None for value in form.getlist("break")]
        if None in ids:
            raise BadUserInput("break ids are numbers", field="selection.ids")
        return BreakSelection(ids=tuple(number for number in ids if number is not None))
    kind = _field(form, "kind")
    if kind and kind not in {k.value for k in BREAK_KINDS}:
        raise BadUserInput(f"no class of break is called {quoted(kind)}", field="selection.kind")
    return BreakSelection(kind=BreakKind(kind) if kind else None, counterparty=_field(form, "counterparty") or None)
