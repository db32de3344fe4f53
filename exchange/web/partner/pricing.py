"""Rates and promotions into the partner's program, with a live preview of what a conversion
gives (the quote's own pricing, nothing stored)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from exchange.errors import BadUserInput, ExchangeError, NotFound
from exchange.pricing.limits import MAX_POINTS
from exchange.pricing.models import RateVersion
from exchange.pricing.promotions import PromotionTerms
from exchange.pricing.rates import Origin, RateTerms
from exchange.programs.catalog import Catalog
from exchange.programs.models import CoalitionLevel, Program
from exchange.ratio import Ratio
from exchange.services.catalog import CatalogService
from exchange.services.pricing import PricingService
from exchange.web.access import Page, query_value
from exchange.web.partner.forms import BASE, PARTNER_PATH, READ, WRITE, FormValues, Problems, partner_of, program_of
from exchange.web.templating import Pages

#: The optional whole-number fields of a rate, as GraphQL's ``RateOverrideInput`` names them.
RATE_NUMBERS = ("bonusEvery", "bonusPoints", "minimumPoints", "increment", "memberDailyCap", "memberMonthlyCap")
#: Notices a page shows after a change, by the ``done`` query parameter.
DONE = ("rate-set", "rate-cleared", "promotion-created", "promotion-ended")
RATE_FORM = "console/partner/rate_form.html"
#: Promotions the rates page lists (a test lowers it), the latest start first; a link lists the
#: ones before them.
PROMOTIONS_SHOWN = 50
PROMOTION_FORM = "console/partner/promotion_form.html"


@dataclass(frozen=True)
class RateRow:
    """A pair's rate as the list shows it: the ratio (``None``: derived from point values)."""

    version: RateVersion

    @property
    def ratio(self) -> str | None:
        bands = self.version.bands
        return str(Ratio(bands[0][1], bands[0][2])) if len(bands) == 1 else None

    @property
    def banded(self) -> bool:
        return len(self.version.bands) > 1

    @property
    def editable(self) -> bool:
        return self.version.origin != Origin.DECLARED


def rate_terms(values: FormValues) -> RateTerms:
    numbers = {name: values.integer(name) for name in RATE_NUMBERS}
    return RateTerms(
        ratio=values.required("ratio"),
        bonus_every=numbers["bonusEvery"],
        bonus_points=numbers["bonusPoints"],
        minimum_points=numbers["minimumPoints"],
        increment=numbers["increment"],
        member_daily_cap=numbers["memberDailyCap"],
        member_monthly_cap=numbers["memberMonthlyCap"],
    )


def sources_into(catalog: Catalog, own: str) -> list[Program]:
    """The programs whose points can be converted into ``own``: every other one."""
    return [program for program in catalog.programs.values() if program.id != own]


def source_program(values: FormValues, catalog: Catalog, own: str) -> str:
    source = catalog.program(values.required("fromProgram"), field="fromProgram").id
    if source == own:
        raise BadUserInput("a program cannot be converted into itself", field="fromProgram")
    return source


class PricingPages:
    def __init__(self, *, pricing: PricingService, pages: Pages, catalog: CatalogService) -> None:
        self.pricing = pricing
        self.pages = pages
        self.catalog = catalog

    def routes(self) -> list[Page]:
        prefix = PARTNER_PATH
        return [
            Page(f"{prefix}/rates", self.rates, rule=READ),
            Page(f"{prefix}/rates/edit", self.rate_form, rule=WRITE),
            Page(f"{prefix}/rates", self.set_rate, rule=WRITE, methods=["POST"]),
            Page(f"{prefix}/rates/clear", self.clear_rate, rule=WRITE, methods=["POST"]),
            Page(f"{prefix}/rates/preview", self.preview, rule=READ),
            Page(f"{prefix}/promotions/new", self.promotion_form, rule=WRITE),
            Page(f"{prefix}/promotions", self.create_promotion, rule=WRITE, methods=["POST"], lists=["fromPrograms"]),
            Page(f"{prefix}/promotions/end", self.end_promotion, rule=WRITE, methods=["POST"]),
        ]

    async def rates(self, request: Request) -> Response:
        own = program_of(request)
        after = query_value(request, "after")
        try:
            # One more than a page: whether there are earlier ones to link to.
            promotions = await self.pricing.latest_promotions(own, first=PROMOTIONS_SHOWN + 1, after=after)
        except NotFound:  # no promotion of this partner's listing
            raise HTTPException(status_code=404) from None
        catalog = await self.catalog.cache.get()
        versions = (await self.pricing.incoming_rates([own])).get(own, [])
        done = request.query_params.get("done")
        return self.pages.render(
            request,
            "console/partner/rates.html",
            {
                "program": catalog.programs[own],
                "programs": catalog.programs,
                "sources": sources_into(catalog, own),
                "rates": [RateRow(version) for version in versions],
                "promotions": promotions[:PROMOTIONS_SHOWN],
                "after": after,
                "earlier": promotions[PROMOTIONS_SHOWN - 1].id if len(promotions) > PROMOTIONS_SHOWN else None,
                "levels": await self._levels(),
                "now": self.pricing.clock.now(),
                "done": done if done in DONE else None,
            },
        )

    async def rate_form(self, request: Request) -> Response:
        own = program_of(request)
        catalog = await self.catalog.cache.get()
        values: dict[str, Any] = {}
        wanted = request.query_params.get("fromProgram")
        current = {row.from_program: row for row in (await self.pricing.incoming_rates([own])).get(own, [])}
        if wanted in current:
            row = RateRow(current[wanted])
            version = row.version
            values = {
                "fromProgram": wanted,
                "ratio": row.ratio or "",
                "bonusEvery": version.bonus_every,
                "bonusPoints": version.bonus_points,
                "minimumPoints": version.minimum_points,
                "increment": version.increment,
                "memberDailyCap": version.member_daily_cap,
                "memberMonthlyCap": version.member_monthly_cap,
            }
        return self._form_page(RATE_FORM, request, catalog, own, values, Problems())

    async def set_rate(self, request: Request) -> Response:
        return await self._change_rate(
            request,
            "rate-set",
            lambda source, own, actor, values: self.pricing.set_rate(source, own, rate_terms(values), actor=actor),
        )

    async def clear_rate(self, request: Request) -> Response:
        return await self._change_rate(
            request, "rate-cleared", lambda source, own, actor, _: self.pricing.clear_rate(source, own, actor=actor)
        )

    async def _change_rate(
        self, request: Request, done: str, change: Callable[[str, str, str, FormValues], Awaitable[RateVersion]]
    ) -> Response:
        """Apply ``change`` (source program, the partner's own, acting client, form) to the rate
        from the program the form names: back to the rates with notice ``done``, or the rate
        form again naming the problem."""
        own, actor = program_of(request), partner_of(request).client_id
        catalog = await self.catalog.cache.get()
        values = FormValues(await request.form())
        try:
            await change(source_program(values, catalog, own), own, actor, values)
        except ExchangeError as error:
            problems = Problems()
            problems.add(error)
            return self._form_page(RATE_FORM, request, catalog, own, values.raw, problems, status_code=422)
        return RedirectResponse(f"{BASE}/rates?done={done}", status_code=303)

    async def preview(self, request: Request) -> Response:
        """The preview fragment htmx swaps in as the partner types (a whole page without htmx)."""
        own = program_of(request)
        catalog = await self.catalog.cache.get()
        values = FormValues(request.query_params)
        problems = Problems()
        priced = None
        try:
            source = source_program(values, catalog, own)
            level = values.integer("memberLevel") or 0
            priced = await self.pricing.preview(
                source, own, values.required_integer("points", least=1, most=MAX_POINTS), member_level=level
            )
        except ExchangeError as error:
            problems.add(error)
        context = {"priced": priced, "problems": problems, "currency": catalog.currency, "programs": catalog.programs}
        if request.headers.get("HX-Request") == "true":  # htmx swaps in only a 2xx answer
            return self.pages.render(request, "console/partner/preview.html", context)
        status_code = 422 if problems else 200
        return self.pages.render(request, "console/partner/preview_page.html", context, status_code=status_code)

    async def promotion_form(self, request: Request) -> Response:
        own = program_of(request)
        return self._form_page(PROMOTION_FORM, request, await self.catalog.cache.get(), own, {}, Problems())

    async def create_promotion(self, request: Request) -> Response:
        own, actor = program_of(request), partner_of(request).client_id
        catalog = await self.catalog.cache.get()
        form = await request.form()
        values = FormValues(form)
        problems = Problems()
        try:
            sources = tuple(
                catalog.program(value, field="fromPrograms").id
                for value in form.getlist("fromPrograms")
                if isinstance(value, str)
            )
            starts_at = values.moment("startsAt", self.pages.zone) or self.pricing.clock.now()
            ends_at = values.moment("endsAt", self.pages.zone)
            if ends_at is None:
                raise BadUserInput("endsAt is required", field="endsAt")
            terms = PromotionTerms(
                id=values.required("id"),
                program_id=own,
                bonus_percent=values.decimal("bonusPercent"),
                starts_at=starts_at,
                ends_at=ends_at,
                sources=sources or None,
            )
            await self.pricing.create_promotion(terms, actor=actor)
        except ExchangeError as error:
            problems.add(error)
            chosen = {value for value in form.getlist("fromPrograms") if isinstance(value, str)}
            return self._form_page(
                PROMOTION_FORM, request, catalog, own, values.raw, problems, chosen=chosen, status_code=422
            )
        return RedirectResponse(f"{BASE}/rates?done=promotion-created", status_code=303)

    async def end_promotion(self, request: Request) -> Response:
        own = program_of(request)
        values = FormValues(await request.form())
        try:
            await self.pricing.end_promotion(own, values.required("id"))
        except ExchangeError as error:
            problems = Problems()
            problems.add(error)
            return self.pages.render(
                request,
                "console/partner/problem.html",
                {"problems": problems, "back": f"{BASE}/rates"},
                status_code=422,
            )
        return RedirectResponse(f"{BASE}/rates?done=promotion-ended", status_code=303)

    def _form_page(
        self,
        template: str,
        request: Request,
        catalog: Catalog,
        own: str,
        values: Mapping[str, Any],
        problems: Problems,
        *,
        chosen: set[str] | None = None,
        status_code: int = 200,
    ) -> Response:
        """A form about conversions into the partner's own program (a rate, a promotion):
        ``chosen`` are the source programs ticked, where the form lets several be."""
        return self.pages.render(
            request,
            template,
            {
                "program": catalog.programs[own],
                "sources": sources_into(catalog, own),
                "values": values,
                "chosen": chosen or set(),
                "problems": problems,
            },
            status_code=status_code,
        )

    async def _levels(self) -> Sequence[CoalitionLevel]:
        return (await self.catalog.coalition()).ladder
