"""The console's pages for settlement staff, admins and partners' staff: sign-in, sign-out and
the home page. The pages of each capability hang below ``/console/`` as they arrive."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from exchange.auth import ratelimit
from exchange.auth.scopes import Role
from exchange.programs.catalog import CatalogCache
from exchange.services.people import Locked, Opened, PeopleService
from exchange.web.access import PUBLIC, Page, form_text, roles, wanted_page
from exchange.web.security import ANONYMOUS_CSRF_COOKIE, SESSION_COOKIE, CookiePolicy
from exchange.web.templating import Pages
from exchange.web.visitors import visitor_of

CONSOLE_PATH = "/console"
HOME_PATH = f"{CONSOLE_PATH}/"
SIGN_IN_PATH = f"{CONSOLE_PATH}/sign-in"
LAYOUT = "console/layout.html"
SIGN_OUT_PATH = f"{CONSOLE_PATH}/sign-out"

#: Everyone who signs in to the console.
STAFF = roles(Role.SETTLEMENT, Role.ADMIN, Role.PARTNER)

#: Notices the sign-in page shows, by the ``notice`` query parameter.
NOTICES = ("signed-out",)


def after_sign_in(wanted: str | None) -> str:
    """Where to go after signing in to the console (:func:`~exchange.web.access.wanted_page`)."""
    return wanted_page(wanted, home=HOME_PATH, sign_in=SIGN_IN_PATH)


class Console:
    def __init__(self, *, people: PeopleService, pages: Pages, cookies: CookiePolicy, catalog: CatalogCache) -> None:
        self.people = people
        self.pages = pages
        self.cookies = cookies
        self.catalog = catalog

    def routes(self) -> list[Page]:
        return [
            Page("/", self.home, rule=STAFF),
            Page("/sign-in", self.sign_in_form, rule=PUBLIC),
            Page("/sign-in", self.sign_in, rule=PUBLIC, methods=["POST"]),
            Page("/sign-out", self.sign_out, rule=STAFF, methods=["POST"]),
        ]

    async def home(self, request: Request) -> Response:
        principal = visitor_of(request).principal
        assert principal is not None
        catalog = await self.catalog.get()
        program = catalog.programs.get(principal.program_id) if principal.program_id else None
        return self.pages.render(request, "console/home.html", {"program": program, "currency": catalog.currency})

    async def sign_in_form(self, request: Request) -> Response:
        wanted = request.query_params.get("next")
        if visitor_of(request).principal is not None:
            return RedirectResponse(after_sign_in(wanted), status_code=303)
        notice = request.query_params.get("notice")
        return self._sign_in_page(
            request, next_path=after_sign_in(wanted), notice=notice if notice in NOTICES else None
        )

    async def sign_in(self, request: Request) -> Response:
        form = await request.form()
        username, next_path = form_text(form, "username"), after_sign_in(form_text(form, "next"))
        outcome = await self.people.sign_in(
            username,
            form_text(form, "password"),
            form_text(form, "code"),
            address=ratelimit.caller_address(request.client.host if request.client else None),
            replacing=visitor_of(request).session_id,
        )
        if isinstance(outcome, Opened):
            response = RedirectResponse(next_path, status_code=303)
            self.cookies.set(response, SESSION_COOKIE, outcome.session_id)
            self.cookies.delete(response, ANONYMOUS_CSRF_COOKIE)
            return response
        if isinstance(outcome, Locked):
            return self._sign_in_page(
                request,
                next_path=next_path,
                username=username,
                retry_after=outcome.retry_after,
                status_code=429,
                headers={"Retry-After": str(outcome.retry_after)},
            )
        return self._sign_in_page(request, next_path=next_path, username=username, refused=True, status_code=401)

    async def sign_out(self, request: Request) -> Response:
        session_id = visitor_of(request).session_id
        if session_id is not None:
            await self.people.sign_out(session_id)
        response = RedirectResponse(f"{SIGN_IN_PATH}?notice=signed-out", status_code=303)
        self.cookies.delete(response, SESSION_COOKIE)
        return response

    def _sign_in_page(
        self,
        request: Request,
        *,
        next_path: str,
        username: str = "",
        notice: str | None = None,
        refused: bool = False,
        retry_after: int | None = None,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Response:
        return self.pages.render(
            request,
            "console/sign_in.html",
            {
                "next_path": next_path,
                "username": username[:64],
                "notice": notice,
                "refused": refused,
                "retry_after": retry_after,
                "sign_in_path": SIGN_IN_PATH,
            },
            status_code=status_code,
            headers=headers,
        )
