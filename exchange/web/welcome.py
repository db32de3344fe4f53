"""The exchange's front door: the bare address (``/``) says where its three front ends are,
instead of answering whoever opens it first that there is no page here."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from exchange.web.access import PUBLIC, Page
from exchange.web.templating import Pages

WELCOME_PATH = "/"


class Welcome:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    def routes(self) -> list[Page]:
        return [Page(WELCOME_PATH, self.page, rule=PUBLIC)]

    async def page(self, request: Request) -> Response:
        return self.pages.render(request, "welcome.html")
