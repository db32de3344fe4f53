"""The application factory: wires settings, database, GraphQL and routes into one ASGI app."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from exchange.api.context import Services
from exchange.api.http import GraphQLView
from exchange.api.schema import build_schema
from exchange.clock import Clock, SystemClock
from exchange.connectors.registry import ConnectorRegistry
from exchange.db import migrate
from exchange.db.database import Database
from exchange.settings import Settings


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    partner_base_urls: Mapping[str, str] | None = None,
) -> Starlette:
    """The gateway. ``partner_base_urls`` points programs' connectors elsewhere than their
    declarations (tests run sandbox partners on free ports)."""
    settings.check_for_production()
    services = Services(
        settings=settings,
        db=Database.from_url(settings.database_url),
        clock=clock or SystemClock(),
        # The process environment holds partners' client secrets (``client_secret_env``).
        connectors=ConnectorRegistry(settings, environ=os.environ, base_urls=partner_base_urls),
    )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate.ensure_migrated, settings.database_url)
        try:
            yield
        finally:
            await services.connectors.aclose()
            await services.db.dispose()

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> JSONResponse:
        async with services.db.transaction() as session:
            await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        return JSONResponse({"status": "ready"})

    graphql = GraphQLView(build_schema(settings), services)
    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            Route("/healthz", health),
            Route("/readyz", ready),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    return app


def create_app_from_environment() -> Starlette:
    """The factory ``exchange serve`` hands to uvicorn: settings from the environment."""
    return create_app(Settings())
