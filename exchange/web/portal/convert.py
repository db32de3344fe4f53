"""Converting points: ask for a quote, convert it before its countdown runs out, see the outcome.

The quote page is rendered with a fresh idempotency key in its form, so submitting that form
twice converts once; a form rendered again (the page reloaded, or gone back to, after
converting) leads to the conversion its quote became, saying the quote was used already. After
the quote's expiry the page (its script at once, the server on submit) asks for a new quote
with the same programs and points. A debit needs the source program's authority in this
session; without it the member is offered its sign-in. The quote page shows the member's
balance at the source program; when it is below the points in, the page says so and offers to
change the amount instead of Convert now (a conversion that would fail at the partner's debit).
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from exchange.conversions.errors import QuoteAlreadyExecuted
from exchange.conversions.models import Conversion
from exchange.errors import BadUserInput, ExchangeError, http_status
from exchange.members.service import AccountNotLinked
from exchange.pricing.limits import MAX_POINTS, NOT_WHOLE_POINTS
from exchange.pricing.models import Quote
from exchange.services.container import Services
from exchange.text import fill, narrowed_digits, whole_number
from exchange.web.access import Page, form_fields, form_text
from exchange.web.portal.members import (
    MEMBERS,
    PORTAL_PATH,
    acting_for,
    found,
    may_spend,
    member,
    member_session,
    writing,
)
from exchange.web.said import Refusal, Said
from exchange.web.templating import Pages, Place

CONVERT_FIELDS = ("from_program", "to_program", "points")
#: How many of the member's conversions, newest first, the history lists.
HISTORY_LENGTH = 50


class ConvertPages:
    def __init__(self, *, services: Services, pages: Pages) -> None:
        self.services = services
        self.pages = pages

    def routes(self) -> list[Page]:
        return [
            writing("/convert", self.form),
            writing("/convert", self.ask_quote, methods=["POST"]),
            Page("/convert/quotes/{quote_id}", self.quote, rule=MEMBERS),
            writing("/convert/quotes/{quote_id}", self.execute, methods=["POST"]),
            Page("/conversions", self.history, rule=MEMBERS),
            Page("/conversions/{conversion_id}", self.outcome, rule=MEMBERS),
        ]

    async def form(self, request: Request) -> Response:
        entered = form_fields(request.query_params, CONVERT_FIELDS)
        return await self._form(request, entered=entered, expired=request.query_params.get("expired") == "1")

    async def ask_quote(self, request: Request) -> Response:
        form = await request.form()
        entered = form_fields(form, CONVERT_FIELDS)
        # A phone's keyboard in Chinese types full-width digits (１０００): the number the member sees.
        points = whole_number(narrowed_digits(entered["points"]), max_digits=12)
        try:
            if points is None:
                # Not "must be a whole number" alone: "-3" or a 15-digit number is one.
                raise BadUserInput(fill(NOT_WHOLE_POINTS, points=MAX_POINTS), field="points")
            quote = await self.services.conversions.create_quote(
                member(request), entered["from_program"], entered["to_program"], points
            )
        except ExchangeError as problem:
            return await self._form(request, entered=entered, problem=problem, status_code=400)
        return RedirectResponse(f"{PORTAL_PATH}/convert/quotes/{quote.quote.id}", status_code=303)

    async def quote(self, request: Request) -> Response:
        quote = await found(self.services.conversions.quote(member(request), request.path_params["quote_id"]))
        return await self._quote_page(request, quote)

    async def execute(self, request: Request) -> Response:
        form = await request.form()
        quote = await found(self.services.conversions.quote(member(request), request.path_params["quote_id"]))
        try:
            conversion = await self.services.conversions.execute(
                acting_for(request, quote.from_program), quote.id, form_text(form, "idempotency_key"), consent=None
            )
        except QuoteAlreadyExecuted as used:
            # Not a refusal to correct: the member converted with this quote already and asks
            # (again) what became of it.
            return RedirectResponse(
                f"{PORTAL_PATH}/conversions/{used.details['conversionId']}?again=1", status_code=303
            )
        except ExchangeError as problem:
            return await self._quote_page(request, quote, problem=problem, status_code=400)
        return RedirectResponse(f"{PORTAL_PATH}/conversions/{conversion.id}", status_code=303)

    async def outcome(self, request: Request) -> Response:
        conversion = await found(
            self.services.conversions.conversion(member(request), request.path_params["conversion_id"])
        )
        context = await self._amounts(conversion)
        catalog = await self.services.catalog.cache.get()
        # A completed conversion has a failure only when a partner contradicted itself and its
        # write stood (PARTNER_CONTRADICTED): the member is told why the programs' figures differ.
        failure = conversion.failure_message if conversion.failure_code is not None else None
        context["failure"] = Said.failure(conversion.failure_code, failure, catalog.programs) if failure else None
        context["again"] = request.query_params.get("again") == "1"
        return self.pages.render(request, "portal/conversion.html", context)

    async def history(self, request: Request) -> Response:
        """The member's conversions, newest first, each leading to its own page: without it a
        conversion was found again only through the address its outcome was shown at. Older
        ones a page at a time, after the cursor (``after``) the GraphQL ``conversions`` field
        pages with, refused as it refuses one it did not give out."""
        after = request.query_params.get("after")
        catalog = await self.services.catalog.cache.get()
        try:
            listed = await self.services.conversions.conversions(member(request), first=HISTORY_LENGTH, after=after)
        except ExchangeError as problem:
            return self.pages.render(
                request,
                "portal/conversions.html",
                {"conversions": [], "after": after, "older": None, "problem": Refusal.of(problem, catalog.programs)},
                status_code=http_status(problem.code),
            )
        return self.pages.render(
            request,
            "portal/conversions.html",
            {
                "conversions": listed.items,
                "programs": catalog.programs,
                "after": after,
                "older": listed.next_cursor,
                "problem": None,
            },
        )

    async def _form(
        self,
        request: Request,
        *,
        entered: dict[str, str],
        expired: bool = False,
        problem: ExchangeError | None = None,
        status_code: int = 200,
    ) -> Response:
        view = await self.services.members.me(member(request))
        catalog = await self.services.catalog.cache.get()
        programs = sorted(
            (catalog.programs[account.program_id] for account in view.accounts), key=lambda program: program.name
        )
        return self.pages.render(
            request,
            "portal/convert.html",
            {
                "programs": programs,
                # A pair's own rule where its rate sets one (stored with the rates, read as the
                # quote reads it): the source's rule alone would send the member to a refusal.
                "pair_rules": await self.services.pricing.pair_amount_rules(programs),
                "entered": entered,
                # Unless chosen: from a program whose points this session spends, not the first
                # by name (the coalition point, which a new member holds none of).
                "spendable": next(
                    (program.id for program in programs if member_session(request).may_spend(program.id)), None
                ),
                "expired": expired,
                "problem": Refusal.of(problem, catalog.programs) if problem else None,
            },
            status_code=status_code,
            # A form refused after its POST: switching language shows it again, as filled in.
            place=Place(entered),
        )

    async def _quote_page(
        self, request: Request, quote: Quote, *, problem: ExchangeError | None = None, status_code: int = 200
    ) -> Response:
        context = await self._amounts(quote)
        catalog = await self.services.catalog.cache.get()
        reviewed = await self.services.conversions.review(member(request), quote)
        # What changed since it was priced is said at once, not only once Convert is refused:
        # an account of it unlinked (said in the page's words), or the tiers of its bonus.
        problem = problem or reviewed.refusal
        unlinked = catalog.programs[problem.program_id] if isinstance(problem, AccountNotLinked) else None
        expired = quote.expires_at <= self.services.clock.now() or (
            problem is not None and problem.code.value == "QUOTE_EXPIRED"
        )
        context.update(
            quote=quote,
            balance=reviewed.coverage.balance,
            short=reviewed.short,
            expired=expired,
            unlinked=unlinked,
            problem=Refusal.of(problem, catalog.programs) if problem and unlinked is None else None,
            # A key per rendering of the form: the same form sent twice converts once.
            idempotency_key=secrets.token_urlsafe(24),
            may_spend=may_spend(request, catalog.programs[quote.from_program]),
        )
        return self.pages.render(request, "portal/quote.html", context, status_code=status_code)

    async def _amounts(self, priced: Quote | Conversion) -> dict[str, Any]:
        catalog = await self.services.catalog.cache.get()
        currency = catalog.currency
        return {
            "priced": priced,
            "source": catalog.programs[priced.from_program],
            "target": catalog.programs[priced.to_program],
            "currency": currency,
            "value": currency.from_minor(priced.money_value_minor),
            "fee": currency.from_minor(priced.fee_minor),
        }
