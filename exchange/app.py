"""The application factory: wires the application services, the OAuth server, GraphQL, the
background jobs and the routes into one ASGI app."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from exchange.api import books_export, callbacks, records
from exchange.api.authentication import BearerTokenBackend, refuse_token
from exchange.api.bodylimit import BodyLimit
from exchange.api.errors import database_refused, service_unavailable
from exchange.api.http import GraphQLView
from exchange.api.observed import ObservedRequests
from exchange.api.refusals import unrouted
from exchange.api.schema import build_schema
from exchange.auth.ratelimit import FailureLimit
from exchange.auth.routes import OAuthEndpoints
from exchange.auth.server import ExchangeAuthorizationServer
from exchange.auth.tokens import TokenVerifier
from exchange.auth.url_credentials import RefuseCredentialsInURL
from exchange.clock import Clock
from exchange.db import migrate
from exchange.db.availability import DatabaseRefused, DatabaseUnavailable
from exchange.heap import settle_for_serving
from exchange.jobs import BackgroundJobs
from exchange.observability.metrics import MetricsEndpoint, forget_process
from exchange.observability.requests import RequestId
from exchange.observability.tracing import configure_tracing, flush_traces
from exchange.services.container import build_services
from exchange.settings import Settings
from exchange.settlement.routes import statement_keys_route
from exchange.web.frontend import WebFrontEnd
from exchange.web.security import RelativeRedirects, SecurityHeaders

#: Seconds /readyz waits for the database's answer before it says 503.
READINESS_TIMEOUT = 2.0


class Gateway(Starlette):
    """Starlette with the request id and the security headers outside its whole stack, and
    redirects to this site by their path (:class:`~exchange.web.security.RelativeRedirects`).

    Starlette puts its ``ServerErrorMiddleware`` outside every middleware it is given, so the
    500 of an exception escaping a route would go out without the headers and the request id
    those add (the id being what matches the 500 to the traceback in the logs). Here they wrap
    it instead. ``secure``: the exchange runs behind HTTPS (:func:`exchange.web.security.page_headers`).
    """

    def __init__(self, *, secure: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.secure = secure

    def build_middleware_stack(self) -> ASGIApp:
        return RequestId(SecurityHeaders(RelativeRedirects(super().build_middleware_stack()), secure=self.secure))


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    partner_base_urls: Mapping[str, str] | None = None,
) -> Starlette:
    """The gateway. ``partner_base_urls`` points programs' connectors elsewhere than their
    declarations (tests run sandbox partners on free ports)."""
    settings.check_for_production()
    services = build_services(settings, clock=clock, partner_base_urls=partner_base_urls)
    db, keys, clock = services.db, services.keys, services.clock
    jobs = BackgroundJobs(services.periodic_jobs())
    verifier = TokenVerifier(keys, db, issuer=settings.issuer_url, audience=settings.audience, clock=clock)
    oauth = OAuthEndpoints(
        ExchangeAuthorizationServer(
            issuer=settings.issuer_url,
            audience=settings.audience,
            token_lifetime=timedelta(seconds=settings.access_token_lifetime),
            keys=keys,
            verifier=verifier,
        ),
        db=db,
        keys=keys,
        clock=clock,
        failure_limit=FailureLimit(
            failures=settings.token_failure_limit,
            window=timedelta(seconds=settings.token_failure_window),
        ),
        address_limit=FailureLimit(
            failures=settings.token_failure_address_limit,
            window=timedelta(seconds=settings.token_failure_window),
        ),
    )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate.ensure_migrated, settings.database_url)
        try:
            await services.ensure_signing_keys()
            await services.settlement.ensure_partitions()
            jobs.start()
            yield
        finally:
            await jobs.stop()
            await services.aclose()
            forget_process(os.getpid())
            flush_traces()

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> JSONResponse:
        """Ready while the database answers within :data:`READINESS_TIMEOUT`; during an outage,
        a failover or a hang the ping raises DatabaseUnavailable, answered 503 like every route's."""
        await db.ping(within=READINESS_TIMEOUT)
        return JSONResponse({"status": "ready"})

    graphql = GraphQLView(build_schema(settings), services)
    web = WebFrontEnd.for_services(services)
    bearer_tokens = Middleware(AuthenticationMiddleware, backend=BearerTokenBackend(verifier), on_error=refuse_token)
    api_routes: list[BaseRoute] = [
        # Every method reaches the view, which refuses all but GET and POST in GraphQL's shape.
        Route(
            "/graphql",
            graphql,
            middleware=[
                Middleware(ObservedRequests),
                Middleware(BodyLimit, max_bytes=settings.max_request_bytes),
                bearer_tokens,
            ],
        ),
        Route(
            records.PATH,
            records.RecordsUpload(services.settlement).put,
            methods=["PUT"],
            middleware=[bearer_tokens],
        ),
        Route(callbacks.PATH, callbacks.PartnerCallbacks(services.late).post, methods=["POST"]),
        Route(
            books_export.PATH,
            books_export.BooksExport(services.books).get,
            methods=["GET"],
            middleware=[bearer_tokens],
        ),
        *oauth.routes(),
        statement_keys_route(services.settlement.keys),
        Route("/healthz", health),
        Route("/readyz", ready),
        *(
            [Route("/metrics", MetricsEndpoint(services.saga_figures).answer, methods=["GET"])]
            if settings.metrics
            else []
        ),
    ]
    api_prefixes = {"/" + route.path.split("/")[1] for route in api_routes if isinstance(route, Route)}

    async def no_route(request: Request, error: Exception) -> Response:
        """No route serves the address (404), or not with this method (405): under the API's
        paths the API's JSON error; elsewhere a page for a browser (one that accepts text/html),
        JSON for any other client. The consoles' own paths answer their pages before this."""
        assert isinstance(error, HTTPException)
        path = request.url.path
        under_api = any(path == prefix or path.startswith(prefix + "/") for prefix in api_prefixes)
        if error.status_code in (404, 405) and not under_api and "text/html" in request.headers.get("accept", ""):
            return web.unrouted_page(request, error)
        return unrouted(request, error)

    app = Gateway(
        secure=web.cookies.secure,
        routes=[*api_routes, *web.routes()],
        middleware=[Middleware(RefuseCredentialsInURL)],
        exception_handlers={
            DatabaseRefused: database_refused,
            DatabaseUnavailable: service_unavailable,
            HTTPException: no_route,
        },
        lifespan=lifespan,
    )
    app.state.services = services
    return app


def create_app_from_environment() -> Starlette:
    """The factory ``exchange serve`` hands to uvicorn (once in each worker process): settings
    from the environment, and OpenTelemetry's own variables (tracing is off unless they
    configure an exporter); the collector then set for serving (:mod:`exchange.heap`)."""
    settings = Settings()
    configure_tracing(os.environ)
    app = create_app(settings)
    settle_for_serving()
    return app
