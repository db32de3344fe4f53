"""Refusals before GraphQL runs, in GraphQL's own shape.

A request the transport refuses (a body that is not a JSON object, an unsupported content type,
a method not allowed, a body too large, …) is still answered as GraphQL over HTTP answers:
``{"errors": [{"message": …, "extensions": {"code": …}}]}`` in the media type the client
accepts, with the HTTP status that says what went wrong. Clients read ``extensions.code``
whatever failed; nobody parses plain text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from exchange.api.errors import RETRY_AFTER_SECONDS
from exchange.api.media import response_media_type
from exchange.errors import ErrorCode, ExchangeError, http_status

#: The code of each status the transport refuses with.
STATUS_CODES: Mapping[int, ErrorCode] = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
}


class ErrorBody(JSONResponse):
    """An error body written in ASCII, as Strawberry writes GraphQL's answers.

    A refusal may quote what the client sent (``Unknown operation named '…'``), and JSON may
    carry an unpaired surrogate (``"\\ud800"``) that no UTF-8 text can hold: Starlette's own
    rendering would fail on it with a 500. Escaped, it goes back as the client wrote it.
    """

    def render(self, content: Any) -> bytes:
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def refusal(
    request_headers: Headers,
    status: int,
    message: str,
    *,
    code: ErrorCode | None = None,
    headers: Mapping[str, str] | None = None,
    **details: Any,
) -> JSONResponse:
    """A GraphQL-shaped error body with ``extensions.code`` (by default, the status's)."""
    extensions = {"code": (code or STATUS_CODES.get(status, ErrorCode.BAD_REQUEST)).value, **details}
    return ErrorBody(
        {"errors": [{"message": message, "extensions": extensions}]},
        status_code=status,
        headers=dict(headers or {}),
        media_type=response_media_type(request_headers),
    )


def domain_refusal(request: Request, refused: ExchangeError) -> JSONResponse:
    """A domain refusal as a route's answer: its code's HTTP status, GraphQL's error shape, and
    for ``503`` (the database or a lock busy for now) a ``Retry-After``, as the other routes'
    outage answers have."""
    extensions = refused.extensions()
    code = ErrorCode(extensions.pop("code"))
    status = http_status(code)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return refusal(request.headers, status, refused.message, code=code, headers=headers, **extensions)


def unrouted(request: Request, error: HTTPException) -> JSONResponse:
    """Starlette's own refusals, which it answers in plain text, in this shape: no route serves
    the address (404), or not with this method (405, with ``Allow``)."""
    if error.status_code == 404:
        message = f"nothing is served at {request.url.path}"
    elif error.status_code == 405 and (allow := (error.headers or {}).get("Allow")):
        message = f"{request.method} is not allowed here; this address takes {allow}"
    else:
        message = error.detail
    return refusal(request.headers, error.status_code, message, headers=error.headers)
