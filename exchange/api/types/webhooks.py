"""Webhook subscriptions, their deliveries and the delivery log, as GraphQL shows them."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.permissions import Rule, authorize_fields, own_program, requires, source
from exchange.api.types.pages import After, Page, replaced_by_page
from exchange.auth.scopes import Scope
from exchange.services.webhooks import MAX_PAGE
from exchange.webhooks.events import EventType
from exchange.webhooks.models import AttemptOutcome as AttemptOutcomeValue
from exchange.webhooks.models import DeliveryStatus as DeliveryStatusValue
from exchange.webhooks.models import WebhookAttempt as AttemptRow
from exchange.webhooks.models import WebhookSubscription as SubscriptionRow
from exchange.webhooks.subscriptions import SECRET_SHOWN_AGAIN_FOR, DeliveryView, Withheld, WithSecret

LogPage = Annotated[int, strawberry.argument(description=f"How many, from 1 to {MAX_PAGE} (else `BAD_USER_INPUT`).")]
InStatus = Annotated[
    "WebhookDeliveryStatus | None", strawberry.argument(description="Only those in this status; null: all.")
]

#: Staff tools (admins, settlement staff) reach every subscription.
STAFF: Rule = requires(Scope.ADMIN_READ, Scope.ADMIN_WRITE) | requires(Scope.SETTLEMENT_READ, Scope.SETTLEMENT_WRITE)
#: A partner reaches its own program's subscriptions; staff reach all.
OWNER_OR_STAFF: Rule = requires(Scope.PARTNER_READ, Scope.PARTNER_WRITE) & own_program(source("program_id")) | STAFF


@strawberry.enum(
    description="An event a webhook subscription may ask for. Its canonical name is the dotted one "
    "receivers read as the payload's `type` (`CONVERSION_COMPLETED` is `conversion.completed`); "
    "`exchange webhooks` prints that name and accepts either."
)
class WebhookEventType(Enum):
    _value_: str  # .value is the string: strawberry unwraps enum_value (mypy would see its wrapper)
    CONVERSION_COMPLETED = strawberry.enum_value(
        EventType.CONVERSION_COMPLETED.value, description="A conversion completed (`conversion.completed`)."
    )
    CONVERSION_FAILED = strawberry.enum_value(
        EventType.CONVERSION_FAILED.value, description="A conversion failed, nothing moved (`conversion.failed`)."
    )
    CONVERSION_REVERSED = strawberry.enum_value(
        EventType.CONVERSION_REVERSED.value,
        description="A conversion was reversed, its debit given back (`conversion.reversed`).",
    )
    STATUS_MATCH_GRANTED = strawberry.enum_value(
        EventType.STATUS_MATCH_GRANTED.value,
        description="A status match is in effect at the target program (`status_match.granted`).",
    )
    STATUS_MATCH_EXPIRED = strawberry.enum_value(
        EventType.STATUS_MATCH_EXPIRED.value,
        description="A status match was reverted at the target program (`status_match.expired`).",
    )
    REDEMPTION_HELD = strawberry.enum_value(
        EventType.REDEMPTION_HELD.value, description="A redemption is held for staff review (`redemption.held`)."
    )
    REDEMPTION_FAILED = strawberry.enum_value(
        EventType.REDEMPTION_FAILED.value, description="A redemption ended unpaid (`redemption.failed`)."
    )
    REDEMPTION_PAID = strawberry.enum_value(
        EventType.REDEMPTION_PAID.value, description="A redemption was paid (`redemption.paid`)."
    )
    REDEMPTION_REVERSED = strawberry.enum_value(
        EventType.REDEMPTION_REVERSED.value,
        description="A paid redemption was undone, its points given back (`redemption.reversed`).",
    )
    REDEMPTION_DELIVERED = strawberry.enum_value(
        EventType.REDEMPTION_DELIVERED.value, description="A reward's delivery was confirmed (`redemption.delivered`)."
    )
    PERIOD_CLOSED = strawberry.enum_value(
        EventType.PERIOD_CLOSED.value, description="A settlement period closed (`period.closed`)."
    )
    STATEMENT_READY = strawberry.enum_value(
        EventType.STATEMENT_READY.value,
        description="A participant's statement of a closed period is ready (`statement.ready`).",
    )


@strawberry.enum(description="Where a delivery stands.")
class WebhookDeliveryStatus(Enum):
    _value_: str  # .value is the string: strawberry unwraps enum_value (mypy would see its wrapper)
    PENDING = strawberry.enum_value(
        DeliveryStatusValue.PENDING.value, description="To be sent, or sent again, at its next attempt."
    )
    DELIVERED = strawberry.enum_value(DeliveryStatusValue.DELIVERED.value, description="The receiver answered 2xx.")
    DEAD = strawberry.enum_value(
        DeliveryStatusValue.DEAD.value,
        description="Retried for the whole retry window without a 2xx: dead-lettered, until replayed.",
    )
    CANCELLED = strawberry.enum_value(
        DeliveryStatusValue.CANCELLED.value, description="Its subscription was deleted before it was delivered."
    )


@strawberry.enum(description="What one try did to its delivery.")
class WebhookAttemptOutcome(Enum):
    _value_: str  # .value is the string: strawberry unwraps enum_value (mypy would see its wrapper)
    PENDING = strawberry.enum_value(
        AttemptOutcomeValue.PENDING.value, description="It failed; the delivery is tried again later."
    )
    DELIVERED = strawberry.enum_value(
        AttemptOutcomeValue.DELIVERED.value, description="The receiver answered 2xx: delivered."
    )
    DEAD = strawberry.enum_value(
        AttemptOutcomeValue.DEAD.value, description="It failed at the end of the retry window: dead-lettered."
    )
    CUT_OFF = strawberry.enum_value(
        AttemptOutcomeValue.CUT_OFF.value,
        description="Sent, but the delivery was taken from it on its way, so it moved nothing: its "
        "subscription was deleted meanwhile (the delivery is cancelled, never tried again), or another "
        "worker took the delivery over after this one's lease ran out. `error` says which; whether the "
        "receiver processed it is unknown (it dedupes on `webhook-id`).",
    )


@authorize_fields(OWNER_OR_STAFF)
@strawberry.type(description="One try at a delivery: the delivery log.")
class WebhookAttempt:
    delivery_id: strawberry.ID = strawberry.field(description="The delivery tried (`WebhookDelivery.id`).")
    attempted_at: datetime = strawberry.field(description="When the try started.")
    status_code: int | None = strawberry.field(description="The receiver's HTTP status; null if none came.")
    latency_ms: int = strawberry.field(description="Milliseconds until the answer, or until the try failed.")
    error: str | None = strawberry.field(
        description="Why the try failed (a status, a timeout, …), or why it was cut off."
    )
    outcome: WebhookAttemptOutcome = strawberry.field(
        description="The delivery's status after this try, or CUT_OFF: sent, but it moved nothing."
    )
    program_id: strawberry.Private[str | None]

    @classmethod
    def from_row(cls, row: AttemptRow, program_id: str | None) -> WebhookAttempt:
        return cls(
            delivery_id=strawberry.ID(str(row.delivery_id)),
            attempted_at=row.attempted_at,
            status_code=row.status_code,
            latency_ms=row.latency_ms,
            error=row.error,
            outcome=WebhookAttemptOutcome(row.outcome),
            program_id=program_id,
        )


@authorize_fields(OWNER_OR_STAFF)
@strawberry.type(description="One event to send to one subscription.")
class WebhookDelivery:
    id: strawberry.ID = strawberry.field(
        description="The delivery's number: `deliveryIds` in `replayWebhookDeliveries`."
    )
    event_id: str = strawberry.field(description="The event's id, sent as `webhook-id` (the same on every try).")
    event_type: WebhookEventType = strawberry.field(
        description="The event's type (the payload's `type` is its dotted name, such as `conversion.completed`)."
    )
    object: str = strawberry.field(description="What the event is about: `conversion:<id>`, `period:<YYYY-MM>`, ….")
    occurred_at: datetime = strawberry.field(description="When the change the event reports committed.")
    payload: str = strawberry.field(description="The JSON body sent, byte for byte.")
    status: WebhookDeliveryStatus = strawberry.field(description="Where the delivery stands.")
    attempts: int = strawberry.field(description="Tries since it was made (or last replayed).")
    next_attempt_at: datetime | None = strawberry.field(description="When it is tried next, while PENDING.")
    last_status_code: int | None = strawberry.field(
        description="The receiver's HTTP status at the latest try; null if none came or none was tried."
    )
    last_error: str | None = strawberry.field(description="Why the latest try failed; null if it did not.")
    finished_at: datetime | None = strawberry.field(
        description="When it was DELIVERED, dead-lettered or CANCELLED; null while PENDING."
    )
    program_id: strawberry.Private[str | None]

    @classmethod
    def from_view(cls, view: DeliveryView, program_id: str | None) -> WebhookDelivery:
        delivery, event = view.delivery, view.event
        pending = delivery.status == DeliveryStatusValue.PENDING
        return cls(
            id=strawberry.ID(str(delivery.id)),
            event_id=event.id,
            event_type=WebhookEventType(event.type),
            object=event.object,
            occurred_at=event.occurred_at,
            payload=event.body,
            status=WebhookDeliveryStatus(delivery.status),
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at if pending else None,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            finished_at=delivery.finished_at,
            program_id=program_id,
        )


@authorize_fields(OWNER_OR_STAFF)
@strawberry.type(
    description="A URL that receives the exchange's events of the listed types, signed by the "
    "Standard Webhooks rules. A partner's receives its own program's events only; a staff "
    "tool's (no program) receives every program's."
)
class WebhookSubscription:
    id: strawberry.ID = strawberry.field(description="The subscription's id.")
    program_id: strawberry.ID | None = strawberry.field(description="The partner's program; null for a staff tool's.")
    url: str = strawberry.field(description="Where events are POSTed.")
    event_types: list[WebhookEventType] = strawberry.field(
        description="The events it receives (each delivered with its dotted name as the payload's `type`)."
    )
    description: str = strawberry.field(description="What the receiver is, for people reading the list.")
    created_at: datetime = strawberry.field(
        description="When it was made. It receives every event committed after it was, and none before."
    )
    previous_secret_until: datetime | None = strawberry.field(
        description="After a rotation, until when deliveries are also signed with the old secret."
    )
    deleted_at: datetime | None = strawberry.field(
        description="When it was deleted (nothing is sent after; what was pending is CANCELLED); null while live."
    )

    @strawberry.field(
        description="Its deliveries, the latest event first; only those in `status` when given.",
        deprecation_reason=replaced_by_page("deliveryPage"),
    )
    async def deliveries(
        self, info: Info[Context, None], status: InStatus = None, first: LogPage = 50
    ) -> list[WebhookDelivery]:
        page = await self._deliveries(info, status, first, None)
        return list(page.items)

    @strawberry.field(
        description="Its deliveries, the latest event first: `first` of them after the cursor `after` (one "
        "given out for this subscription and `status`); only those in `status` when given.",
    )
    async def delivery_page(
        self, info: Info[Context, None], status: InStatus = None, first: LogPage = 50, after: After = None
    ) -> Page[WebhookDelivery]:
        return await self._deliveries(info, status, first, after)

    async def _deliveries(
        self, info: Info[Context, None], status: WebhookDeliveryStatus | None, first: int, after: str | None
    ) -> Page[WebhookDelivery]:
        """Through the request's loader: every subscription asked in one request in one read."""
        page = (info.context.caller().program_id, status.value if status is not None else None, first, after)
        views = await info.context.loaders.webhook_deliveries.load((page, str(self.id)))
        return Page.of(views, lambda view: WebhookDelivery.from_view(view, self.program_id))

    @strawberry.field(
        description="The delivery log: every try, the latest first.",
        deprecation_reason=replaced_by_page("attemptPage"),
    )
    async def attempts(self, info: Info[Context, None], first: LogPage = 50) -> list[WebhookAttempt]:
        page = await self._attempts(info, first, None)
        return list(page.items)

    @strawberry.field(
        description="The delivery log: every try, the latest first: `first` of them after the cursor `after`."
    )
    async def attempt_page(
        self, info: Info[Context, None], first: LogPage = 50, after: After = None
    ) -> Page[WebhookAttempt]:
        return await self._attempts(info, first, after)

    async def _attempts(self, info: Info[Context, None], first: int, after: str | None) -> Page[WebhookAttempt]:
        rows = await info.context.loaders.webhook_attempts.load(
            ((info.context.caller().program_id, first, after), str(self.id))
        )
        return Page.of(rows, lambda row: WebhookAttempt.from_row(row, self.program_id))

    @classmethod
    def from_row(cls, row: SubscriptionRow) -> WebhookSubscription:
        return cls(
            id=strawberry.ID(row.id),
            program_id=strawberry.ID(row.program_id) if row.program_id is not None else None,
            url=row.url,
            event_types=[WebhookEventType(name) for name in row.event_types],
            description=row.description,
            created_at=row.created_at,
            previous_secret_until=row.previous_secret_until,
            deleted_at=row.deleted_at,
        )


@strawberry.enum(
    description="Why the answer to a repeated `createWebhookSubscription` or `rotateWebhookSecret` (its "
    "`idempotencyKey` again) shows no secret. `rotateWebhookSecret` with a new key gives the subscription a new one."
)
class SecretWithheld(Enum):
    ROTATED = strawberry.enum_value(
        Withheld.ROTATED.value,
        description="The secret was rotated since: the rotation's answer showed the one that signs now.",
    )
    DELETED = strawberry.enum_value(
        Withheld.DELETED.value, description="The subscription was deleted: nothing is signed for it any more."
    )
    EXPIRED = strawberry.enum_value(
        Withheld.EXPIRED.value,
        description=f"The secret was made more than {SECRET_SHOWN_AGAIN_FOR.total_seconds() / 3600:g} "
        "hours before the repeat.",
    )


@authorize_fields(OWNER_OR_STAFF)
@strawberry.type(
    description="A subscription and its signing secret, shown this once (and to a repeat of the request "
    "that made it: `idempotencyKey`): store it now."
)
class WebhookSubscriptionSecret:
    subscription: WebhookSubscription = strawberry.field(description="The subscription made or rotated.")
    secret: str | None = strawberry.field(
        description="`whsec_` and the base64 of 32 random bytes (Standard Webhooks). Null only in the answer "
        "to a repeated request (`idempotencyKey`) that no longer shows it: `secretWithheld` says why."
    )
    secret_withheld: SecretWithheld | None = strawberry.field(
        description="Null when `secret` is shown; else why not (a repeated request)."
    )
    program_id: strawberry.Private[str | None]

    @classmethod
    def of(cls, made: WithSecret) -> WebhookSubscriptionSecret:
        return cls(
            subscription=WebhookSubscription.from_row(made.subscription),
            secret=made.secret,
            secret_withheld=None if made.withheld is None else SecretWithheld(made.withheld.value),
            program_id=made.subscription.program_id,
        )
