"""The portal's home: the member's accounts as their partners report them now.

Every linked partner is asked at once; one that fails shows its failure on its own card while
the others show their balances and tiers.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from exchange.services.container import Services
from exchange.web.access import Page
from exchange.web.portal.members import MEMBERS, member, member_session
from exchange.web.templating import Pages


class AccountPages:
    def __init__(self, *, services: Services, pages: Pages) -> None:
        self.services = services
        self.pages = pages

    def routes(self) -> list[Page]:
        return [Page("/", self.home, rule=MEMBERS)]

    async def home(self, request: Request) -> Response:
        caller = member(request)
        view = await self.services.members.me(caller)
        accounts = await self.services.members.accounts(view.member.id, view.accounts)
        partners = await self.services.portal.partners()
        signed_in = member_session(request)
        return self.pages.render(
            request,
            "portal/accounts.html",
            {
                "accounts": accounts,
                "asserted_by": signed_in.asserted_by,
                "other_partners": [
                    program
                    for program in partners
                    if program.id not in signed_in.asserted_by
                    and any(account.link.program_id == program.id for account in accounts)
                ],
            },
        )
