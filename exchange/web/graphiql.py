"""GraphiQL, served with its assets from the package, so that it works with no network but
the exchange's own: the GraphQL view answers a browser's GET with this page.

It runs under the consoles' Content-Security-Policy (no inline script or style): GraphiQL
styles its editors through the DOM, which the policy allows. Its stylesheet embeds its fonts as
``data:`` URLs, which the policy admits for this page.
"""

from __future__ import annotations

from functools import cache

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

from exchange.web.security import PAGE_CSP, page_headers
from exchange.web.static import StaticAssets
from exchange.web.templating import TEMPLATES_DIR

GRAPHIQL_CSP = f"{PAGE_CSP}; font-src 'self' data:"


@cache
def graphiql_html() -> str:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(default=True), undefined=StrictUndefined
    )
    return environment.get_template("graphiql.html").render(static_url=StaticAssets().url)


def graphiql_response() -> HTMLResponse:
    # The page is the same for everyone; "no-cache" lets a browser keep it and ask whether it changed.
    headers = {**page_headers(secure=False, content_security_policy=GRAPHIQL_CSP), "Cache-Control": "no-cache"}
    return HTMLResponse(graphiql_html(), headers=headers)
