"""The web front end's pages, read off an application as Starlette routes them."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Mount, Route, Router

from exchange.web.access import Page
from exchange.web.middleware import WebMiddleware


def web_pages(app: Starlette) -> list[tuple[str, str, Page]]:
    """Every page the app serves, as ``(path, method, page)`` (HEAD left out: it is GET's)."""
    found: list[tuple[str, str, Page]] = []
    for route in app.routes:
        # The consoles are mounted under their prefixes; the front door is a route of its own.
        if isinstance(route, (Mount, Route)) and isinstance(route.app, WebMiddleware):
            prefix = route.path if isinstance(route, Mount) else ""
            router = route.app.app
            assert isinstance(router, Router)
            for page in router.routes:
                assert isinstance(page, Page)
                for method in sorted((page.methods or set()) - {"HEAD"}):
                    found.append((prefix + page.path, method, page))
    return found
