"""The one place where failures become GraphQL errors.

* An :class:`~exchange.errors.ExchangeError` keeps its message and gains
  ``extensions.code`` (and ``extensions.field`` and details where it has them).
* A parse or validation failure gets ``GRAPHQL_VALIDATION_FAILED``; a variable that does not
  fit its type gets ``BAD_USER_INPUT`` naming the variable (and the path into it), and so does
  a value a scalar refuses (:mod:`exchange.api.scalars`), written in a variable or inline
  (then naming the argument and the path into it, found in the document).
* Anything else is unexpected: it is logged with its trace, and the client sees only
  ``Unexpected error.`` with ``INTERNAL_SERVER_ERROR`` — never a stack trace.
"""

from __future__ import annotations

import logging
import re

from graphql import ArgumentNode, GraphQLError, Node, ObjectFieldNode, Visitor, parse, visit

from exchange.api.scalars import InvalidValue
from exchange.errors import ErrorCode, ExchangeError

logger = logging.getLogger("exchange.api")

_VARIABLE_ERROR = re.compile(r"^Variable '\$(?P<name>\w+)'(?: has invalid value(?: at (?P<path>(?:\.\w+|\[\d+\])+))?)?")


def _unexpected(error: GraphQLError) -> bool:
    """Neither a domain error, nor a GraphQL request error (whose cause is a GraphQLError), nor
    a value a scalar refused."""
    return error.original_error is not None and not isinstance(
        error.original_error, (ExchangeError, GraphQLError, InvalidValue)
    )


def _refused_value(error: GraphQLError) -> InvalidValue | None:
    """The refusal of a scalar among the error's causes, if there is one."""
    cause: BaseException | None = error
    while isinstance(cause, GraphQLError):
        cause = cause.original_error
    return cause if isinstance(cause, InvalidValue) else None


class _FieldFinder(Visitor):
    """Finds the argument (and input fields) a value written in the document belongs to."""

    def __init__(self, offset: int) -> None:
        super().__init__()
        self.offset = offset
        self.names: list[str] = []
        self.found: str | None = None

    def enter(self, node: Node, *_: object) -> None:
        if isinstance(node, (ArgumentNode, ObjectFieldNode)):
            self.names.append(node.name.value)
            if node.value.loc is not None and node.value.loc.start == self.offset:
                self.found = ".".join(self.names)

    def leave(self, node: Node, *_: object) -> None:
        if isinstance(node, (ArgumentNode, ObjectFieldNode)):
            self.names.pop()


def _literal_field(error: GraphQLError) -> str | None:
    """``input.bonusPercent`` for a refused value written inline in the document."""
    node = error.nodes[0] if error.nodes else None
    if node is None or node.loc is None or error.source is None:
        return None
    finder = _FieldFinder(node.loc.start)
    visit(parse(error.source, no_location=False), finder)
    return finder.found


def to_client_error(error: GraphQLError) -> GraphQLError:
    """The error as the client may see it, with ``extensions.code`` always set."""
    original = error.original_error
    refused = _refused_value(error)
    variable = _VARIABLE_ERROR.match(error.message)
    if isinstance(original, ExchangeError):
        extensions = original.extensions()
        message = original.message
    elif _unexpected(error):
        extensions = {"code": ErrorCode.INTERNAL_SERVER_ERROR.value}
        message = "Unexpected error."
    elif variable is not None:
        field = variable["name"] + (variable["path"] or "")
        extensions = {"code": ErrorCode.BAD_USER_INPUT.value, "field": field}
        message = f"{field}: {refused}" if refused is not None else error.message
    elif refused is not None:
        field = _literal_field(error)
        extensions = {"code": ErrorCode.BAD_USER_INPUT.value, **({"field": field} if field else {})}
        message = f"{field}: {refused}" if field else error.message
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
