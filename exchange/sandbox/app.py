"""Assembling one sandbox partner's ASGI app from its parts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from exchange.sandbox import admin, member_sign_in, rest
from exchange.sandbox.auth import BearerTokenMiddleware, TokenIssuer
from exchange.sandbox.faults import FaultInjected, FaultInjector, FaultMiddleware
from exchange.sandbox.graphql import ContractGraphQL
from exchange.sandbox.late import CallbackTarget
from exchange.sandbox.member_sign_in import MemberSignIn
from exchange.sandbox.points import PointsSystem, Refusal
from exchange.sandbox.service import PartnerService
from exchange.sandbox.tracing import TraceHeaders

TOKEN_PATH = "/oauth/token"


async def _fault_handler(_: Request, exc: Exception) -> Response:
    # FaultMiddleware replaces this answer with the fault's own; this only keeps
    # Starlette from treating an injected fault as a crash.
    return PlainTextResponse(str(exc), status_code=500)


def create_sandbox_app(
    *,
    points: PointsSystem,
    faults: FaultInjector,
    issuer: TokenIssuer,
    sign_in: MemberSignIn,
    callbacks: CallbackTarget,
    released: asyncio.Event,
    restart: Callable[[float], None] | None = None,
) -> Starlette:
    """The sandbox's app: token endpoint, member sign-in page, contract (REST and GraphQL), admin API.

    ``released`` ends hanging requests when the sandbox stops; ``restart`` (if given) lets
    ``POST /_sandbox/restart`` restart the server the app runs on.
    """
    service = PartnerService(points, faults)
    graphql = ContractGraphQL(service)
    traces = TraceHeaders()
    return Starlette(
        routes=[
            Route(TOKEN_PATH, issuer.token_endpoint, methods=["POST"]),
            *member_sign_in.routes(points=points, sign_in=sign_in),
            *admin.routes(
                program_id=points.program.id,
                points=points,
                faults=faults,
                issuer=issuer,
                sign_in=sign_in,
                callbacks=callbacks,
                traces=traces,
                restart=restart,
            ),
            *rest.routes(service),
            Route("/graphql", graphql, methods=["POST"]),
        ],
        middleware=[
            Middleware(traces.middleware, ignored_prefix=admin.PREFIX),
            Middleware(FaultMiddleware, released=released),
            Middleware(
                BearerTokenMiddleware, issuer=issuer, open_paths=(TOKEN_PATH, member_sign_in.PATH, admin.PREFIX)
            ),
        ],
        exception_handlers={Refusal: rest.refusal_handler, FaultInjected: _fault_handler},
    )
