"""The one place where failures become GraphQL errors.

* An :class:`~exchange.errors.ExchangeError` keeps its message and gains
  ``extensions.code`` (and ``extensions.field`` and details where it has them).
* A parse or validation failure gets ``GRAPHQL_VALIDATION_FAILED``; a variable that does not
  fit its type gets ``BAD_USER_INPUT`` naming the variable.
* Anything else is unexpected: it is logged with its trace, and the client sees only
  ``Unexpected error.`` with ``INTERNAL_SERVER_ERROR`` — never a stack trace.
* A database outage met before GraphQL runs (verifying the token) or on any other route
  is answered ``503`` with ``Retry-After`` and a ``SERVICE_UNAVAILABLE`` error
  (:func:`service_unavailable`); met by a field, it is that field's error, as any
  :class:`~exchange.errors.ExchangeError` is.
"""

from __future__ import annotations

import logging
import re

from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import JSONResponse

from exchange.api.media import response_media_type
from exchange.errors import ErrorCode, ExchangeError

logger = logging.getLogger("exchange.api")

#: How long a client refused during a database outage should wait before asking again.
RETRY_AFTER_SECONDS = 5

_VARIABLE_ERROR = re.compile(r"^Variable '\$(?P<name>\w+)'")


def _unexpected(error: GraphQLError) -> bool:
    """Neither a domain error nor a GraphQL request error (whose cause is a GraphQLError)."""
    return error.original_error is not None and not isinstance(error.original_error, (ExchangeError, GraphQLError))


def to_client_error(error: GraphQLError) -> GraphQLError:
    """The error as the client may see it, with ``extensions.code`` always set."""
    original = error.original_error
    if isinstance(original, ExchangeError):
        extensions = original.extensions()
        message = original.message
    elif _unexpected(error):
        extensions = {"code": ErrorCode.INTERNAL_SERVER_ERROR.value}
        message = "Unexpected error."
    elif match := _VARIABLE_ERROR.match(error.message):
        extensions = {"code": ErrorCode.BAD_USER_INPUT.value, "field": match["name"]}
        message = error.message
    else:
        extensions = {"code": ErrorCode.GRAPHQL_VALIDATION_FAILED.value}
        message = error.message
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={**(error.extensions or {}), **extensions},
    )


def log_unexpected(errors: list[GraphQLError]) -> None:
    """Log only unexpected errors, with their trace; expected ones are the client's business."""
    for error in errors:
        if _unexpected(error):
            logger.error("unexpected error in %s", error.path, exc_info=error.original_error)


async def service_unavailable(request: Request, error: Exception) -> JSONResponse:
    """Starlette's handler for :class:`~exchange.db.availability.DatabaseUnavailable` that
    escapes a route: ``503``, ``Retry-After``, and the error as GraphQL would word it."""
    assert isinstance(error, ExchangeError)
    logger.warning("%s %s refused: %s", request.method, request.url.path, error.message)
    return JSONResponse(
        {"errors": [{"message": error.message, "extensions": error.extensions()}]},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        media_type=response_media_type(request.headers),
    )
