"""GraphQL over HTTP as its specification says, on top of Strawberry's ASGI view.

Strawberry always answers ``application/json``. The GraphQL-over-HTTP specification prefers
``application/graphql-response+json``, and with that media type a request that never reached
execution (a parse, validation or variable-coercion failure) is a 400 with no ``data`` entry.
This view answers in the media type the client accepts and sets those statuses, and answers
``401`` with ``WWW-Authenticate: Bearer`` when an operation without a token was refused
before execution (see :mod:`exchange.api.authentication`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.schema import BaseSchema
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

from exchange.api.authentication import principal_of, www_authenticate
from exchange.api.context import Context, Services
from exchange.api.errors import to_client_error
from exchange.api.media import GRAPHQL_RESPONSE_JSON, response_media_type
from exchange.errors import ErrorCode
from exchange.web.graphiql import graphiql_response


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
    return result.data is None and bool(result.errors) and all(error.path is None for error in result.errors)


class GraphQLView(GraphQL[Context, None]):
    def __init__(self, schema: BaseSchema, services: Services) -> None:
        super().__init__(schema)
        self.services = services

    async def get_context(self, request: Request, response: Response) -> Context:  # type: ignore[override]
        return Context(services=self.services, request=request, response=response, principal=principal_of(request))

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:  # type: ignore[override]
        """GraphiQL with its scripts and styles served by the exchange, not by a CDN."""
        return graphiql_response()

    async def get_sub_response(self, request: Request) -> Response:  # type: ignore[override]
        sub_response = await super().get_sub_response(request)
        sub_response.media_type = response_media_type(request.headers)
        request.state.sub_response = sub_response
        return sub_response

    async def process_result(  # type: ignore[override]
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        # The one place errors take their client form: every failure, from any phase, passes here.
        if result.errors:
            result.errors = [to_client_error(error) for error in result.errors]
        response = await super().process_result(request, result)
        sub_response: Response = request.state.sub_response
        if not never_executed(result):
            return response
        if sub_response.media_type == GRAPHQL_RESPONSE_JSON:
            response.pop("data", None)  # type: ignore[misc]
            sub_response.status_code = 400
        if refused_for_want_of_a_token(response):
            sub_response.status_code = 401
            sub_response.headers["WWW-Authenticate"] = www_authenticate()
        return response

    def create_response(  # type: ignore[override]
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        response.headers["content-type"] = f"{sub_response.media_type}; charset=utf-8"
        return response
