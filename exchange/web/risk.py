"""The risk review console (``/console/risk/``), for settlement staff: the conversions a
program's risk gates hold, each approved or rejected with a reason, and the latest decisions.

The pages call the risk service under the rules GraphQL declares for the same work: reading
needs ``settlement:read`` (``heldConversions``, ``riskDecisions``), deciding needs
``settlement:write`` (``approveConversion``, ``rejectConversion``). A decision redirects to the
list, which says what became of the conversion; a refusal (a reason missing or too long, a
conversion decided already) re-renders the list with the reason, and changes nothing.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from exchange.auth.scopes import Scope
from exchange.conversions.holds import REASON_MAX_LENGTH
from exchange.errors import BadUserInput, ExchangeError, http_status
from exchange.services.risk import RiskService
from exchange.text import text_problem
from exchange.web.access import Page, form_text, requires
from exchange.web.templating import Pages
from exchange.web.visitors import visitor_of

BASE = "/console/risk"
#: Who reads the review: as ``heldConversions`` and ``riskDecisions``.
READS = requires(Scope.SETTLEMENT_READ)
#: Who decides: as ``approveConversion`` and ``rejectConversion``.
WRITES = requires(Scope.SETTLEMENT_WRITE)
HELD_PAGE = 100
DECISIONS_PAGE = 20
#: A conversion id is a UUID; anything longer is refused before a service sees it.
ID_LENGTH = 36


class RiskConsole:
    def __init__(self, *, risk: RiskService, pages: Pages) -> None:
        self.risk = risk
        self.pages = pages

    def routes(self) -> list[Page]:
        return [
            Page("/risk/", self.held, rule=READS),
            Page("/risk/{conversion_id}/approve", self.approve, rule=WRITES, methods=["POST"]),
            Page("/risk/{conversion_id}/reject", self.reject, rule=WRITES, methods=["POST"]),
        ]

    async def held(self, request: Request, *, refused: ExchangeError | None = None) -> Response:
        decided = request.query_params.get("decided", "")
        return self.pages.render(
            request,
            "console/risk/held.html",
            {
                "held": await self.risk.held(first=HELD_PAGE),
                "decisions": await self.risk.decisions(first=DECISIONS_PAGE),
                "decided": decided if len(decided) <= ID_LENGTH and decided.isprintable() else "",
                "error": refused.message if refused else None,
                "can_write": WRITES.allows(visitor_of(request).principal),
                "reason_max_length": REASON_MAX_LENGTH,
            },
            status_code=http_status(refused.code) if refused else 200,
        )

    async def approve(self, request: Request) -> Response:
        try:
            conversion = await self.risk.approve(_conversion_id(request), staff=_actor(request))
        except ExchangeError as refused:
            return await self.held(request, refused=refused)
        return _back_to_list(conversion.id)

    async def reject(self, request: Request) -> Response:
        form = await request.form()
        try:
            conversion = await self.risk.reject(
                _conversion_id(request), staff=_actor(request), reason=form_text(form, "reason")
            )
        except ExchangeError as refused:
            return await self.held(request, refused=refused)
        return _back_to_list(conversion.id)


def _conversion_id(request: Request) -> str:
    conversion_id: str = request.path_params["conversion_id"]
    if problem := text_problem(conversion_id, ID_LENGTH):
        raise BadUserInput(f"id {problem}", field="id")
    return conversion_id


def _actor(request: Request) -> str:
    principal = visitor_of(request).principal
    assert principal is not None
    return principal.client_id  # ``console:<username>``, as the settlement pages record it


def _back_to_list(conversion_id: str) -> Response:
    return RedirectResponse(f"{BASE}/?{urlencode({'decided': conversion_id})}", status_code=303)
