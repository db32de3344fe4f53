"""GraphQL over HTTP as its specification says, on top of Strawberry's ASGI view.

Strawberry always answers ``application/json``. The GraphQL-over-HTTP specification prefers
``application/graphql-response+json``, and with that media type a request that never reached
execution (a parse, validation or variable-coercion failure) is a 400 with no ``data`` entry.
This view answers in the media type the client accepts and sets those statuses, and answers
``401`` with ``WWW-Authenticate: Bearer`` when an operation without a token was refused
before execution (see :mod:`exchange.api.authentication`).

What Strawberry refuses before GraphQL runs (a body that is not UTF-8, not JSON or not a JSON
object, batches, a mutation over GET, an unknown operation name, a method other than GET and
POST) it answers in plain text; here those are GraphQL-shaped errors with ``extensions.code``
(:mod:`exchange.api.refusals`): 400, 405 with ``Allow``, or 415 for a body that is not JSON.

A HEAD is answered as the same GET would be, as every other address that serves GET answers it
(Starlette's routes do): the status and headers, and the server sends no body.
"""

from __future__ import annotations

from typing import Any, NoReturn

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.types import QueryParams
from strawberry.schema import BaseSchema
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

from exchange.api.authentication import principal_of, www_authenticate
from exchange.api.context import Context
from exchange.api.errors import to_client_error
from exchange.api.media import GRAPHQL_RESPONSE_JSON, response_media_type
from exchange.api.refusals import STATUS_CODES, refusal
from exchange.errors import ErrorCode
from exchange.observability.metrics import count_errors
from exchange.services.container import Services
from exchange.text import json_value
from exchange.web.graphiql import graphiql_response

JSON_MEDIA_TYPE = "application/json"


def refused_for_want_of_a_token(response: GraphQLHTTPResponse) -> bool:
    for error in response.get("errors") or []:
        extensions = error.get("extensions") if isinstance(error, dict) else None
        if isinstance(extensions, dict) and extensions.get("code") == ErrorCode.UNAUTHENTICATED:
            return True
    return False


def never_executed(result: ExecutionResult) -> bool:
    """Parse or validation failure, or variables that do not fit their types."""
    if isinstance(result, PreExecutionError):
        return True
    errors = result.errors or []
    return result.data is None and bool(errors) and all(error.path is None for error in errors)


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not a JSON value")


def read_json(data: str | bytes, what: str) -> object:
    """``data`` as JSON: UTF-8 text, no NaN; JSON that is malformed, nested too deeply or holds
    an integer too long to read is a 400 naming ``what`` was sent so."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPException(400, f"{what} is not UTF-8 text") from None
    try:
        return json_value(data, parse_constant=_not_json)
    except ValueError as malformed:
        raise HTTPException(400, f"{what} is not JSON: {malformed}") from None


def _lowercase_media_type(scope: Scope) -> None:
    """Write the request's media type in lower case: media types are case-insensitive (RFC 9110
    §8.3.1), and Strawberry compares them as written, refusing ``Application/JSON``."""
    headers = MutableHeaders(scope=scope)
    content_type = headers.get("content-type")
    if content_type is not None:
        media_type, separator, parameters = content_type.partition(";")
        headers["content-type"] = media_type.strip().lower() + separator + parameters


class GraphQLView(GraphQL[Context, None]):
    def __init__(self, schema: BaseSchema, services: Services) -> None:
        super().__init__(schema)
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        _lowercase_media_type(scope)
        if scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
        request = Request(scope, receive)
        try:
            response = await self.run(request)
        except HTTPException as refused:
            allow = (
                {"Allow": "POST" if request.method == "GET" else "GET, HEAD, POST"}
                if refused.status_code == 405
                else None
            )
            response = refusal(request.headers, refused.status_code, refused.reason, headers=allow)
            request.state.outcome = "refused"
            count_errors([STATUS_CODES.get(refused.status_code, ErrorCode.BAD_REQUEST).value])
        await response(scope, receive, send)

    def decode_json(self, data: str | bytes) -> object:
        """The body as JSON (:func:`read_json`), an object or a list."""
        value = read_json(data, "the request body")
        if not isinstance(value, (dict, list)):
            raise HTTPException(400, 'expected a JSON object, such as {"query": "{ programs { id } }"}')
        return value

    def parse_query_params(self, params: QueryParams) -> dict[str, Any]:
        """A GET's parameters, with ``variables`` and ``extensions`` read as JSON objects (as
        Strawberry reads them); a malformed one is refused naming the parameter."""
        parsed: dict[str, Any] = dict(params)
        for name in ("variables", "extensions"):
            if parsed.get(name):
                what = f"the `{name}` parameter"
                value = read_json(parsed[name], what)
                if not isinstance(value, dict):
                    raise HTTPException(400, f"{what} must be a JSON object")
                parsed[name] = value
        return parsed

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData | list[GraphQLRequestData]:
        if request.method == "POST":
            media_type = (request.content_type or "").split(";")[0].strip().lower()
            if media_type != JSON_MEDIA_TYPE:
                raise HTTPException(415, f"send the request as {JSON_MEDIA_TYPE}")
        data = await super().parse_http_body(request)
        for item in data if isinstance(data, list) else [data]:
            if not isinstance(item.operation_name, (str, type(None))):
                raise HTTPException(400, "the operation's `operationName` must be a string or null, if provided.")
        return data

    async def execute_single(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        try:
            return await super().execute_single(*args, **kwargs)
        except HTTPException as refused:
            # A mutation over GET is a method not allowed (GraphQL over HTTP), not a bad request.
            if isinstance(refused.__cause__, InvalidOperationTypeError):
                raise HTTPException(405, refused.reason) from None
            raise

    async def get_context(self, request: Request, response: Response) -> Context:  # type: ignore[override]  # an HTTP Route serves it: never a WebSocket
        return Context(services=self.services, request=request, response=response, principal=principal_of(request))

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        """GraphiQL with its scripts and styles served by the exchange, not by a CDN."""
        return graphiql_response()

    async def get_sub_response(self, request: Request) -> Response:  # type: ignore[override]  # an HTTP Route serves it: never a WebSocket
        sub_response = await super().get_sub_response(request)
        sub_response.media_type = response_media_type(request.headers)
        request.state.sub_response = sub_response
        return sub_response

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        # The one place errors take their client form: every failure, from any phase, passes here.
        if result.errors:
            result.errors = [to_client_error(error) for error in result.errors]
            count_errors(str((error.extensions or {}).get("code")) for error in result.errors)
        response = await super().process_result(request, result)
        sub_response: Response = request.state.sub_response
        if not never_executed(result):
            request.state.outcome = "error" if result.errors else "ok"
            return response
        request.state.outcome = "refused"
        if sub_response.media_type == GRAPHQL_RESPONSE_JSON:
            response.pop("data", None)
            sub_response.status_code = 400
        if refused_for_want_of_a_token(response):
            sub_response.status_code = 401
            sub_response.headers["WWW-Authenticate"] = www_authenticate()
        return response

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        response.headers["content-type"] = f"{sub_response.media_type}; charset=utf-8"
        return response
