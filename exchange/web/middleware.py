"""The middleware in front of every page: works out the visitor, adds the pages' language and
cookies (their security headers are every response's: :class:`exchange.web.security.SecurityHeaders`),
and answers the guard's refusals (unknown addresses, and domain errors no page
handled) with pages."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlencode

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exchange.errors import ErrorCode, ExchangeError, http_status
from exchange.services.people import SignedIn
from exchange.web.access import NOT_SERVED, SAFE_METHODS, NotServed, Refusal, SignInNeeded
from exchange.web.field_rules import FieldProblem
from exchange.web.i18n import DEFAULT, Language, from_accept_language, language_named
from exchange.web.security import (
    ANONYMOUS_CSRF_COOKIE,
    LANGUAGE_COOKIE,
    LANGUAGE_COOKIE_MAX_AGE,
    CookiePolicy,
)
from exchange.web.templating import LANGUAGE_PARAMETER, Pages
from exchange.web.visitors import Visitor, attach_visitor

#: A cookie value longer than this is nobody's session id or form token (both are 43 characters).
MAX_TOKEN_LENGTH = 128


def _cookie_name(set_cookie: str) -> str:
    return set_cookie.split("=", 1)[0].strip()


def _plausible(token: str | None) -> str | None:
    return token if token and len(token) <= MAX_TOKEN_LENGTH else None


def language_of(request: Request, cookies: CookiePolicy) -> Language:
    """The visitor's language: the one the address names (``?lang=``), else their cookie's,
    else the first of their browser's that the pages speak, else the default."""
    return (
        language_named(request.query_params.get(LANGUAGE_PARAMETER))
        or language_named(cookies.read(request.cookies, LANGUAGE_COOKIE))
        or from_accept_language(request.headers.get("accept-language"))
        or DEFAULT
    )


class Sessions(Protocol):
    """Where a group of pages finds the session a cookie names (people's, or members')."""

    async def resume(self, session_id: str) -> SignedIn | None: ...


class WebMiddleware:
    """For a group of pages (the console, the portal): ``sessions`` resumes the session the
    cookie ``session_cookie`` names, ``sign_in_path`` is where a visitor without a session is
    sent, ``layout`` the template refusals are shown in."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        sessions: Sessions,
        session_cookie: str,
        pages: Pages,
        cookies: CookiePolicy,
        sign_in_path: str,
        layout: str,
    ) -> None:
        self.app = app
        self.sessions = sessions
        self.session_cookie = session_cookie
        self.pages = pages
        self.cookies = cookies
        self.sign_in_path = sign_in_path
        self.layout = layout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        set_cookies = Response()
        chosen = language_named(request.query_params.get(LANGUAGE_PARAMETER))
        if chosen is not None:
            self.cookies.set(set_cookies, LANGUAGE_COOKIE, chosen.tag, max_age=LANGUAGE_COOKIE_MAX_AGE)
        language = language_of(request, self.cookies)
        session_id = _plausible(self.cookies.read(request.cookies, self.session_cookie))
        signed_in = await self.sessions.resume(session_id) if session_id else None
        if self.cookies.read(request.cookies, self.session_cookie) is not None and signed_in is None:
            self.cookies.delete(set_cookies, self.session_cookie)
        anonymous_token = _plausible(self.cookies.read(request.cookies, ANONYMOUS_CSRF_COOKIE))
        if signed_in is None and anonymous_token is None:
            anonymous_token = secrets.token_urlsafe(32)
            self.cookies.set(set_cookies, ANONYMOUS_CSRF_COOKIE, anonymous_token)
        attach_visitor(
            scope,
            Visitor(
                language=language,
                signed_in=signed_in,
                session_id=session_id if signed_in is not None else None,
                anonymous_csrf_token=anonymous_token or "",
            ),
        )
        extra_headers = {
            "Content-Language": language.tag,
            "Vary": "Cookie, Accept-Language",
        }
        cookie_headers = [value.decode("latin-1") for name, value in set_cookies.raw_headers if name == b"set-cookie"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra_headers.items():
                    if name not in headers:
                        headers[name] = value
                # A cookie the page set itself (a new session at sign-in) wins over ours.
                own = {_cookie_name(cookie) for cookie in headers.getlist("set-cookie")}
                for cookie in cookie_headers:
                    if _cookie_name(cookie) not in own:
                        headers.append("set-cookie", cookie)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Refusal as refusal:
            await self.refusal(request, refusal)(scope, receive, send_with_headers)
        except HTTPException as exc:  # the router's: no page at this address, or not this way
            if exc.status_code not in NOT_SERVED:
                raise
            await self.refusal(request, NotServed(exc))(scope, receive, send_with_headers)
        except ExchangeError as error:
            # Pages show the refusals they expect on their own forms; one that escapes a page
            # (no partners loaded yet, on an exchange just set up) is still a page saying why,
            # not a 500. An unavailable database is answered 503 as on every route.
            if error.code == ErrorCode.SERVICE_UNAVAILABLE:
                raise
            response = self.refused_page(request, "error", http_status(error.code), problem=FieldProblem.of(error))
            await response(scope, receive, send_with_headers)

    def refusal(self, request: Request, refusal: Refusal) -> Response:
        if isinstance(refusal, SignInNeeded) and request.method in SAFE_METHODS:
            wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{self.sign_in_path}?{urlencode({'next': wanted})}", status_code=303)
        problem = None if refusal.message is None else FieldProblem.read(refusal.message, field=refusal.field)
        return self.refused_page(request, refusal.reason, refusal.status_code, headers=refusal.headers, problem=problem)

    def refused_page(
        self,
        request: Request,
        reason: str,
        status_code: int,
        headers: Mapping[str, str] | None = None,
        *,
        problem: FieldProblem | None = None,
    ) -> Response:
        """``refused.html`` for ``reason``; ``problem``: why, as a rule the page says in the
        reader's language."""
        return self.pages.render(
            request,
            "refused.html",
            {"reason": reason, "problem": problem, "sign_in_path": self.sign_in_path, "layout": self.layout},
            status_code=status_code,
            headers=headers,
        )
