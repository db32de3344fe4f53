"""The portal's home: the member's accounts as their partners report them now, and linking
another account.

Every linked partner is asked at once; one that fails shows its failure on its own card while
the others show their balances and tiers.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from exchange.errors import ExchangeError
from exchange.services.container import Services
from exchange.web.access import Page, form_fields, form_text
from exchange.web.portal.members import HOME_PATH, MEMBERS, member, member_session, writing
from exchange.web.said import Refusal
from exchange.web.templating import Pages, Place

NOTICES = ("linked",)
#: The link form's fields kept when it is refused: all but the verification code, a secret
#: neither sent back in the page nor put in its language links' addresses.
LINK_FIELDS = ("program", "member_ref", "name")


class AccountPages:
    def __init__(self, *, services: Services, pages: Pages) -> None:
        self.services = services
        self.pages = pages

    def routes(self) -> list[Page]:
        return [
            Page("/", self.home, rule=MEMBERS),
            writing("/accounts/link", self.link, methods=["POST"]),
        ]

    async def home(self, request: Request) -> Response:
        notice = request.query_params.get("notice")
        entered = form_fields(request.query_params, LINK_FIELDS)
        return await self._home(request, notice=notice if notice in NOTICES else None, entered=entered)

    async def link(self, request: Request) -> Response:
        form = await request.form()
        try:
            await self.services.members.link_account(
                member(request),
                form_text(form, "program"),
                form_text(form, "member_ref").strip(),
                form_text(form, "verification"),
                name=form_text(form, "name").strip() or None,
            )
        except ExchangeError as problem:
            entered = form_fields(form, LINK_FIELDS)
            return await self._home(request, problem=problem, entered=entered, status_code=400)
        return RedirectResponse(f"{HOME_PATH}?notice=linked", status_code=303)

    async def _home(
        self,
        request: Request,
        *,
        notice: str | None = None,
        problem: ExchangeError | None = None,
        entered: dict[str, str],
        status_code: int = 200,
    ) -> Response:
        view = await self.services.members.me(member(request))
        accounts = await self.services.members.accounts(view.member.id, view.accounts, view.member.markers)
        linked = {account.program_id for account in view.accounts}
        catalog = await self.services.catalog.cache.get()
        signs_in = {program.id for program in await self.services.portal.partners()}
        signed_in = member_session(request)
        asserted_by = signed_in.asserted_by
        return self.pages.render(
            request,
            "portal/accounts.html",
            {
                "accounts": accounts,
                "spends": {program_id for program_id in asserted_by if signed_in.may_spend(program_id)},
                "other_partners": [
                    catalog.programs[program_id]
                    for program_id in sorted(linked - asserted_by)
                    if program_id in signs_in
                ],
                "unlinked": sorted(
                    (program for program in catalog.programs.values() if program.id not in linked),
                    key=lambda program: program.name,
                ),
                "notice": notice,
                "problem": Refusal.of(problem, catalog.programs) if problem else None,
                "entered": entered,
            },
            status_code=status_code,
            # A link refused after its POST: switching language shows the form again, as filled in.
            place=Place(entered, path=HOME_PATH),
        )
