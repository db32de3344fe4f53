"""Webhooks: subscribing, rotating a secret, deleting, the delivery log, replaying.

A partner acts on its own program's subscriptions only (the service answers "not found" for
any other, whether or not it exists); staff tools (admin or settlement scopes) on all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.inputs import OptionalIdempotencyKey, Text, numeric_id
from exchange.api.permissions import Rule, argument, authorize, own_program, requires
from exchange.api.types.webhooks import (
    STAFF,
    WebhookEventType,
    WebhookSubscription,
    WebhookSubscriptionSecret,
)
from exchange.auth.scopes import Scope
from exchange.webhooks.models import DESCRIPTION_LENGTH, URL_LENGTH
from exchange.webhooks.subscriptions import REPLAY_LIMIT, SECRET_SHOWN_AGAIN_FOR, SubscriptionDraft

IncludeDeleted = Annotated[
    bool,
    strawberry.argument(
        description="Deleted subscriptions too (`deletedAt` set): nothing more is sent to them, and their "
        "delivery logs stay readable until the retention period ends."
    ),
]
SubscriptionId = Annotated[
    strawberry.ID,
    strawberry.argument(
        description="The subscription's id; another program's is `NOT_FOUND`, whether or not it exists."
    ),
]

#: A partner manages its own program's subscriptions; staff manage any.
MANAGE: Rule = requires(Scope.PARTNER_WRITE) | requires(Scope.ADMIN_WRITE) | requires(Scope.SETTLEMENT_WRITE)
READ: Rule = requires(Scope.PARTNER_READ) | STAFF


@strawberry.input(description="A URL to send events to.")
class CreateWebhookSubscriptionInput:
    url: Annotated[str, Text(URL_LENGTH)] = strawberry.field(
        description="https:// (in development also http:// to a loopback host); see docs/WEBHOOKS.md for the rule."
    )
    event_types: list[WebhookEventType] = strawberry.field(
        description="The events to send, at least one, each once; the payload's `type` is the value's dotted "
        "name (`CONVERSION_COMPLETED` arrives as `conversion.completed`)."
    )
    program_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="The program whose events it receives: a partner names its own; staff may name "
        "any, or none for every program's events.",
    )
    description: Annotated[str, Text(DESCRIPTION_LENGTH)] = strawberry.field(
        default="",
        description="What the receiver is, for people reading the list: one line, no control character or "
        "direction control (U+202E and the like).",
    )

    def to_draft(self) -> SubscriptionDraft:
        return SubscriptionDraft(
            url=self.url,
            event_types=[event_type.value for event_type in self.event_types],
            description=self.description,
            program_id=str(self.program_id) if self.program_id is not None else None,
        )


@strawberry.type
class WebhookQueries:
    @strawberry.field(
        description="Live webhook subscriptions (and deleted ones with `includeDeleted`): a partner's own "
        "program's; staff see every one, or `programId`'s when given. At most `EXCHANGE_WEBHOOK_MAX_SUBSCRIPTIONS` per program (and as many "
        "for the staff tools together): `createWebhookSubscription` refuses more.",
        extensions=[authorize(requires(Scope.PARTNER_READ) & own_program(argument("program_id")) | STAFF)],
    )
    async def webhook_subscriptions(
        self,
        info: Info[Context, None],
        program_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(
                description="Only this program's: a partner names its own (null is `FORBIDDEN` for a partner); "
                "staff: null for every program's."
            ),
        ] = None,
        include_deleted: IncludeDeleted = False,
    ) -> list[WebhookSubscription] | None:
        rows = await info.context.services.webhooks.subscriptions(
            info.context.caller().program_id,
            program_id=str(program_id) if program_id is not None else None,
            deleted=include_deleted,
        )
        return [WebhookSubscription.from_row(row) for row in rows]

    @strawberry.field(
        description="One webhook subscription by id; a deleted one is `NOT_FOUND` unless `includeDeleted`.",
        extensions=[authorize(READ)],
    )
    async def webhook_subscription(
        self, info: Info[Context, None], id: SubscriptionId, include_deleted: IncludeDeleted = False
    ) -> WebhookSubscription | None:
        row = await info.context.services.webhooks.subscription(
            info.context.caller().program_id, str(id), deleted=include_deleted
        )
        return WebhookSubscription.from_row(row)


@strawberry.type
class WebhookMutations:
    @strawberry.mutation(
        description="Subscribe a URL to events; the answer holds its signing secret, shown this once. "
        "A partner holds at most `EXCHANGE_WEBHOOK_MAX_SUBSCRIPTIONS` live subscriptions (else "
        "`LIMIT_EXCEEDED`). Give an `idempotencyKey` to make a retry safe: the same key with the same "
        "`input` answers the subscription the first request made, as it stands (no second one, and no "
        "`LIMIT_EXCEEDED`), with the same secret again while it signs, unrotated, and within "
        f"{SECRET_SHOWN_AGAIN_FOR.total_seconds() / 3600:g} hours of the first answer; else `secret` is null "
        "and `secretWithheld` says why (`rotateWebhookSecret` gives a new one). The same key with another "
        "`input` is `IDEMPOTENCY_CONFLICT` (`extensions.field` idempotencyKey). A key is the calling "
        "client's own. Without a key, a request sent twice makes two subscriptions.",
        extensions=[
            authorize(
                requires(Scope.PARTNER_WRITE) & own_program(argument("input.program_id"))
                | requires(Scope.ADMIN_WRITE)
                | requires(Scope.SETTLEMENT_WRITE)
            )
        ],
    )
    async def create_webhook_subscription(
        self,
        info: Info[Context, None],
        input: Annotated[CreateWebhookSubscriptionInput, strawberry.argument(description="The subscription.")],
        idempotency_key: Annotated[
            OptionalIdempotencyKey,
            strawberry.argument(description="Names this request, so that sending it again returns its subscription."),
        ] = None,
    ) -> WebhookSubscriptionSecret | None:
        made = await info.context.services.webhooks.create(
            input.to_draft(), by=info.context.caller().client_id, key=idempotency_key
        )
        return WebhookSubscriptionSecret.of(made)

    @strawberry.mutation(
        description="A new signing secret, shown this once; the old one also signs for "
        "`EXCHANGE_WEBHOOK_SECRET_OVERLAP_HOURS` while receivers switch (a rotation during another's overlap "
        "ends the older secret at once). Give an `idempotencyKey` to make a retry safe: the same key as the "
        "rotation of this subscription that made a secret answers that rotation again, the latest or an earlier "
        "one, nothing rotated (its secret again while it is the one signing and within "
        f"{SECRET_SHOWN_AGAIN_FOR.total_seconds() / 3600:g} hours, else `secret` null and `secretWithheld` "
        "ROTATED, once a later rotation replaced it, or EXPIRED); any other key, or none, rotates.",
        extensions=[authorize(MANAGE)],
    )
    async def rotate_webhook_secret(
        self,
        info: Info[Context, None],
        id: SubscriptionId,
        idempotency_key: Annotated[
            OptionalIdempotencyKey,
            strawberry.argument(description="Names this rotation, so that sending it again returns its secret."),
        ] = None,
    ) -> WebhookSubscriptionSecret | None:
        made = await info.context.services.webhooks.rotate_secret(
            info.context.caller().program_id, str(id), key=idempotency_key
        )
        return WebhookSubscriptionSecret.of(made)

    @strawberry.mutation(
        description="Stop a subscription: nothing more is sent and its pending deliveries are "
        "cancelled; it and its delivery log are still read with `includeDeleted` (`webhookSubscriptions`, "
        "`webhookSubscription`), until the retention period ends. Deleting it again (a retry) answers it as "
        "the first deletion left it (`deletedAt` unchanged), until the retention period ends.",
        extensions=[authorize(MANAGE)],
    )
    async def delete_webhook_subscription(
        self, info: Info[Context, None], id: SubscriptionId
    ) -> WebhookSubscription | None:
        row = await info.context.services.webhooks.delete(info.context.caller().program_id, str(id))
        return WebhookSubscription.from_row(row)

    @strawberry.mutation(
        description="Send finished deliveries again, each with a fresh retry window and its "
        f"original `webhook-id`: those in `deliveryIds` (at most {REPLAY_LIMIT:,}), or every dead-lettered one "
        "(`dead`), or every one of an event since `since`. Returns how many were queued. Give an "
        "`idempotencyKey` to make a retry safe: the same key with the same request (`subscriptionId`, and "
        "`deliveryIds`, or `dead` and `since` when it names none) answers how many the first replay queued, "
        "queuing nothing; the same key with another request is `IDEMPOTENCY_CONFLICT` (`extensions.field` "
        "idempotencyKey). A key is the calling client's own. Without a key, a request sent twice queues the "
        "deliveries twice.",
        extensions=[authorize(MANAGE)],
    )
    async def replay_webhook_deliveries(
        self,
        info: Info[Context, None],
        subscription_id: SubscriptionId,
        delivery_ids: Annotated[
            list[strawberry.ID] | None,
            strawberry.argument(
                description=f"These finished deliveries (`WebhookDelivery.id`), at most {REPLAY_LIMIT:,} (else "
                "`BAD_USER_INPUT`); when given, `dead` and `since` are not read."
            ),
        ] = None,
        dead: Annotated[
            bool,
            strawberry.argument(
                description="Every dead-lettered delivery (with `since`: of events since then), at most "
                f"{REPLAY_LIMIT:,} a request."
            ),
        ] = False,
        since: Annotated[
            datetime | None,
            strawberry.argument(
                description=f"Every finished delivery of an event since then (at most {REPLAY_LIMIT:,})."
            ),
        ] = None,
        idempotency_key: Annotated[
            OptionalIdempotencyKey,
            strawberry.argument(description="Names this replay, so that sending it again queues nothing more."),
        ] = None,
    ) -> int | None:
        caller = info.context.caller()
        return await info.context.services.webhooks.replay(
            caller.program_id,
            str(subscription_id),
            delivery_ids=[
                numeric_id(str(value), what="a delivery id", field="deliveryIds") for value in delivery_ids or []
            ],
            dead=dead,
            since=since,
            by=caller.client_id,
            key=idempotency_key,
        )
