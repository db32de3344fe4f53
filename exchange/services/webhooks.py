"""Webhooks as an application service: subscriptions, their logs, replays, and delivering.

``tenant`` is the acting partner's program (it reaches only its own subscriptions) or
``None`` for staff and the command line (see :mod:`exchange.webhooks.subscriptions`).
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from exchange.clock import Clock
from exchange.db.database import Database
from exchange.db.paging import Page
from exchange.errors import BadUserInput
from exchange.services.requests import idempotency_key, page_size
from exchange.settings import Settings
from exchange.webhooks import subscriptions
from exchange.webhooks.delivery import DeliveryPass, Dispatcher
from exchange.webhooks.models import WebhookAttempt, WebhookSubscription
from exchange.webhooks.schedule import RetrySchedule
from exchange.webhooks.subscriptions import DeliveryView, SubscriptionDraft, WithSecret

MAX_PAGE = 500


@dataclass
class WebhookService:
    db: Database
    clock: Clock
    dispatcher: Dispatcher
    key_secret: str
    production: bool
    rotation_overlap: timedelta
    max_subscriptions: int

    @classmethod
    def for_settings(cls, settings: Settings, *, db: Database, clock: Clock) -> WebhookService:
        key_secret = settings.key_encryption_secret.get_secret_value()
        return cls(
            db=db,
            clock=clock,
            dispatcher=Dispatcher(
                db=db,
                clock=clock,
                key_secret=key_secret,
                schedule=RetrySchedule(
                    first=timedelta(seconds=settings.webhook_first_retry_seconds),
                    longest=timedelta(seconds=settings.webhook_longest_retry_seconds),
                    give_up_after=timedelta(hours=settings.webhook_retry_hours),
                ),
                timeout=settings.webhook_timeout_seconds,
                concurrency=settings.webhook_concurrency,
                per_subscription=settings.webhook_subscription_concurrency,
                draw=random.SystemRandom().random,
                public_only=settings.environment == "production",
            ),
            key_secret=key_secret,
            production=settings.environment == "production",
            rotation_overlap=timedelta(hours=settings.webhook_secret_overlap_hours),
            max_subscriptions=settings.webhook_max_subscriptions,
        )

    async def create(self, draft: SubscriptionDraft, *, by: str, key: str | None = None) -> WithSecret:
        """A new subscription (see :func:`~exchange.webhooks.subscriptions.create`); with the
        client's idempotency ``key``, a repeat of its request answers the subscription it made."""
        async with self.db.transaction() as session:
            return await subscriptions.create(
                session,
                draft,
                production=self.production,
                key_secret=self.key_secret,
                by=by,
                now=self.clock.now(),
                limit=self.max_subscriptions,
                key=None if key is None else idempotency_key(key),
            )

    async def subscriptions(
        self, tenant: str | None, *, program_id: str | None = None, deleted: bool = False
    ) -> Sequence[WebhookSubscription]:
        """The live subscriptions the tenant sees; with ``deleted``, the deleted ones too."""
        async with self.db.transaction() as session:
            return await subscriptions.listed(session, tenant, program_id=program_id, deleted=deleted)

    async def subscription(
        self, tenant: str | None, subscription_id: str, *, deleted: bool = False
    ) -> WebhookSubscription:
        """A live subscription the tenant sees; with ``deleted``, or a deleted one."""
        async with self.db.transaction() as session:
            return await subscriptions.get(session, tenant, subscription_id, deleted=deleted)

    async def rotate_secret(self, tenant: str | None, subscription_id: str, *, key: str | None = None) -> WithSecret:
        """A new secret (see :func:`~exchange.webhooks.subscriptions.rotate`); with the idempotency
        ``key`` of the rotation that made the secret signing now, that rotation's answer again."""
        async with self.db.transaction() as session:
            return await subscriptions.rotate(
                session,
                tenant,
                subscription_id,
                key_secret=self.key_secret,
                overlap=self.rotation_overlap,
                now=self.clock.now(),
                key=None if key is None else idempotency_key(key),
            )

    async def delete(self, tenant: str | None, subscription_id: str) -> WebhookSubscription:
        async with self.db.transaction() as session:
            return await subscriptions.delete(session, tenant, subscription_id, self.clock.now())

    async def replay(
        self,
        tenant: str | None,
        subscription_id: str,
        *,
        delivery_ids: Collection[int] = (),
        dead: bool = False,
        since: datetime | None = None,
        by: str | None = None,
        key: str | None = None,
    ) -> int:
        """Queue deliveries again (see :func:`~exchange.webhooks.subscriptions.replay`); with the
        idempotency ``key`` of the client ``by``, a repeat of its request answers what it queued."""
        async with self.db.transaction() as session:
            return await subscriptions.replay(
                session,
                tenant,
                subscription_id,
                delivery_ids=delivery_ids,
                dead=dead,
                since=since,
                now=self.clock.now(),
                by=by,
                key=None if key is None else idempotency_key(key),
            )

    async def deliveries(
        self,
        tenant: str | None,
        subscription_id: str,
        *,
        status: str | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Page[DeliveryView]:
        """A page of one subscription's deliveries, the latest event first, after the cursor ``after``."""
        first = page_size(first, maximum=MAX_PAGE)
        async with self.db.transaction() as session:
            return await subscriptions.deliveries(
                session, tenant, subscription_id, status=status, first=first, after=after
            )

    async def delivery_pages(
        self,
        tenant: str | None,
        subscription_ids: Collection[str],
        *,
        status: str | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> dict[str, Page[DeliveryView] | BadUserInput]:
        """:meth:`deliveries` of many subscriptions at once (those the tenant sees), in as many
        statements for a list of them as for one; a subscription ``after`` is not a cursor of
        has that cursor's refusal for its answer."""
        first = page_size(first, maximum=MAX_PAGE)
        async with self.db.transaction() as session:
            return await subscriptions.delivery_pages(
                session, tenant, subscription_ids, status=status, first=first, after=after
            )

    async def attempts(
        self, tenant: str | None, subscription_id: str, *, first: int = 50, after: str | None = None
    ) -> Page[WebhookAttempt]:
        """A page of one subscription's delivery log, the latest try first, after the cursor ``after``."""
        first = page_size(first, maximum=MAX_PAGE)
        async with self.db.transaction() as session:
            return await subscriptions.attempts(session, tenant, subscription_id, first=first, after=after)

    async def attempt_pages(
        self, tenant: str | None, subscription_ids: Collection[str], *, first: int = 50, after: str | None = None
    ) -> dict[str, Page[WebhookAttempt] | BadUserInput]:
        """:meth:`attempts` of many subscriptions at once, as :meth:`delivery_pages`."""
        first = page_size(first, maximum=MAX_PAGE)
        async with self.db.transaction() as session:
            return await subscriptions.attempt_pages(session, tenant, subscription_ids, first=first, after=after)

    async def deliver(self) -> DeliveryPass:
        """One pass of the delivery worker (the gateway's job, ``exchange webhooks deliver``)."""
        return await self.dispatcher.run_once()

    async def aclose(self) -> None:
        await self.dispatcher.aclose()
