"""The web front end's cookies and response headers.

Cookies are ``HttpOnly``, ``SameSite=Strict`` and ``Path=/``; outside development they are
``Secure`` too, and take the ``__Host-`` prefix, which browsers accept only from HTTPS, for the
whole host, with no ``Domain``: no subdomain and no plain-HTTP page can plant or overwrite them.

Pages forbid inline scripts and styles (Content-Security-Policy ``script-src 'self'``), framing,
and caching (they are somebody's). Every response of the gateway carries those headers
(:class:`SecurityHeaders`), unless it sets one itself: an API answer or an error that no page
renders (a 500, a 404 for an address no route can hold) is framed, sniffed or cached no more
than a page. So do the answers the HTTP server writes itself, outside the application
(:func:`gateway_protocol`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal, cast
from urllib.parse import urlsplit, urlunsplit

from starlette.datastructures import URL, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from exchange.serving import BoundedHeadProtocol

SESSION_COOKIE = "exchange_session"
#: A member's portal session: a cookie of its own, so that it and a console session never
#: replace each other in one browser.
MEMBER_SESSION_COOKIE = "exchange_member"
#: A portal sign-in under way: the state the member's partner must send back.
SIGN_IN_STATE_COOKIE = "exchange_sign_in"
#: The portal page a member was sent to sign in from, to go on to once signed in.
SIGN_IN_NEXT_COOKIE = "exchange_sign_in_next"
ANONYMOUS_CSRF_COOKIE = "exchange_form"
LANGUAGE_COOKIE = "exchange_lang"
#: A language choice is kept for a year.
LANGUAGE_COOKIE_MAX_AGE = 365 * 24 * 3600

PAGE_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)


def page_headers(*, secure: bool, content_security_policy: str = PAGE_CSP) -> dict[str, str]:
    """Headers of every page (``secure``: the exchange runs behind HTTPS)."""
    headers = {
        "Content-Security-Policy": content_security_policy,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cache-Control": "no-store",
    }
    if secure:
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return headers


class SecurityHeaders:
    """ASGI middleware: each of :func:`page_headers` a response does not set itself.

    It wraps the whole application, Starlette's ``ServerErrorMiddleware`` included, so that the
    500 of an exception escaping a route, which no inner middleware sees, carries them too.
    """

    def __init__(self, app: ASGIApp, *, secure: bool) -> None:
        self.app = app
        self.headers = page_headers(secure=secure)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _header_lines(headers: Mapping[str, str]) -> bytes:
    return b"".join(b"%s: %s\r\n" % (name.lower().encode(), value.encode()) for name, value in headers.items())


class GatewayProtocol(BoundedHeadProtocol):
    """The gateway's HTTP/1.1: the answers the server writes itself, which no middleware sees,
    carry :func:`page_headers` as every answer of the application does. They are the 400 for
    bytes that are no HTTP request, the 408 and 431 of a refused head, and the 503 of a request
    beyond the connection limit: each went out framable, sniffable and cacheable."""

    secure: ClassVar[bool] = False
    answer_headers = _header_lines(page_headers(secure=False))

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        if app is service_unavailable:  # uvicorn's stand-in for the application beyond the limit
            # One ASGI interface, typed by uvicorn and by Starlette in two ways.
            app = cast(ASGI3Application, SecurityHeaders(cast(ASGIApp, app), secure=self.secure))
        super()._start_asgi_task(cycle, app)


class HttpsGatewayProtocol(GatewayProtocol):
    """:class:`GatewayProtocol` behind HTTPS (its answers carry ``Strict-Transport-Security``)."""

    secure = True
    answer_headers = _header_lines(page_headers(secure=True))


def gateway_protocol(*, secure: bool) -> type[BoundedHeadProtocol]:
    """The protocol class the gateway is served through (``secure``: behind HTTPS). A class of
    this module, not one made here: uvicorn hands it to each worker process by its name."""
    return HttpsGatewayProtocol if secure else GatewayProtocol


class RelativeRedirects:
    """ASGI middleware: a redirect to this site names the path (and query), not the host.

    Starlette's routers send an address missing its trailing slash (or with one too many) to the
    right one, written whole from the request's ``Host`` header (``http://evil.example/console/
    settlement/``), which the client chose: behind a proxy that passes the host on, or a cache
    that keeps an answer for other clients, the redirect sent people to that site, and over
    plain HTTP behind a TLS proxy. A ``Location`` on the request's own scheme and host loses
    them; one whose path begins ``//`` (which would read as another host) keeps them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_relative(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "location" in headers:  # the request's own address is worked out only then
                    headers["location"] = _by_path(headers["location"], scope)
            await send(message)

        await self.app(scope, receive, send_relative)


def _by_path(location: str, scope: Scope) -> str:
    """``location`` by its path if it is on the request's own scheme and host, else as it is."""
    here, there = urlsplit(str(URL(scope=scope))), urlsplit(location)
    if (there.scheme, there.netloc) != (here.scheme, here.netloc) or there.path.startswith("//"):
        return location
    return urlunsplit(("", "", there.path or "/", there.query, there.fragment))


@dataclass(frozen=True)
class CookiePolicy:
    secure: bool

    def name(self, base: str) -> str:
        return f"__Host-{base}" if self.secure else base

    def read(self, cookies: Mapping[str, str], base: str) -> str | None:
        return cookies.get(self.name(base))

    def set(
        self,
        response: Response,
        base: str,
        value: str,
        *,
        max_age: int | None = None,
        same_site: Literal["strict", "lax", "none"] = "strict",
    ) -> None:
        """Set a cookie; without ``max_age`` it lasts until the browser closes. Only the
        cookies a partner's post back must bring along (a portal sign-in's state, and the page
        to go on to) are not ``strict``."""
        response.set_cookie(
            self.name(base),
            value,
            max_age=max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite=same_site,
        )

    def delete(self, response: Response, base: str) -> None:
        response.delete_cookie(self.name(base), path="/", secure=self.secure, httponly=True, samesite="strict")
