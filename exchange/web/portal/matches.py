"""Status matches: preview what a match from one program into another would give now (both
tiers read live), request it, and see the member's matches. Within 12 months of a match into
the target (one a year, whatever became of it) the preview says when the next is possible
instead of offering one the request would refuse; a request refused so shows that preview.

The request form carries an idempotency key made for each rendering: the same form sent twice
(a double click, a reload that resends) requests once, and the second answer is the first's.
A form without one (a page rendered before forms carried it) is refused the second time as
too soon, as before."""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from exchange.errors import ExchangeError
from exchange.services.container import Services
from exchange.tiers.errors import MatchTooSoon
from exchange.tiers.matching import Assessment
from exchange.web.access import Page, form_fields, form_text
from exchange.web.portal.members import MEMBERS, PORTAL_PATH, member, writing
from exchange.web.said import Refusal
from exchange.web.templating import Pages, Place

MATCHES_SHOWN = 20
NOTICES = ("requested",)
MATCH_FIELDS = ("from_program", "to_program")


class StatusMatchPages:
    def __init__(self, *, services: Services, pages: Pages) -> None:
        self.services = services
        self.pages = pages

    def routes(self) -> list[Page]:
        return [
            Page("/status-match", self.overview, rule=MEMBERS),
            writing("/status-match", self.request, methods=["POST"]),
        ]

    async def overview(self, request: Request) -> Response:
        query = request.query_params
        entered = form_fields(query, MATCH_FIELDS)
        assessment: Assessment | None = None
        problem: ExchangeError | None = None
        if entered["from_program"] and entered["to_program"]:
            try:
                assessment = await self.services.matches.preview(
                    member(request), entered["from_program"], entered["to_program"]
                )
            except ExchangeError as refused:
                problem = refused
        notice = query.get("notice")
        return await self._page(
            request,
            entered=entered,
            assessment=assessment,
            problem=problem,
            notice=notice if notice in NOTICES else None,
            status_code=400 if problem else 200,
        )

    async def request(self, request: Request) -> Response:
        form = await request.form()
        entered = form_fields(form, MATCH_FIELDS)
        try:
            await self.services.matches.request(
                member(request),
                entered["from_program"],
                entered["to_program"],
                form_text(form, "claimed_tier") or None,
                key=form_text(form, "idempotency_key") or None,
            )
        except MatchTooSoon as problem:
            # A request sent twice (a double click) meets the match its first made: the page
            # shows the pair's preview, which says when the next match is possible.
            assessment = await self._preview(request, entered)
            return await self._page(request, entered=entered, assessment=assessment, problem=problem, status_code=400)
        except ExchangeError as problem:
            return await self._page(request, entered=entered, problem=problem, status_code=400)
        return RedirectResponse(f"{PORTAL_PATH}/status-match?notice=requested", status_code=303)

    async def _preview(self, request: Request, entered: dict[str, str]) -> Assessment | None:
        """The pair's preview, or none if it cannot be made now (a partner not answering)."""
        try:
            return await self.services.matches.preview(member(request), entered["from_program"], entered["to_program"])
        except ExchangeError:
            return None

    async def _page(
        self,
        request: Request,
        *,
        entered: dict[str, str],
        assessment: Assessment | None = None,
        problem: ExchangeError | None = None,
        notice: str | None = None,
        status_code: int = 200,
    ) -> Response:
        caller = member(request)
        view = await self.services.members.me(caller)
        catalog = await self.services.catalog.cache.get()
        # The coalition point grants no status: nothing is matched from or into it.
        programs = sorted(
            (
                catalog.programs[account.program_id]
                for account in view.accounts
                if account.program_id not in catalog.exchange_held
            ),
            key=lambda program: program.name,
        )
        return self.pages.render(
            request,
            "portal/status_match.html",
            {
                "programs": programs,
                "all_programs": catalog.programs,
                "entered": entered,
                "assessment": assessment,
                "problem": Refusal.of(problem, catalog.programs) if problem else None,
                "notice": notice,
                "matches": (await self.services.matches.matches(caller, first=MATCHES_SHOWN)).items,
                "idempotency_key": secrets.token_urlsafe(24),
            },
            status_code=status_code,
            # A request refused after its POST: switching language shows the pair again (previewed).
            place=Place(entered),
        )
