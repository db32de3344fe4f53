"""The risk review console (``/console/risk/``), for settlement staff: the conversions and
redemptions a program's risk gates hold, each approved or rejected with a reason, and the latest
decisions.

The pages call the risk service under the rules GraphQL declares for the same work: reading
needs ``settlement:read`` (``heldConversions``, ``heldRedemptions``, ``riskDecisions``), deciding
needs ``settlement:write`` (``approveConversion``, ``rejectConversion``, ``approveRedemption``,
``rejectRedemption``). A decision redirects to the list, which says what became of the
conversion or redemption; a refusal (a reason missing or too long, one decided already)
re-renders the list with the reason, and changes nothing.

Programs are shown by name. A reason the exchange wrote from a template
(:mod:`exchange.risk.reasons`) is said in the reader's language, with the program names and
figures it was written with (:mod:`exchange.web.said`); a staff member's words are shown as written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from exchange.auth.scopes import Scope
from exchange.conversions.models import Conversion
from exchange.errors import BadUserInput, ExchangeError, http_status
from exchange.programs.catalog import CatalogCache
from exchange.programs.models import Program
from exchange.rewards.models import Redemption
from exchange.risk.models import Decision, RiskDecision
from exchange.services.holds import REASON_MAX_LENGTH
from exchange.services.risk import RiskService
from exchange.text import text_problem
from exchange.web.access import Page, form_text, requires
from exchange.web.said import Said
from exchange.web.templating import Pages
from exchange.web.visitors import visitor_of

BASE = "/console/risk"
#: Who reads the review: as ``heldConversions``, ``heldRedemptions`` and ``riskDecisions``.
READS = requires(Scope.SETTLEMENT_READ)
#: Who decides: as ``approveConversion``, ``rejectConversion`` and their redemption twins.
WRITES = requires(Scope.SETTLEMENT_WRITE)
HELD_PAGE = 100
DECISIONS_PAGE = 20
#: A conversion's or redemption's id is a UUID; anything longer is refused before a service sees it.
ID_LENGTH = 36


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    """A decision as the log shows it: its ``row``, and its reason as the page says it (a
    rejection's reason is the staff member's own words, whatever they look like)."""

    row: RiskDecision
    reason: Said

    @classmethod
    def of(cls, row: RiskDecision, programs: Mapping[str, Program]) -> LoggedDecision:
        if row.decision == Decision.REJECT.value:
            return cls(row, Said.person(row.reason))
        return cls(row, Said.of(row.reason, programs))


class RiskConsole:
    def __init__(self, *, risk: RiskService, catalog: CatalogCache, pages: Pages) -> None:
        self.risk = risk
        self.catalog = catalog
        self.pages = pages

    def routes(self) -> list[Page]:
        return [
            Page("/risk/", self.held, rule=READS),
            Page("/risk/{conversion_id}/approve", self.approve, rule=WRITES, methods=["POST"]),
            Page("/risk/{conversion_id}/reject", self.reject, rule=WRITES, methods=["POST"]),
            Page("/risk/redemptions/{redemption_id}/approve", self.approve_redemption, rule=WRITES, methods=["POST"]),
            Page("/risk/redemptions/{redemption_id}/reject", self.reject_redemption, rule=WRITES, methods=["POST"]),
        ]

    async def held(self, request: Request, *, refused: ExchangeError | None = None) -> Response:
        decided = request.query_params.get("decided", "")
        programs = (await self.catalog.get()).programs
        return self.pages.render(
            request,
            "console/risk/held.html",
            {
                "held": (await self.risk.held(first=HELD_PAGE)).items,
                "held_redemptions": (await self.risk.held_redemptions(first=HELD_PAGE)).items,
                "decisions": [
                    LoggedDecision.of(row, programs) for row in (await self.risk.decisions(first=DECISIONS_PAGE)).items
                ],
                "programs": programs,
                "decided": decided if len(decided) <= ID_LENGTH and decided.isprintable() else "",
                "error": refused.message if refused else None,
                "can_write": WRITES.allows(visitor_of(request).principal),
                "reason_max_length": REASON_MAX_LENGTH,
            },
            status_code=http_status(refused.code) if refused else 200,
        )

    async def approve(self, request: Request) -> Response:
        return await self._decide(
            request, lambda: self.risk.approve(_row_id(request, "conversion_id"), staff=_actor(request))
        )

    async def reject(self, request: Request) -> Response:
        form = await request.form()
        return await self._decide(
            request,
            lambda: self.risk.reject(
                _row_id(request, "conversion_id"), staff=_actor(request), reason=form_text(form, "reason")
            ),
        )

    async def approve_redemption(self, request: Request) -> Response:
        return await self._decide(
            request, lambda: self.risk.approve_redemption(_row_id(request, "redemption_id"), staff=_actor(request))
        )

    async def reject_redemption(self, request: Request) -> Response:
        form = await request.form()
        return await self._decide(
            request,
            lambda: self.risk.reject_redemption(
                _row_id(request, "redemption_id"), staff=_actor(request), reason=form_text(form, "reason")
            ),
        )

    async def _decide(self, request: Request, decide: Callable[[], Awaitable[Conversion | Redemption]]) -> Response:
        """Back to the list, which says what became of it; a refusal re-renders the list with its reason."""
        try:
            decided = await decide()
        except ExchangeError as refused:
            return await self.held(request, refused=refused)
        return RedirectResponse(f"{BASE}/?{urlencode({'decided': decided.id})}", status_code=303)


def _row_id(request: Request, name: str) -> str:
    row_id: str = request.path_params[name]
    if problem := text_problem(row_id, ID_LENGTH):
        raise BadUserInput(f"id {problem}", field="id")
    return row_id


def _actor(request: Request) -> str:
    principal = visitor_of(request).principal
    assert principal is not None
    return principal.client_id  # ``console:<username>``, as the settlement pages record it
