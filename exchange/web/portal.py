"""The members' portal. Members arrive through their partner's sign-in (an assertion, as for
member tokens); until that arrives the portal has its layout and a page saying how to come in."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from exchange.auth.scopes import Role
from exchange.web.access import PUBLIC, Page, roles
from exchange.web.templating import Pages

PORTAL_PATH = "/portal"
SIGN_IN_PATH = f"{PORTAL_PATH}/sign-in"
LAYOUT = "portal/layout.html"

MEMBERS = roles(Role.MEMBER)


class Portal:
    def __init__(self, *, pages: Pages) -> None:
        self.pages = pages

    def routes(self) -> list[Page]:
        return [
            Page("/", self.home, rule=MEMBERS),
            Page("/sign-in", self.sign_in, rule=PUBLIC),
        ]

    async def home(self, request: Request) -> Response:
        return self.pages.render(request, "portal/home.html")

    async def sign_in(self, request: Request) -> Response:
        return self.pages.render(request, "portal/sign_in.html")
