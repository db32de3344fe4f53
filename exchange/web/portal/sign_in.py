"""Members signing in to the portal through a partner, and out again.

``GET /portal/sign-in/{program}`` starts a sign-in (its signed ticket goes into a cookie that a
post from the partner's site brings along; nothing is written) and sends the browser to the partner's sign-in page; the
partner posts it back to ``/portal/sign-in/return`` with the state and an assertion. The
session cookie is ``Strict``, which a browser arriving from another site would not send on,
so the return page moves on to the portal by a refresh and a link of its own.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from exchange.services.people import Opened
from exchange.services.portal import Joined, PortalSignInService, SignInFailed, SignInProblem
from exchange.web.access import PUBLIC, Page, form_text, wanted_page
from exchange.web.portal.members import HOME_PATH, MEMBERS, SIGN_IN_PATH
from exchange.web.security import (
    ANONYMOUS_CSRF_COOKIE,
    MEMBER_SESSION_COOKIE,
    SIGN_IN_NEXT_COOKIE,
    SIGN_IN_STATE_COOKIE,
    CookiePolicy,
)
from exchange.web.templating import Pages
from exchange.web.visitors import visitor_of

SIGN_OUT_PATH = "/portal/sign-out"
#: Notices the sign-in page shows, by the ``notice`` query parameter.
NOTICES = ("signed-out",)
STATE_COOKIE_SECONDS = 600
#: What the page to go on to keeps as it is in its cookie; the rest is percent-encoded, as a
#: browser asks for the page anyway: a cookie holds no text beyond Latin-1 (the header cannot be
#: written), and a ``;`` would end its value early.
WANTED_SAFE = ":/%#?=@[]!$&'()*+"


class SignInPages:
    def __init__(self, *, sessions: PortalSignInService, pages: Pages, cookies: CookiePolicy) -> None:
        self.sessions = sessions
        self.pages = pages
        self.cookies = cookies

    def routes(self) -> list[Page]:
        return [
            Page("/sign-in", self.choose, rule=PUBLIC),
            # The partner posts the member back: the sign-in's state, bound to this browser's
            # cookie, is what proves the request is the browser's own.
            Page("/sign-in/return", self.back, rule=PUBLIC, methods=["POST"], csrf=False),
            # Any other way to the return address (a partner sending the member back by GET, the
            # assertion in the URL) is not possible there: not the next route's program "return".
            Page("/sign-in/return", self.not_posted, rule=PUBLIC, methods=["GET"]),
            # A link, as "sign in with …" links are: the pages' CSP lets forms post only to the
            # exchange itself, and a form's redirect to the partner would count as one.
            Page("/sign-in/{program}", self.start, rule=PUBLIC),
            Page("/sign-out", self.sign_out, rule=MEMBERS, methods=["POST"]),
        ]

    async def choose(self, request: Request) -> Response:
        notice = request.query_params.get("notice")
        return await self._choose_page(request, notice=notice if notice in NOTICES else None)

    @staticmethod
    def _wanted(wanted: str | None) -> str:
        """The portal page to go on to once signed in (the one a member was sent here from)."""
        return wanted_page(wanted, home=HOME_PATH, sign_in=SIGN_IN_PATH)

    async def not_posted(self, request: Request) -> Response:
        raise HTTPException(405, headers={"Allow": "POST"})

    async def start(self, request: Request) -> Response:
        program_id = request.path_params["program"]
        if not any(program.id == program_id for program in await self.sessions.partners()):
            return await self._choose_page(request, status_code=404)
        visitor = visitor_of(request)
        started = await self.sessions.start(program_id, visitor.session_id, language=visitor.language.tag)
        response = RedirectResponse(started.url, status_code=303)
        # The partner's page posts the member back from its own site: over HTTPS the cookie
        # must be SameSite=None to come along (Secure and __Host- then), Lax on a laptop.
        same_site: Literal["none", "lax"] = "none" if self.cookies.secure else "lax"
        self.cookies.set(
            response, SIGN_IN_STATE_COOKIE, started.ticket, max_age=STATE_COOKIE_SECONDS, same_site=same_site
        )
        wanted = self._wanted(request.query_params.get("next"))
        if wanted == HOME_PATH:
            self.cookies.delete(response, SIGN_IN_NEXT_COOKIE)
        else:
            self.cookies.set(
                response,
                SIGN_IN_NEXT_COOKIE,
                quote(wanted, safe=WANTED_SAFE),
                max_age=STATE_COOKIE_SECONDS,
                same_site=same_site,
            )
        return response

    async def back(self, request: Request) -> Response:
        form = await request.form()
        outcome = await self.sessions.finish(
            state=form_text(form, "state"),
            ticket=self.cookies.read(request.cookies, SIGN_IN_STATE_COOKIE),
            assertion=form_text(form, "assertion") or None,
        )
        # Where the member was going; a member signed in already (adding a program) whose
        # sign-in failed is offered it as well as another try.
        wanted = self._wanted(self.cookies.read(request.cookies, SIGN_IN_NEXT_COOKIE))
        if isinstance(outcome, SignInFailed):
            response = await self._choose_page(request, problem=outcome.problem, status_code=400, wanted=wanted)
        else:
            response = self.pages.render(
                request, "portal/signed_in.html", {"home_path": wanted, "going_on": wanted != HOME_PATH}
            )
            if isinstance(outcome, Opened | Joined):
                self.cookies.set(response, MEMBER_SESSION_COOKIE, outcome.session_id)
                self.cookies.delete(response, ANONYMOUS_CSRF_COOKIE)
        # Only the return that carries this sign-in's state ends it: any site may post here
        # (the partner's must), and one without the state must not end a member's sign-in.
        if outcome != SignInFailed(SignInProblem.STATE):
            self.cookies.delete(response, SIGN_IN_STATE_COOKIE)
            self.cookies.delete(response, SIGN_IN_NEXT_COOKIE)
        return response

    async def sign_out(self, request: Request) -> Response:
        session_id = visitor_of(request).session_id
        if session_id is not None:
            await self.sessions.sign_out(session_id)
        response = RedirectResponse(f"{SIGN_IN_PATH}?notice=signed-out", status_code=303)
        self.cookies.delete(response, MEMBER_SESSION_COOKIE)
        return response

    async def _choose_page(
        self,
        request: Request,
        *,
        notice: str | None = None,
        problem: SignInProblem | None = None,
        status_code: int = 200,
        wanted: str | None = None,
    ) -> Response:
        return self.pages.render(
            request,
            "portal/sign_in.html",
            {
                "partners": await self.sessions.partners(),
                "notice": notice,
                "problem": problem.value if problem else None,
                "not_found": status_code == 404,
                # Where the member was going: the partners' links carry it through the sign-in.
                "wanted": wanted or self._wanted(request.query_params.get("next")),
                "home_path": HOME_PATH,
            },
            status_code=status_code,
        )
