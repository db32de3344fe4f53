"""Every application service, built once from the settings: what the gateway, the web pages and
the ``exchange`` command share."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from exchange.auth.keys import SigningKeys
from exchange.clock import Clock, SystemClock
from exchange.coalition.connector import CoalitionConnector
from exchange.connectors.registry import ConnectorRegistry
from exchange.conversions import queries as conversion_queries
from exchange.conversions.batches import CreditBatches
from exchange.conversions.gates import CONVERSIONS_OUT
from exchange.conversions.quoting import Quoting
from exchange.conversions.saga import ConversionSaga
from exchange.db import migrate
from exchange.db.database import Database
from exchange.federation.accounts import Federation
from exchange.federation.link_attempts import LinkAttempts
from exchange.jobs import PeriodicJob
from exchange.ledger.posting import Ledger
from exchange.loading import PartnersLoaded
from exchange.members.consents import DebitConsents
from exchange.observability.metrics import SagaFigures
from exchange.people.portal_sign_in import SignInTickets
from exchange.programs.catalog import CatalogCache
from exchange.programs.declarations import read_partners_directory
from exchange.retention import Retention
from exchange.rewards.jobs import RedemptionJob
from exchange.rewards.redemption import REDEMPTIONS_OUT, RedemptionSaga
from exchange.risk.gates import Gates
from exchange.sagas.engine import Saga
from exchange.sagas.figures import read_figures
from exchange.sagas.recovery import RecoveryReport, RecoveryWorker
from exchange.services.access import AccessService
from exchange.services.books import BooksService
from exchange.services.catalog import CatalogService
from exchange.services.coalition import CoalitionService
from exchange.services.conversions import ConversionService
from exchange.services.holds import HoldExpiry, HoldReview
from exchange.services.late import LateOutcomes
from exchange.services.matches import StatusMatchService
from exchange.services.members import MemberService
from exchange.services.people import PeopleService
from exchange.services.portal import PortalSignInService
from exchange.services.pricing import PricingService
from exchange.services.retrying import RetryingOperations
from exchange.services.rewards import RewardService
from exchange.services.risk import RiskService
from exchange.services.settlement import SettlementService, UnfinishedCloses
from exchange.services.webhooks import WebhookService
from exchange.settings import Settings
from exchange.tiers.expiry import MatchExpiry
from exchange.tiers.matching import StatusMatching


@dataclass(frozen=True, slots=True)
class Recovery:
    """What ``exchange recover`` did: one report per saga, what became of the holds, and of the
    periods left closing."""

    sagas: list[RecoveryReport]
    holds: HoldExpiry
    closes: UnfinishedCloses


@dataclass
class Services:
    """One service per capability, and the long-lived parts they share (one database, one
    connector per partner, one signing-key cache)."""

    settings: Settings
    db: Database
    clock: Clock
    connectors: ConnectorRegistry
    keys: SigningKeys
    catalog: CatalogService
    members: MemberService
    conversions: ConversionService
    pricing: PricingService
    rewards: RewardService
    matches: StatusMatchService
    settlement: SettlementService
    books: BooksService
    access: AccessService
    people: PeopleService
    portal: PortalSignInService
    late: LateOutcomes
    retrying: RetryingOperations
    batches: CreditBatches
    coalition: CoalitionService
    risk: RiskService
    webhooks: WebhookService
    retention: Retention

    @property
    def sagas(self) -> list[Saga]:  # type: ignore[type-arg]
        """Every saga the exchange drives, for the figures its metrics show."""
        return [self.conversions.saga, self.matches.matching.saga, self.rewards.saga]

    async def ensure_signing_keys(self) -> None:
        """Tokens' and statements' active signing keys exist (made on the first start) and
        EXCHANGE_KEY_ENCRYPTION_SECRET opens them, else :class:`ConfigurationError`."""
        await self.access.ensure_signing_key()
        await self.settlement.ensure_signing_key()

    async def saga_figures(self) -> list[SagaFigures]:
        """Where every saga stands now (read only): the metrics' saga gauges."""
        async with self.db.transaction() as session:
            return await read_figures(session, self.sagas, self.clock.now())

    async def recover(self) -> Recovery:
        """Every saga's recovery pass now, once (``exchange recover``): conversions,
        redemptions and status matches, each as its background job drives it, but every
        active row whatever its next attempt time; then the holds whose review time has
        passed end, as the ``hold-expiry`` job ends them; last, periods a closer left
        CLOSING are closed."""
        sagas = [await self.conversions.recover(), await self.rewards.recover(), await self.matches.recover()]
        holds = await self.risk.review.expire_overdue()
        return Recovery(sagas=sagas, holds=holds, closes=await self.settlement.finish_unfinished_closes())

    def periodic_jobs(self) -> list[PeriodicJob]:
        """What every gateway process runs in the background (an interval of 0: never)."""
        settings = self.settings
        return [
            PeriodicJob(
                "conversion-recovery",
                settings.recovery_interval_seconds,
                RecoveryWorker(self.conversions.saga).run_once,
            ),
            PeriodicJob("hold-expiry", settings.recovery_interval_seconds, self.risk.review.expire_due),
            PeriodicJob(
                "status-match-expiry",
                settings.status_match_expiry_interval_seconds,
                MatchExpiry(self.matches.matching.saga).run_once,
            ),
            PeriodicJob("redemptions", settings.redemption_interval_seconds, RedemptionJob(self.rewards.saga).run_once),
            PeriodicJob("credit-batches", settings.batch_interval_seconds, self.batches.run_once),
            PeriodicJob("settlement-jobs", settings.settlement_job_interval_seconds, self.settlement.run_jobs),
            PeriodicJob(
                "unfinished-closes",
                settings.settlement_job_interval_seconds,
                partial(
                    self.settlement.finish_unfinished_closes,
                    grace=timedelta(seconds=settings.closing_grace_seconds),
                ),
            ),
            PeriodicJob("webhooks", settings.webhook_interval_seconds, self.webhooks.deliver),
            PeriodicJob("coalition-expiry", settings.coalition_expiry_interval_seconds, self.coalition.run_once),
            PeriodicJob("retention", settings.retention_interval_seconds, self.retention.run_once),
        ]

    async def aclose(self) -> None:
        await self.webhooks.aclose()
        await self.connectors.aclose()
        await self.db.dispose()


def risk_gates() -> Gates:
    """The risk gates, counting every way points leave a member's account: velocity sees
    conversions and redemptions together, whichever saga moves them."""
    return Gates(ways=(CONVERSIONS_OUT, REDEMPTIONS_OUT))


def build_services(
    settings: Settings,
    *,
    clock: Clock | None = None,
    partner_base_urls: Mapping[str, str] | None = None,
) -> Services:
    """The services on the database ``settings`` name. ``partner_base_urls`` points programs'
    connectors elsewhere than their declarations (tests run sandbox partners on free ports)."""
    clock = clock or SystemClock()
    db = Database.from_url(
        settings.database_url, idle_in_transaction_seconds=settings.database_idle_in_transaction_seconds
    )
    # The process environment holds partners' client secrets (``client_secret_env``).
    cache = CatalogCache(db, ttl=settings.catalog_cache_seconds)
    connectors = ConnectorRegistry(
        settings,
        environ=os.environ,
        base_urls=partner_base_urls,
        coalition=lambda program: CoalitionConnector(program.id, db, clock, conversion_queries.source_program, cache),
    )
    federation = Federation(
        db,
        connectors.for_program,
        cache,
        balance_ttl=settings.balance_cache_seconds,
        tier_ttl=settings.tier_cache_seconds,
    )
    key_secret = settings.key_encryption_secret.get_secret_value()
    keys = SigningKeys(db, key_secret, clock)
    people = PeopleService.for_settings(settings, db=db, clock=clock)
    gates = risk_gates()
    conversion_saga = ConversionSaga.for_settings(
        settings, db=db, connectors=connectors, catalog=cache, clock=clock, gates=gates
    )
    redemption_saga = RedemptionSaga.for_settings(
        settings, db=db, connectors=connectors, federation=federation, clock=clock, gates=gates
    )
    settlement = SettlementService.for_settings(settings, db=db, clock=clock)
    return Services(
        settings=settings,
        db=db,
        clock=clock,
        connectors=connectors,
        keys=keys,
        catalog=CatalogService(db, cache, clock),
        members=MemberService(
            db,
            federation,
            DebitConsents.for_settings(settings, db=db, clock=clock),
            cache,
            clock,
            LinkAttempts.for_settings(settings, db=db, clock=clock),
        ),
        conversions=ConversionService(
            db=db,
            saga=conversion_saga,
            quoting=Quoting.for_settings(settings, db=db, catalog=cache, federation=federation, clock=clock),
            federation=federation,
        ),
        pricing=PricingService(db, clock),
        rewards=RewardService(
            db,
            redemption_saga,
            cache,
            clock,
            federation,
        ),
        matches=StatusMatchService(
            db, StatusMatching.for_settings(settings, db=db, connectors=connectors, clock=clock)
        ),
        settlement=settlement,
        books=BooksService(db, settlement.calendar, clock),
        access=AccessService(
            db=db,
            keys=keys,
            clock=clock,
            key_secret=key_secret,
            token_lifetime=timedelta(seconds=settings.access_token_lifetime),
        ),
        people=people,
        portal=PortalSignInService(
            db,
            clock,
            catalog=cache,
            connectors=connectors,
            exchange_url=settings.issuer_url,
            timeouts=people.timeouts,
            tickets=SignInTickets(settings.key_encryption_secret.get_secret_value()),
        ),
        late=LateOutcomes(
            db=db,
            conversions=conversion_saga,
            redemptions=redemption_saga,
            connectors=connectors,
            catalog=cache,
            clock=clock,
            tolerance=settings.callback_tolerance_seconds,
        ),
        retrying=RetryingOperations(db=db, clock=clock),
        batches=CreditBatches(db=db, saga=conversion_saga, catalog=cache, clock=clock),
        risk=RiskService(db, HoldReview.of(db, conversion_saga, redemption_saga, clock)),
        webhooks=WebhookService.for_settings(settings, db=db, clock=clock),
        coalition=CoalitionService(db, Ledger.for_settings(settings, clock), clock),
        retention=Retention(db, clock, webhook_retention=timedelta(days=settings.webhook_retention_days)),
    )


@asynccontextmanager
async def open_services(settings: Settings, *, clock: Clock | None = None) -> AsyncIterator[Services]:
    """The services for a command, on a database that must be migrated already; everything
    closed afterwards."""
    await asyncio.to_thread(migrate.ensure_migrated, settings.database_url)
    services = build_services(settings, clock=clock)
    try:
        yield services
    finally:
        await services.aclose()


async def load_partners_directory(
    settings: Settings, *, clock: Clock | None = None, named_by: str = "EXCHANGE_PARTNERS_DIR"
) -> PartnersLoaded:
    """Read and validate ``settings.partners_dir`` whole, then create or update what it declares
    (``exchange partners load``). In production a declaration with an inline connector secret
    is refused; ``named_by`` is as for :func:`read_partners_directory`."""
    directory = read_partners_directory(
        settings.partners_dir, allow_inline_secrets=settings.environment != "production", named_by=named_by
    )
    async with open_services(settings, clock=clock) as services:
        return await services.catalog.load_partners(directory)
