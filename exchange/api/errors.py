"""The one place where failures become GraphQL errors.

* An :class:`~exchange.errors.ExchangeError` keeps its message and gains
  ``extensions.code`` (and ``extensions.field`` and details where it has them).
  ``extensions.field`` is the path of the argument as the client wrote it, the same way for
  every operation: ``programId`` for an argument, ``input.toProgram`` for a field of an input
  object, ``adjustment.amount`` inside one. The domain names the field by its request's own
  name for it (``toProgram``); :func:`name_argument_paths` puts it under the argument that
  holds it, and leaves out a name that is no argument of the field the client asked for.
* A parse or validation failure gets ``GRAPHQL_VALIDATION_FAILED`` (a variable the document
  declares and never uses, too); a variable whose value does not fit its type gets
  ``BAD_USER_INPUT`` naming the variable (and the path into it), and so does
  a value a scalar refuses (:mod:`exchange.api.scalars`), written in a variable or inline
  (then naming the argument and the path into it, found in the document), and so does a
  value written inline that its argument's type cannot hold (``points: 99999999999``, or a
  field its input type does not have: ``input.form``), or cannot even be read as (``points``
  of 5,000 digits, which Python will not read as an int).
* Anything else is unexpected: it is logged with its trace, and the client sees only
  ``Unexpected error.`` with ``INTERNAL_SERVER_ERROR`` — never a stack trace. So is a
  result the field's own type cannot represent (a number past ``Int``): the domain bounds
  what it answers, and a value past that is a bug to see in the log, not the client's error.
* A database outage met before GraphQL runs (verifying the token) or on any other route
  is answered ``503`` with ``Retry-After`` and a ``SERVICE_UNAVAILABLE`` error
  (:func:`service_unavailable`); met by a field, it is that field's error, as any
  :class:`~exchange.errors.ExchangeError` is.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    ArgumentNode,
    GraphQLError,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLObjectType,
    GraphQLSchema,
    Node,
    ObjectFieldNode,
    ValueNode,
    Visitor,
    default_field_resolver,
    get_named_type,
    parse,
    visit,
)
from starlette.requests import Request
from starlette.responses import JSONResponse

from exchange.api.media import response_media_type
from exchange.api.scalars import InvalidValue
from exchange.errors import ErrorCode, ExchangeError

logger = logging.getLogger("exchange.api")

#: How long a client refused during a database outage should wait before asking again.
RETRY_AFTER_SECONDS = 5

_VARIABLE_ERROR = re.compile(r"^Variable '\$(?P<name>\w+)' has invalid value(?: at (?P<path>(?:\.\w+|\[\d+\])+))?")
_HEAD = re.compile(r"[.\[]")


def _unexpected(error: GraphQLError) -> bool:
    """Neither a domain error, nor a GraphQL request error (whose cause is a GraphQLError), nor
    a value a scalar refused; or a value of the exchange's own that its type cannot represent
    (:func:`_unrepresentable`)."""
    original = error.original_error
    if original is None or _unreadable_literal(error) is not None:
        return False
    return _unrepresentable(error) or not isinstance(original, (ExchangeError, GraphQLError, InvalidValue))


_EXPECTED_TYPE = re.compile(r"^Expected value of type '(?P<type>[^']+)'")


def _unreadable_literal(error: GraphQLError) -> str | None:
    """The type of a value written inline that reading raised on, not refused as a scalar
    refuses (``points: 999…`` of 5,000 digits: Python will not read so long a number as an
    int): the client's value, not the exchange's fault."""
    original = error.original_error
    if original is None or isinstance(original, (ExchangeError, GraphQLError, InvalidValue)):
        return None
    expected = _EXPECTED_TYPE.match(error.message)
    return expected["type"] if expected is not None and _about_a_written_value(error) else None


def _unrepresentable(error: GraphQLError) -> bool:
    """A field's result that its type cannot represent (``Int cannot represent non 32-bit
    signed integer value``): GraphQL raises a bare GraphQLError, located by no node of the
    document, while it completes the field. That is the exchange's fault, not the request's;
    a request error raised during execution (an argument's) names the node it is about."""
    original = error.original_error
    return error.path is not None and isinstance(original, GraphQLError) and not original.nodes


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
            at = {where.start for where in (node.loc, node.value.loc) if where is not None}
            if self.offset in at:
                self.found = ".".join(self.names)

    def leave(self, node: Node, *_: object) -> None:
        if isinstance(node, (ArgumentNode, ObjectFieldNode)):
            self.names.pop()


def _about_a_written_value(error: GraphQLError) -> bool:
    """A validation error about a value written inline for an argument (``points: 99999999999``,
    an enum it does not hold, an input object missing a field or holding one its type does
    not have): the same value sent in a variable is ``BAD_USER_INPUT`` naming it, so written
    inline it is too."""
    nodes = error.nodes or []
    return error.path is None and bool(nodes) and isinstance(nodes[0], (ValueNode, ObjectFieldNode))


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
    elif (unreadable := _unreadable_literal(error)) is not None:
        field = _literal_field(error)
        extensions = {"code": ErrorCode.BAD_USER_INPUT.value, **({"field": field} if field else {})}
        written = f"{unreadable} cannot represent the value written here"
        message = f"{field}: {written}" if field else written
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
    elif _about_a_written_value(error) and (field := _literal_field(error)) is not None:
        extensions = {"code": ErrorCode.BAD_USER_INPUT.value, "field": field}
        message = f"{field}: {error.message}"
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


@dataclass(frozen=True, slots=True)
class ArgumentPaths:
    """Where a field's inputs sit in what the client wrote: its arguments, and the fields of
    its input-object arguments (by the argument holding them)."""

    arguments: frozenset[str]
    nested: Mapping[str, str]

    @classmethod
    def of(cls, field: GraphQLField) -> ArgumentPaths:
        nested: dict[str, str] = {}
        for name, argument in field.args.items():
            input_type = get_named_type(argument.type)
            if isinstance(input_type, GraphQLInputObjectType):
                for inner in input_type.fields:
                    nested.setdefault(inner, name)
        return cls(frozenset(field.args), {inner: name for inner, name in nested.items() if inner not in field.args})

    def path(self, field: str | None) -> str | None:
        """``field`` as the client wrote it; ``None`` for a name that is no input of this field."""
        if field is None:
            return None
        head = _HEAD.split(field, maxsplit=1)[0]
        if head in self.arguments:
            return field
        if head in self.nested:
            return f"{self.nested[head]}.{field}"
        return None

    def name(self, error: ExchangeError) -> None:
        error.field = self.path(error.field)


def name_argument_paths(schema: GraphQLSchema) -> None:
    """Make the errors of every root field, and of every field that takes arguments, name their
    field by its argument path (see the module's docstring). Called once, on the built schema."""
    roots = {schema.query_type, schema.mutation_type}
    for graphql_type in schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType) or graphql_type.name.startswith("__"):
            continue
        for graphql_field in graphql_type.fields.values():
            if graphql_field.args or graphql_type in roots:
                graphql_field.resolve = _naming(graphql_field.resolve or default_field_resolver, graphql_field)


def _naming(resolve: Callable[..., Any], field: GraphQLField) -> Callable[..., Any]:
    paths = ArgumentPaths.of(field)

    async def settle(result: Awaitable[Any]) -> Any:
        try:
            return await result
        except ExchangeError as error:
            paths.name(error)
            raise

    def resolve_naming_paths(source: Any, info: Any, **arguments: Any) -> Any:
        try:
            result = resolve(source, info, **arguments)
        except ExchangeError as error:
            paths.name(error)
            raise
        return settle(result) if inspect.isawaitable(result) else result

    return resolve_naming_paths


async def service_unavailable(request: Request, error: Exception) -> JSONResponse:
    """Starlette's handler for :class:`~exchange.db.availability.DatabaseUnavailable` that
    escapes a route: ``503``, ``Retry-After``, and the error as GraphQL would word it."""
    return _unavailable(request, error, passes=True)


async def database_refused(request: Request, error: Exception) -> JSONResponse:
    """Starlette's handler for :class:`~exchange.db.availability.DatabaseRefused`: ``503`` as
    for an outage, but no ``Retry-After`` (asking again does not help until an operator
    corrects the setting), and logged as an error."""
    return _unavailable(request, error, passes=False)


def _unavailable(request: Request, error: Exception, *, passes: bool) -> JSONResponse:
    assert isinstance(error, ExchangeError)
    logger.log(
        logging.WARNING if passes else logging.ERROR,
        "%s %s refused: %s",
        request.method,
        request.url.path,
        error.message,
    )
    return JSONResponse(
        {"errors": [{"message": error.message, "extensions": error.extensions()}]},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)} if passes else {},
        media_type=response_media_type(request.headers),
    )
