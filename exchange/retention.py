"""What the exchange forgets, and when: rows that only ever grow and that nothing reads after a
while, deleted in batches by set-based statements (never a Python loop over rows).

- **Quotes nobody executed**, a week after they expired (:data:`QUOTE_GRACE`). A quote a
  conversion used is that conversion's price and stays with it; a pruned quote is
  ``NOT_FOUND`` where it was ``QUOTE_EXPIRED``.
- **Webhook history** older than ``EXCHANGE_WEBHOOK_RETENTION_DAYS``: deliveries that ended
  (delivered, cancelled, or dead-lettered and not replayed since) with their attempts, then
  events no delivery names any more. A dead letter is replayable for that long.
- **Removed assertion keys and deleted webhook subscriptions**, :data:`REMOVED_GRACE` after
  their removal (a subscription, moreover, once no delivery of its log is left). They are kept
  so that a retry after a lost answer is answered as the first request was: ``removeAssertionKey``
  or ``deleteWebhookSubscription`` again answers what it removed, and a subscription's
  ``idempotencyKey`` again the subscription it made. An idempotency key has no expiry of its own
  (:mod:`exchange.idempotency`: it holds its row for as long as the row is kept), and the
  longest any such repeat is promised something particular is a day
  (:data:`~exchange.webhooks.subscriptions.SECRET_SHOWN_AGAIN_FOR`); so a retry comes well
  within the grace. After it, a removal sent again is ``NOT_FOUND``, and the creating request
  sent again with its key makes a new subscription. A pruned subscription's rotations go with
  it; a replay of deliveries made under an ``idempotencyKey`` is remembered as long, after
  which the same request sent again queues its deliveries again.

Nothing that moves points or money is ever pruned: the ledger, conversions, redemptions,
consents, settlement and the risk log are records, kept for good (or archived by period,
``exchange ledger archive``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Delete, delete, exists, select, tuple_
from sqlalchemy.orm import Mapped
from sqlmodel import SQLModel, col
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.auth.models import PartnerAssertionKey
from exchange.clock import Clock
from exchange.conversions.models import Conversion
from exchange.db.database import Database
from exchange.pricing.models import Quote
from exchange.text import counted
from exchange.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookReplay,
    WebhookRotation,
    WebhookSubscription,
)

#: How long after it expired an unexecuted quote is kept.
QUOTE_GRACE = timedelta(days=7)
#: How long a removed assertion key and a deleted webhook subscription are kept after their
#: removal, so that a retry of their removal, or of the subscription's creation, is answered.
REMOVED_GRACE = timedelta(days=30)
#: Deliveries that will not be sent again unless someone replays them.
ENDED = (DeliveryStatus.DELIVERED.value, DeliveryStatus.CANCELLED.value, DeliveryStatus.DEAD.value)


@dataclass(frozen=True, slots=True)
class Pruned:
    quotes: int = 0
    webhook_deliveries: int = 0
    webhook_attempts: int = 0
    webhook_events: int = 0
    webhook_replays: int = 0
    webhook_rotations: int = 0
    webhook_subscriptions: int = 0
    assertion_keys: int = 0

    def __str__(self) -> str:
        return (
            f"{counted(self.quotes, 'quote')}, {counted(self.webhook_deliveries, 'webhook delivery')} "
            f"({counted(self.webhook_attempts, 'attempt')}), {counted(self.webhook_events, 'webhook event')}, "
            f"{counted(self.webhook_replays, 'webhook replay')}, "
            f"{counted(self.webhook_subscriptions, 'deleted webhook subscription')} "
            f"({counted(self.webhook_rotations, 'rotation')}), "
            f"{counted(self.assertion_keys, 'removed assertion key')}"
        )


@dataclass
class Retention:
    db: Database
    clock: Clock
    webhook_retention: timedelta
    batch: int = 1000

    async def run_once(self) -> Pruned:
        """Delete what has passed its time, a batch per unit of work (short locks; a pass that
        stops halfway leaves nothing inconsistent and the next one goes on)."""
        now = self.clock.now()
        webhooks_before = now - self.webhook_retention
        ended = col(WebhookDelivery.status).in_(ENDED) & (col(WebhookDelivery.finished_at) < webhooks_before)
        attempts = await self._prune(
            WebhookAttempt,
            col(WebhookAttempt.id),
            exists().where(col(WebhookDelivery.id) == col(WebhookAttempt.delivery_id), ended),
        )
        deliveries = await self._prune(
            WebhookDelivery,
            col(WebhookDelivery.id),
            ended & ~exists().where(col(WebhookAttempt.delivery_id) == col(WebhookDelivery.id)),
        )
        events = await self._prune(
            WebhookEvent,
            col(WebhookEvent.sequence),
            col(WebhookEvent.fanned_out)
            & (col(WebhookEvent.occurred_at) < webhooks_before)
            & ~exists().where(col(WebhookDelivery.sequence) == col(WebhookEvent.sequence)),
        )
        quotes = await self._prune(
            Quote,
            col(Quote.id),
            (col(Quote.expires_at) < now - QUOTE_GRACE) & ~exists().where(col(Conversion.quote_id) == col(Quote.id)),
        )
        removed_before = now - REMOVED_GRACE
        replays = await self._prune(
            WebhookReplay,
            (col(WebhookReplay.created_by), col(WebhookReplay.idempotency_key)),
            col(WebhookReplay.created_at) < removed_before,
        )
        gone = (col(WebhookSubscription.deleted_at) < removed_before) & ~exists().where(
            col(WebhookDelivery.subscription_id) == col(WebhookSubscription.id)
        )
        rotations = await self._prune(
            WebhookRotation,
            (col(WebhookRotation.subscription_id), col(WebhookRotation.idempotency_key)),
            exists().where(col(WebhookSubscription.id) == col(WebhookRotation.subscription_id), gone),
        )
        subscriptions = await self._prune(WebhookSubscription, col(WebhookSubscription.id), gone)
        keys = await self._prune(
            PartnerAssertionKey,
            (col(PartnerAssertionKey.program_id), col(PartnerAssertionKey.kid)),
            col(PartnerAssertionKey.removed_at) < removed_before,
        )
        return Pruned(
            quotes=quotes,
            webhook_deliveries=deliveries,
            webhook_attempts=attempts,
            webhook_events=events,
            webhook_replays=replays,
            webhook_rotations=rotations,
            webhook_subscriptions=subscriptions,
            assertion_keys=keys,
        )

    async def _prune(
        self, model: type[SQLModel], key: Mapped[Any] | tuple[Mapped[Any], ...], condition: ColumnElement[bool]
    ) -> int:
        """Delete the rows of ``model`` (primary key ``key``, a column or several) that meet
        ``condition``, a batch per unit of work until none is left; how many. The condition is
        checked again on each row the delete locks (on PostgreSQL, a row changed meanwhile, say
        a dead letter replayed or a removed key registered again, is re-read and kept)."""
        columns = key if isinstance(key, tuple) else (key,)
        keyed = tuple_(*columns) if len(columns) > 1 else columns[0]
        batch = select(*columns).where(condition).limit(self.batch)
        statement = delete(model).where(keyed.in_(batch), condition)
        deleted = 0
        while True:
            async with self.db.transaction() as session:
                count = await _delete(session, statement)
            deleted += count
            if count < self.batch:
                return deleted


async def _delete(session: AsyncSession, statement: Delete) -> int:
    return int((await session.exec(statement)).rowcount)
