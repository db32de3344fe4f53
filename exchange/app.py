"""The application factory: wires settings, database, OAuth server, GraphQL and routes into
one ASGI app."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from exchange.api import records
from exchange.api.authentication import BearerTokenBackend, refuse_token
from exchange.api.bodylimit import BodyLimit
from exchange.api.context import Services
from exchange.api.http import GraphQLView
from exchange.api.schema import build_schema
from exchange.auth.keys import SigningKeys, ensure_active_key
from exchange.auth.ratelimit import FailureLimit
from exchange.auth.routes import OAuthEndpoints
from exchange.auth.server import ExchangeAuthorizationServer
from exchange.auth.tokens import TokenVerifier
from exchange.auth.url_credentials import RefuseCredentialsInURL
from exchange.clock import Clock, SystemClock
from exchange.connectors.registry import ConnectorRegistry
from exchange.conversions.quoting import Quoting
from exchange.conversions.saga import ConversionSaga
from exchange.db import migrate
from exchange.db.database import Database
from exchange.federation.accounts import Federation
from exchange.jobs import BackgroundJobs, PeriodicJob
from exchange.members.consents import DebitConsents
from exchange.programs.catalog import CatalogCache
from exchange.rewards.jobs import RedemptionJob
from exchange.rewards.redemption import RedemptionSaga
from exchange.sagas.recovery import RecoveryWorker
from exchange.settings import Settings
from exchange.settlement.routes import statement_keys_route
from exchange.settlement.service import SettlementService
from exchange.tiers.expiry import MatchExpiry
from exchange.tiers.matching import StatusMatching
from exchange.web.frontend import WebFrontEnd


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    partner_base_urls: Mapping[str, str] | None = None,
) -> Starlette:
    """The gateway. ``partner_base_urls`` points programs' connectors elsewhere than their
    declarations (tests run sandbox partners on free ports)."""
    settings.check_for_production()
    clock = clock or SystemClock()
    db = Database.from_url(settings.database_url)
    # The process environment holds partners' client secrets (``client_secret_env``).
    connectors = ConnectorRegistry(settings, environ=os.environ, base_urls=partner_base_urls)
    catalog = CatalogCache(db, ttl=settings.catalog_cache_seconds)
    saga = ConversionSaga.for_settings(settings, db=db, connectors=connectors, catalog=catalog, clock=clock)
    federation = Federation(
        db,
        connectors.for_program,
        catalog,
        balance_ttl=settings.balance_cache_seconds,
        tier_ttl=settings.tier_cache_seconds,
    )
    quoting = Quoting.for_settings(settings, db=db, catalog=catalog, federation=federation, clock=clock)
    matching = StatusMatching.for_settings(settings, db=db, connectors=connectors, clock=clock)
    redemptions = RedemptionSaga.for_settings(
        settings, db=db, connectors=connectors, federation=federation, clock=clock
    )
    key_secret = settings.key_encryption_secret.get_secret_value()
    keys = SigningKeys(db, key_secret, clock)
    settlement = SettlementService.for_settings(settings, db=db, clock=clock)
    services = Services(
        settings=settings,
        db=db,
        clock=clock,
        connectors=connectors,
        quoting=quoting,
        saga=saga,
        federation=federation,
        catalog=catalog,
        matching=matching,
        redemptions=redemptions,
        settlement=settlement,
        consents=DebitConsents.for_settings(settings, db=db, clock=clock),
    )
    jobs = BackgroundJobs(
        [
            PeriodicJob("conversion-recovery", settings.recovery_interval_seconds, RecoveryWorker(saga).run_once),
            PeriodicJob(
                "status-match-expiry",
                settings.status_match_expiry_interval_seconds,
                MatchExpiry(matching.saga).run_once,
            ),
            PeriodicJob("redemptions", settings.redemption_interval_seconds, RedemptionJob(redemptions).run_once),
        ]
    )
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
    )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate.ensure_migrated, settings.database_url)
        try:
            async with db.transaction() as session:
                await ensure_active_key(session, key_secret, clock.now())
                await settlement.keys.ensure_active(session)
            await keys.refresh()
            jobs.start()
            yield
        finally:
            await jobs.stop()
            await services.connectors.aclose()
            await db.dispose()

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> JSONResponse:
        async with db.transaction() as session:
            await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        return JSONResponse({"status": "ready"})

    graphql = GraphQLView(build_schema(settings), services)
    web = WebFrontEnd.for_settings(settings, db=db, clock=clock, catalog=catalog)
    bearer_tokens = Middleware(AuthenticationMiddleware, backend=BearerTokenBackend(verifier), on_error=refuse_token)
    app = Starlette(
        routes=[
            # Every method reaches the view, which refuses all but GET and POST in GraphQL's shape.
            Route(
                "/graphql",
                graphql,
                middleware=[Middleware(BodyLimit, max_bytes=settings.max_request_bytes), bearer_tokens],
            ),
            Route(records.PATH, records.RecordsUpload(settlement).put, methods=["PUT"], middleware=[bearer_tokens]),
            *oauth.routes(),
            statement_keys_route(settlement.keys),
            *web.routes(),
            Route("/healthz", health),
            Route("/readyz", ready),
        ],
        middleware=[Middleware(RefuseCredentialsInURL)],
        lifespan=lifespan,
    )
    app.state.services = services
    return app


def create_app_from_environment() -> Starlette:
    """The factory ``exchange serve`` hands to uvicorn: settings from the environment."""
    return create_app(Settings())
