"""Each GraphQL request measured and traced: its latency by operation and outcome, and a server
span that continues the caller's trace.

The operation is named by the root field the executed operation selects (``createQuote``,
``executeConversion``, ``me``; two or more different ones as ``(several)``), read once the
document has passed validation, so every name is one of the schema's; never the query text, the
client's operation name or an argument. A request that never reached execution is ``(none)``.
Naming combinations instead (``me,programs``) would let one client mint tens of thousands of
series (every pair and triple of some fifty root fields, each times the histogram's buckets).
"""

from __future__ import annotations

import time

from graphql import DocumentNode, FieldNode
from graphql.utilities import get_operation_ast
from opentelemetry import trace
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.types import ExecutionContext

from exchange.api.refusals import STATUS_CODES
from exchange.errors import ErrorCode, ExchangeError
from exchange.observability.metrics import count_errors, observe_request
from exchange.observability.tracing import span

NO_OPERATION = "(none)"
SEVERAL = "(several)"


def operation_label(document: DocumentNode | None, operation_name: str | None) -> str:
    """The root field of the operation that runs, as a metric label bounded by the schema."""
    operation = get_operation_ast(document, operation_name) if document is not None else None
    if operation is None:
        return NO_OPERATION
    names = {node.name.value for node in operation.selection_set.selections if isinstance(node, FieldNode)}
    if not names:
        return NO_OPERATION
    return names.pop() if len(names) == 1 else SEVERAL


def name_the_operation(context: ExecutionContext) -> None:
    """Tell :class:`ObservedRequests` (through the request's state) which operation runs."""
    label = operation_label(context.graphql_document, context.operation_name)
    context.context.request.state.operation = label
    trace.get_current_span().set_attribute("graphql.operation.name", label)


class ObservedRequests:
    """ASGI middleware of the GraphQL route: a server span around the request and its latency
    in ``exchange_request_duration_seconds``. The view sets ``outcome`` in the request's state
    (``ok``, ``error``, ``refused``) and counts the errors it answers; a request it never
    answered is counted here.

    A request is counted as its answer's last part is sent, before the client can have it
    whole: a client that reads ``/metrics`` after an answer (through any worker) finds the
    request counted."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        observed = False

        with span("graphql", kind=trace.SpanKind.SERVER, continuing=Headers(scope=scope)) as current:

            def observe(failure: BaseException | None) -> None:
                nonlocal observed
                observed = True
                state = scope.setdefault("state", {})
                operation = state.get("operation", NO_OPERATION)
                outcome = state.get("outcome") or self._unanswered(status, failure)
                current.update_name(f"graphql {operation}")
                current.set_attribute("http.response.status_code", status)
                observe_request(operation, outcome, started)

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                elif message["type"] == "http.response.body" and not message.get("more_body", False):
                    observe(None)
                await send(message)

            try:
                await self.app(scope, receive, sending)
            except BaseException as failure:
                if not observed:
                    observe(failure)
                raise
            if not observed:  # the app ended without finishing an answer
                observe(None)

    @staticmethod
    def _unanswered(status: int, failure: BaseException | None) -> str:
        """The outcome of a request the view never answered, its error counted by code: refused
        on the way in (a body too large, a token refused) or failed (a database outage,
        answered 503 further out, or a crash)."""
        if failure is None and 400 <= status < 500:
            count_errors([STATUS_CODES.get(status, ErrorCode.BAD_REQUEST).value])
            return "refused"
        code = failure.code if isinstance(failure, ExchangeError) else ErrorCode.INTERNAL_SERVER_ERROR
        count_errors([code.value])
        return "error"
