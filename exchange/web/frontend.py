"""The web front end, assembled: the front door, static files, the console and the portal, for
``create_app``."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import ASGIApp

from exchange.errors import ConfigurationError
from exchange.programs.catalog import CatalogCache
from exchange.services.container import Services
from exchange.services.people import PeopleService
from exchange.services.settlement import SettlementService
from exchange.settings import Settings
from exchange.web import console, portal
from exchange.web.access import Page
from exchange.web.middleware import Sessions, WebMiddleware, language_of
from exchange.web.partner import PartnerConsole
from exchange.web.risk import RiskConsole
from exchange.web.security import MEMBER_SESSION_COOKIE, SESSION_COOKIE, CookiePolicy
from exchange.web.settlement import SettlementConsole
from exchange.web.static import STATIC_PATH, StaticAssets
from exchange.web.templating import Pages
from exchange.web.visitors import Visitor, attach_visitor
from exchange.web.waiting import PartnersWaiting
from exchange.web.welcome import WELCOME_PATH, Welcome


class WebFrontEnd:
    def __init__(
        self,
        *,
        people: PeopleService,
        catalog: CatalogCache,
        settings: Settings,
        settlement: SettlementService,
        services: Services,
    ) -> None:
        self.people = people
        self.assets = StaticAssets()
        self.pages = Pages(self.assets, settings.timezone)
        self.cookies = CookiePolicy(secure=settings.served_over_https)
        self.console = console.Console(people=people, pages=self.pages, cookies=self.cookies, catalog=catalog)
        self.portal = portal.Portal(services=services, pages=self.pages, cookies=self.cookies)
        self.settlement = SettlementConsole(settlement=settlement, pages=self.pages, catalog=catalog)
        self.partner = PartnerConsole(services=services, pages=self.pages)
        self.risk = RiskConsole(risk=services.risk, catalog=catalog, pages=self.pages)
        self.partners_waiting = PartnersWaiting(
            late=services.late, retrying=services.retrying, catalog=catalog, pages=self.pages
        )
        self.welcome = Welcome(self.pages)

    @classmethod
    def for_services(cls, services: Services) -> WebFrontEnd:
        return cls(
            people=services.people,
            catalog=services.catalog.cache,
            settings=services.settings,
            settlement=services.settlement,
            services=services,
        )

    def routes(self) -> list[BaseRoute]:
        return [
            Route(
                WELCOME_PATH,
                self.guarded(self.welcome.routes(), sign_in_path=console.SIGN_IN_PATH, layout=console.LAYOUT),
            ),
            Mount(STATIC_PATH, app=self.assets.app(), name="static"),
            Mount(
                console.CONSOLE_PATH,
                app=self.guarded(
                    self.console.routes()
                    + self.settlement.routes()
                    + self.risk.routes()
                    + self.partners_waiting.routes()
                    + self.partner.routes(),
                    sign_in_path=console.SIGN_IN_PATH,
                    layout=console.LAYOUT,
                ),
            ),
            Mount(
                portal.PORTAL_PATH,
                app=self.guarded(
                    self.portal.routes(),
                    sign_in_path=portal.SIGN_IN_PATH,
                    layout=portal.LAYOUT,
                    sessions=self.portal.sessions,
                    session_cookie=MEMBER_SESSION_COOKIE,
                ),
            ),
        ]

    def unrouted_page(self, request: Request, error: HTTPException) -> Response:
        """The page for an address outside the consoles that no route serves (404), or not with
        that method (405, with ``Allow``), in the console's style and the visitor's language,
        as the consoles' own refusals are. An unknown address reads no session: the page shows
        nobody signed in."""
        language = language_of(request, self.cookies)
        attach_visitor(
            request.scope, Visitor(language=language, signed_in=None, session_id=None, anonymous_csrf_token="")
        )
        return self.pages.render(
            request,
            "refused.html",
            {
                "reason": "not-found" if error.status_code == 404 else "method",
                "sign_in_path": console.SIGN_IN_PATH,
                "layout": console.LAYOUT,
            },
            status_code=error.status_code,
            headers={
                "Content-Language": language.tag,
                "Vary": "Accept, Cookie, Accept-Language",
                **(error.headers or {}),
            },
        )

    def guarded(
        self,
        routes: Sequence[BaseRoute],
        *,
        sign_in_path: str,
        layout: str,
        sessions: Sessions | None = None,
        session_cookie: str = SESSION_COOKIE,
    ) -> ASGIApp:
        """``routes`` behind the web middleware; each must be a :class:`Page`, with its rule.
        Sessions are people's (the console's) unless ``sessions`` says otherwise."""
        for route in routes:
            if not isinstance(route, Page):
                raise ConfigurationError(f"{route!r} is not a Page: every web route declares who may open it")
        return WebMiddleware(
            Router(list(routes)),
            sessions=sessions or self.people,
            session_cookie=session_cookie,
            pages=self.pages,
            cookies=self.cookies,
            sign_in_path=sign_in_path,
            layout=layout,
        )
