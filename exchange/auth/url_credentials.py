"""Credentials never travel in a URL.

URLs are written to access logs, proxies' logs and browser history, and leak in ``Referer``
headers. RFC 6749 §2.3.1 keeps client credentials out of the request URI, and RFC 6750
§2.3's ``access_token`` query parameter is one the exchange does not take. So a request to
the gateway whose query string names a credential is refused with ``400`` before anything
reads it, saying where the credential belongs; the client should treat it as leaked. (The
access log writes no query value in any case: :mod:`exchange.access_log`.)
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from exchange.errors import ErrorCode

#: Query parameters refused wherever they appear (compared without regard to case).
CREDENTIAL_PARAMETERS = frozenset(
    {
        "access_token",
        "api_key",
        "assertion",
        "client_assertion",
        "client_secret",
        "id_token",
        "password",
        "refresh_token",
        "secret",
        "token",
    }
)
OAUTH_PATH_PREFIX = "/oauth/"


def credentials_in_query(query_string: bytes) -> list[str]:
    """The credential parameters ``query_string`` names, sorted."""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    return sorted({name.lower() for name, _ in pairs} & CREDENTIAL_PARAMETERS)


def refusal(path: str, names: list[str]) -> Response:
    """An OAuth error body on the OAuth endpoints, a GraphQL error body elsewhere."""
    named = ", ".join(names)
    if path.startswith(OAUTH_PATH_PREFIX):
        return JSONResponse(
            {
                "error": "invalid_request",
                "error_description": f"{named} must not be sent in the URL: send credentials in the "
                "form-encoded request body or the Authorization header",
            },
            status_code=400,
            headers={"Cache-Control": "no-store"},
        )
    message = (
        f"{named} must not be sent in the URL: send the access token as Authorization: Bearer <token>"
        if "access_token" in names
        else f"{named} must not be sent in the URL: send credentials in a header or the request body"
    )
    headers = {"Cache-Control": "no-store"}
    if "access_token" in names:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_request"'  # RFC 6750 §3.1
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": ErrorCode.BAD_USER_INPUT.value, "field": names[0]}}]},
        status_code=400,
        headers=headers,
    )


class RefuseCredentialsInURL:
    """ASGI middleware: answers :func:`refusal` to a request with credentials in its URL."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            names = credentials_in_query(scope["query_string"])
            if names:
                await refusal(scope["path"], names)(scope, receive, send)
                return
        await self.app(scope, receive, send)
