"""The portal's home: the member's accounts as their partners report them now, linking
another account, and unlinking one (a page of its own asks to confirm first).

Every linked partner is asked at once; one that fails shows its failure on its own card while
the others show their balances and tiers. A card offers **Unlink** unless a rule keeps its
account linked whatever happens (the coalition point's, or a program the session signed in
through); a saga still running through it is told when the member confirms.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from exchange.errors import ExchangeError, http_status
from exchange.services.container import Services
from exchange.web.access import Page, form_fields, form_text
from exchange.web.portal.members import HOME_PATH, MEMBERS, member, member_session, writing
from exchange.web.said import Refusal
from exchange.web.templating import Pages, Place

NOTICES = ("linked", "unlinked", "unlinked-already")
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
            Page("/accounts/{program_id}/unlink", self.confirm_unlink, rule=MEMBERS),
            writing("/accounts/{program_id}/unlink", self.unlink, methods=["POST"]),
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

    async def confirm_unlink(self, request: Request) -> Response:
        """Ask before unlinking the member's account at the program: what goes and what stays."""
        return await self._unlink_page(request, request.path_params["program_id"], None)

    async def unlink(self, request: Request) -> Response:
        program_id = request.path_params["program_id"]
        member_ref = form_text(await request.form(), "member_ref")
        try:
            unlinked = await self.services.members.unlink_account(
                member(request), program_id, member_ref, signed_in_through=member_session(request).asserted_by
            )
        except ExchangeError as problem:
            return await self._unlink_page(
                request, program_id, member_ref, problem=problem, status_code=http_status(problem.code)
            )
        notice = "unlinked-already" if unlinked.already else "unlinked"
        return RedirectResponse(f"{HOME_PATH}?notice={notice}", status_code=303)

    async def _unlink_page(
        self,
        request: Request,
        program_id: str,
        member_ref: str | None,
        *,
        problem: ExchangeError | None = None,
        status_code: int = 200,
    ) -> Response:
        """The confirmation, or why the account stays linked; the form only while the account
        ``member_ref`` (asking first: the one linked at the program now) is linked and no rule
        keeps it so."""
        caller = member(request)
        catalog = await self.services.catalog.cache.get()
        view = await self.services.members.me(caller)
        link = next(
            (link for link in view.accounts if link.program_id == program_id and member_ref in (None, link.member_ref)),
            None,
        )
        if program_id not in catalog.programs or (link is None and member_ref is None):
            raise HTTPException(404)
        kept = self.services.members.kept_linked(
            caller, [link] if link else [], signed_in_through=member_session(request).asserted_by
        )
        return self.pages.render(
            request,
            "portal/unlink.html",
            {
                "program": catalog.programs[program_id],
                "member_ref": link.member_ref if link else member_ref,
                "linked": link is not None,
                "kept": kept.get(program_id),
                "problem": Refusal.of(problem, catalog.programs) if problem else None,
            },
            status_code=status_code,
        )

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
        kept = self.services.members.kept_linked(signed_in.principal, view.accounts, signed_in_through=asserted_by)
        return self.pages.render(
            request,
            "portal/accounts.html",
            {
                "accounts": accounts,
                # When the member's coalition points lapse, soonest first (as GraphQL's
                # expiringPoints): no partner holds them, so no other page says it.
                "expiring": await self.services.coalition.expiring_points(member(request)),
                "spends": {program_id for program_id in asserted_by if signed_in.may_spend(program_id)},
                "unlinkable": {account.program_id for account in view.accounts} - kept.keys(),
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
