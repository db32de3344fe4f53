"""Webhooks over GraphQL, as partners and staff tools use them: subscribing (tenant-checked,
bad URLs refused naming the field and the rule), the gateway's own worker delivering the
events of a real period close to a receiver on loopback, the delivery log, replay and
rotation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select
from standardwebhooks import Webhook

from exchange.auth.scopes import Role
from exchange.serving import RunningServer
from exchange.testing.kit import ExchangeKit
from exchange.webhooks import signing
from exchange.webhooks.delivery import CUT_OFF_BY_DELETION, CUT_OFF_BY_TAKEOVER
from exchange.webhooks.events import Event, EventType
from exchange.webhooks.models import (
    AttemptOutcome,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookRotation,
    WebhookSubscription,
)
from exchange.webhooks.outbox import emit
from exchange.webhooks.subscriptions import SECRET_SHOWN_AGAIN_FOR
from tests.api.conftest import Receiver

CREATE = """mutation($input: CreateWebhookSubscriptionInput!) {
  createWebhookSubscription(input: $input) { secret subscription { id programId url eventTypes } } }"""
SUBSCRIPTION = """query($id: ID!) { webhookSubscription(id: $id) {
  id deliveries { id eventId eventType object status attempts lastStatusCode }
  attempts { deliveryId statusCode outcome latencyMs } } }"""
REPLAY = """mutation($id: ID!, $ids: [ID!]) { replayWebhookDeliveries(subscriptionId: $id, deliveryIds: $ids) }"""
ROTATE = """mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret subscription { previousSecretUntil } } }"""
CLOSE = """mutation($period: String!) { closePeriod(period: $period) { status } }"""


async def settled(kit: ExchangeKit, token: str, subscription_id: str) -> dict[str, Any]:
    """The subscription once the worker has recorded every delivery's outcome."""
    async with asyncio.timeout(30):
        while True:
            seen = (await kit.data(SUBSCRIPTION, token, id=subscription_id))["webhookSubscription"]
            if all(delivery["status"] != "PENDING" for delivery in seen["deliveries"]):
                return dict(seen)
            await asyncio.sleep(0.05)


async def create(kit: ExchangeKit, token: str, **input: Any) -> dict[str, Any]:
    return dict((await kit.graphql(CREATE, token, input=input)).json())


async def test_a_partner_subscribes_for_its_own_program_only(
    kit: ExchangeKit, receiver: tuple[Receiver, RunningServer]
) -> None:
    url = receiver[1].url + "/hook"
    formosa = await kit.partner_token("formosa-air")
    made = await create(kit, formosa, url=url, eventTypes=["PERIOD_CLOSED"], programId="formosa-air")
    subscription = made["data"]["createWebhookSubscription"]
    assert subscription["secret"].startswith("whsec_")
    assert subscription["subscription"]["eventTypes"] == ["PERIOD_CLOSED"]

    theirs = await create(kit, formosa, url=url, eventTypes=["PERIOD_CLOSED"], programId="fresh-mart")
    assert theirs["data"]["createWebhookSubscription"] is None
    assert theirs["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    staffless = await create(kit, formosa, url=url, eventTypes=["PERIOD_CLOSED"])
    assert staffless["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    fresh = await kit.partner_token("fresh-mart")
    for query in (SUBSCRIPTION, ROTATE):
        body = (await kit.graphql(query, fresh, id=subscription["subscription"]["id"])).json()
        assert body["errors"][0]["extensions"] == {"code": "NOT_FOUND", "field": "id"}, body
    listed = await kit.data('{ webhookSubscriptions(programId: "fresh-mart") { id } }', fresh)
    assert listed["webhookSubscriptions"] == []
    member = await kit.member_token("formosa-air", "alice")
    refused = (await kit.graphql("{ webhookSubscriptions { id } }", member)).json()
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://partner.example/hook", "https-required"),
        ("https://user:secret@partner.example/hook", "no-credentials"),
        ("hook", "absolute"),
    ],
)
async def test_a_bad_url_is_refused_naming_the_field_and_the_rule(kit: ExchangeKit, url: str, rule: str) -> None:
    token = await kit.partner_token("formosa-air")
    body = await create(kit, token, url=url, eventTypes=["PERIOD_CLOSED"], programId="formosa-air")
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "input.url", "rule": rule}
    assert (await kit.data('{ webhookSubscriptions(programId: "formosa-air") { id } }', token)) == {
        "webhookSubscriptions": []
    }


async def test_replaying_more_ids_than_one_replay_takes_is_bad_input_not_an_outage(kit: ExchangeKit) -> None:
    """70,000 ids fit in a request body; as bound parameters they were past what PostgreSQL's
    client library sends, and its refusal came back as SERVICE_UNAVAILABLE ("try again")."""
    token = await kit.partner_token("formosa-air")
    made = await create(
        kit, token, url="https://partner.example/hook", eventTypes=["PERIOD_CLOSED"], programId="formosa-air"
    )
    subscription = made["data"]["createWebhookSubscription"]["subscription"]["id"]
    body = (await kit.graphql(REPLAY, token, id=subscription, ids=[str(n) for n in range(70_000)])).json()
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "deliveryIds"}, error
    assert "at most 10000" in error["message"]


async def test_a_replay_keyed_by_its_client_answers_its_first_request_and_refuses_another(kit: ExchangeKit) -> None:
    keyed = """mutation($id: ID!, $ids: [ID!], $dead: Boolean! = false, $key: String) {
      replayWebhookDeliveries(subscriptionId: $id, deliveryIds: $ids, dead: $dead, idempotencyKey: $key) }"""
    token = await kit.partner_token("formosa-air")
    made = await create(
        kit, token, url="https://partner.example/hook", eventTypes=["PERIOD_CLOSED"], programId="formosa-air"
    )
    subscription = made["data"]["createWebhookSubscription"]["subscription"]["id"]
    for _ in range(2):
        answer = await kit.data(keyed, token, id=subscription, dead=True, key="replay-1")
        assert answer == {"replayWebhookDeliveries": 0}
    other = (await kit.graphql(keyed, token, id=subscription, ids=["1"], key="replay-1")).json()
    assert other["errors"][0]["extensions"] == {"code": "IDEMPOTENCY_CONFLICT", "field": "idempotencyKey"}
    bad = (await kit.graphql(keyed, token, id=subscription, dead=True, key=" replay-1")).json()
    assert bad["errors"][0]["extensions"]["field"] == "idempotencyKey"


async def test_the_gateway_delivers_a_period_close_then_replays_and_rotates(
    kit: ExchangeKit, last_month: str, receiver: tuple[Receiver, RunningServer]
) -> None:
    hooks, server = receiver
    staff = await kit.staff_token(Role.SETTLEMENT)
    made = (
        await kit.data(
            CREATE, staff, input={"url": server.url + "/hook", "eventTypes": ["PERIOD_CLOSED", "STATEMENT_READY"]}
        )
    )["createWebhookSubscription"]
    subscription_id, secret = made["subscription"]["id"], made["secret"]
    assert made["subscription"]["programId"] is None

    await kit.data(CLOSE, staff, period=last_month)
    # One period.closed and a statement.ready per participant (wallet-pay, fresh-mart,
    # formosa-air and the exchange's fees), sent by the gateway's own worker.
    await hooks.wait_for(5)
    bodies = [Webhook(secret).verify(body, headers) for headers, body in hooks.received]
    assert sorted(body["type"] for body in bodies) == ["period.closed"] + ["statement.ready"] * 4
    assert {body["data"]["period"] for body in bodies} == {last_month}

    seen = await settled(kit, staff, subscription_id)
    assert {d["status"] for d in seen["deliveries"]} == {"DELIVERED"}
    assert {(a["statusCode"], a["outcome"]) for a in seen["attempts"]} == {(204, "DELIVERED")}
    await the_logs_come_a_page_at_a_time(kit, staff, subscription_id, seen)
    replayed = seen["deliveries"][0]
    assert (await kit.data(REPLAY, staff, id=subscription_id, ids=[replayed["id"]])) == {"replayWebhookDeliveries": 1}
    await hooks.wait_for(6)
    assert hooks.received[5][0]["webhook-id"] == replayed["eventId"]

    rotated = (await kit.data(ROTATE, staff, id=subscription_id))["rotateWebhookSecret"]
    assert rotated["secret"] != secret and rotated["subscription"]["previousSecretUntil"]
    bad = (await kit.graphql(REPLAY, staff, id=subscription_id, ids=["x"])).json()
    assert bad["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "deliveryIds"}


DELIVERY_PAGE = """query($id: ID!, $after: String, $status: WebhookDeliveryStatus) { webhookSubscription(id: $id) {
  page: deliveryPage(first: 2, after: $after, status: $status) { items { id } nextCursor } } }"""
ATTEMPT_PAGE = """query($id: ID!, $after: String) { webhookSubscription(id: $id) {
  page: attemptPage(first: 2, after: $after) { items { id: deliveryId } nextCursor } } }"""


async def walked(kit: ExchangeKit, token: str, query: str, **variables: Any) -> tuple[list[str], str | None]:
    """Every id of a log read two at a time, and the first cursor given out."""
    ids: list[str] = []
    after = first_cursor = None
    while True:
        page = (await kit.data(query, token, after=after, **variables))["webhookSubscription"]["page"]
        ids += [item["id"] for item in page["items"]]
        if page["nextCursor"] is None:
            return ids, first_cursor
        after = page["nextCursor"]
        first_cursor = first_cursor or after


async def the_logs_come_a_page_at_a_time(
    kit: ExchangeKit, token: str, subscription_id: str, seen: dict[str, Any]
) -> None:
    """Walked two at a time, each log reads as the whole list; a cursor is its own log's, for
    its own status filter."""
    deliveries, cursor = await walked(kit, token, DELIVERY_PAGE, id=subscription_id)
    assert deliveries == [delivery["id"] for delivery in seen["deliveries"]] and len(deliveries) == 5
    attempts, _ = await walked(kit, token, ATTEMPT_PAGE, id=subscription_id)
    assert attempts == [attempt["deliveryId"] for attempt in seen["attempts"]]
    for query, variables in ((DELIVERY_PAGE, {"status": "DELIVERED"}), (ATTEMPT_PAGE, {})):
        body = (await kit.graphql(query, token, id=subscription_id, after=cursor, **variables)).json()
        assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}, body


async def test_a_log_page_out_of_range_is_refused_on_its_own_field_only(kit: ExchangeKit) -> None:
    # The logs of a request load together; a bad `first` must not fail the good pages with it
    # (the logs are non-null lists: the refused one nulls the subscription, as it always did).
    token = await kit.partner_token("formosa-air")
    made = await create(
        kit, token, url="http://127.0.0.1:9/hook", eventTypes=["PERIOD_CLOSED"], programId="formosa-air"
    )
    query = """query($id: ID!) { webhookSubscription(id: $id) {
      deliveries { id } attempts { deliveryId } none: deliveries(first: 0) { id } } }"""
    body = (await kit.graphql(query, token, id=made["data"]["createWebhookSubscription"]["subscription"]["id"])).json()
    assert body["data"] == {"webhookSubscription": None}
    assert [(error["path"], error["extensions"]) for error in body["errors"]] == [
        (["webhookSubscription", "none"], {"code": "BAD_USER_INPUT", "field": "first"})
    ]


async def subscription_with_a_delivery(
    kit: ExchangeKit, token: str, delivery: dict[str, Any], attempts: list[dict[str, Any]]
) -> str:
    """A new subscription of formosa-air's to PERIOD_CLOSED with one delivery of an event, as
    ``delivery`` says it stands, tried once per item of ``attempts`` (its columns), all written
    by hand; the event is marked fanned out, so that the gateway's own worker leaves it be."""
    made = await create(
        kit, token, url="http://127.0.0.1:9/hook", eventTypes=["PERIOD_CLOSED"], programId="formosa-air"
    )
    subscription_id: str = made["data"]["createWebhookSubscription"]["subscription"]["id"]
    now = datetime.now(UTC)
    async with kit.db.transaction() as session:
        await emit(session, Event(EventType.PERIOD_CLOSED, "period:2026-10", None, {"period": "2026-10"}, now))
    async with kit.db.transaction() as session:
        event = (await session.exec(select(WebhookEvent))).one()
        event.fanned_out = True
        session.add(event)
        made_delivery = WebhookDelivery(
            subscription_id=subscription_id,
            sequence=event.sequence or 0,
            object=event.object,
            attempts=len(attempts),
            first_attempt_at=now,
            **delivery,
        )
        session.add(made_delivery)
        await session.flush()
        for attempt in attempts:
            session.add(
                WebhookAttempt(
                    delivery_id=made_delivery.id or 0,
                    subscription_id=subscription_id,
                    attempted_at=now,
                    latency_ms=5,
                    **attempt,
                )
            )
    return subscription_id


async def test_an_attempt_cut_off_on_its_way_is_in_the_delivery_log_with_its_reason(kit: ExchangeKit) -> None:
    """The worker logs an attempt sent while another worker took its delivery over as
    ``CUT_OFF`` (tests/integration/test_webhook_faults.py); the log shows it as such, reason
    and all, beside the attempt that delivered."""
    token = await kit.partner_token("formosa-air")
    now = datetime.now(UTC)
    subscription_id = await subscription_with_a_delivery(
        kit,
        token,
        {"status": DeliveryStatus.DELIVERED, "next_attempt_at": now, "finished_at": now},
        [
            {"status_code": 204, "outcome": AttemptOutcome.DELIVERED.value},
            {"status_code": 204, "error": CUT_OFF_BY_TAKEOVER, "outcome": AttemptOutcome.CUT_OFF.value},
        ],
    )
    query = """query($id: ID!) { webhookSubscription(id: $id) { attempts { statusCode outcome error } } }"""
    seen = await kit.data(query, token, id=subscription_id)
    assert seen["webhookSubscription"]["attempts"] == [
        {"statusCode": 204, "outcome": "CUT_OFF", "error": CUT_OFF_BY_TAKEOVER},
        {"statusCode": 204, "outcome": "DELIVERED", "error": None},
    ]


DELETED = """query($id: ID!, $deleted: Boolean!) { webhookSubscription(id: $id, includeDeleted: $deleted) {
  id deletedAt deliveryPage { items { status } } attemptPage { items { outcome error } } } }"""
LISTED = """query($program: ID, $deleted: Boolean!) {
  webhookSubscriptions(programId: $program, includeDeleted: $deleted) { id deletedAt } }"""


async def test_a_deleted_subscriptions_log_is_read_by_its_own_partner_on_request(kit: ExchangeKit) -> None:
    """What was pending when a partner deleted its subscription (CANCELLED) and the attempt on
    its way then (CUT_OFF) stay readable to that partner, asked with includeDeleted; to anyone
    else, and unasked, the subscription is not there."""
    token = await kit.partner_token("formosa-air")
    # Pending, due a day on: the worker does not try it before the deletion cancels it.
    subscription_id = await subscription_with_a_delivery(
        kit,
        token,
        {"next_attempt_at": datetime.now(UTC) + timedelta(days=1)},
        [{"error": CUT_OFF_BY_DELETION, "outcome": AttemptOutcome.CUT_OFF.value}],
    )
    delete = """mutation($id: ID!) { deleteWebhookSubscription(id: $id) { id deletedAt } }"""
    deleted = (await kit.data(delete, token, id=subscription_id))["deleteWebhookSubscription"]
    assert deleted["deletedAt"] is not None

    seen = (await kit.data(DELETED, token, id=subscription_id, deleted=True))["webhookSubscription"]
    assert seen == {
        "id": subscription_id,
        "deletedAt": deleted["deletedAt"],
        "deliveryPage": {"items": [{"status": "CANCELLED"}]},
        "attemptPage": {"items": [{"outcome": "CUT_OFF", "error": CUT_OFF_BY_DELETION}]},
    }
    listed = await kit.data(LISTED, token, program="formosa-air", deleted=True)
    assert listed["webhookSubscriptions"] == [{"id": subscription_id, "deletedAt": deleted["deletedAt"]}]
    assert await kit.data(LISTED, token, program="formosa-air", deleted=False) == {"webhookSubscriptions": []}

    unasked = (await kit.graphql(DELETED, token, id=subscription_id, deleted=False)).json()
    other = await kit.partner_token("fresh-mart")
    theirs = (await kit.graphql(DELETED, other, id=subscription_id, deleted=True)).json()
    rotated = (await kit.graphql(ROTATE, token, id=subscription_id)).json()
    for refused in (unasked, theirs, rotated):
        assert [error["extensions"]["code"] for error in refused["errors"]] == ["NOT_FOUND"], refused
    assert await kit.data(LISTED, other, program="fresh-mart", deleted=True) == {"webhookSubscriptions": []}
    staff = await kit.staff_token(Role.ADMIN)
    assert (await kit.data(DELETED, staff, id=subscription_id, deleted=True))["webhookSubscription"] == seen


KEYED = """mutation($input: CreateWebhookSubscriptionInput!, $key: String) {
  createWebhookSubscription(input: $input, idempotencyKey: $key) {
    secret secretWithheld subscription { id deletedAt } } }"""


async def test_a_repeated_subscription_request_answers_the_first_subscription_not_a_second(kit: ExchangeKit) -> None:
    """A retry after a lost answer, with the key it was sent with, makes no second subscription
    (every event would be delivered twice) and shows the same secret again while it signs, in
    the day after; after a rotation or a deletion the answer withholds it, saying why. The same
    key for another request is a conflict; another client's key is its own."""
    token = await kit.partner_token("formosa-air")
    hook = {"url": "https://partner.example/hook", "eventTypes": ["PERIOD_CLOSED"], "programId": "formosa-air"}
    first = (await kit.data(KEYED, token, input=hook, key="hook-1"))["createWebhookSubscription"]
    assert first["secret"].startswith("whsec_") and first["secretWithheld"] is None
    again = (await kit.data(KEYED, token, input=hook, key="hook-1"))["createWebhookSubscription"]
    assert again == first
    listed = await kit.data('{ webhookSubscriptions(programId: "formosa-air") { id } }', token)
    assert listed["webhookSubscriptions"] == [{"id": first["subscription"]["id"]}]

    other = (await kit.graphql(KEYED, token, input={**hook, "eventTypes": ["STATEMENT_READY"]}, key="hook-1")).json()
    assert other["errors"][0]["extensions"] == {"code": "IDEMPOTENCY_CONFLICT", "field": "idempotencyKey"}
    assert other["data"]["createWebhookSubscription"] is None
    staff = await kit.staff_token(Role.ADMIN)
    theirs = (await kit.data(KEYED, staff, input=hook, key="hook-1"))["createWebhookSubscription"]
    assert theirs["subscription"]["id"] != first["subscription"]["id"]

    subscription_id = first["subscription"]["id"]
    async with kit.db.transaction() as session:
        row = await session.get(WebhookSubscription, subscription_id)
        assert row is not None
        row.created_at -= SECRET_SHOWN_AGAIN_FOR + timedelta(minutes=1)
        session.add(row)
    late = (await kit.data(KEYED, token, input=hook, key="hook-1"))["createWebhookSubscription"]
    assert late == {"secret": None, "secretWithheld": "EXPIRED", "subscription": first["subscription"]}

    made = (await kit.data(KEYED, token, input=hook, key="hook-2"))["createWebhookSubscription"]
    await kit.data(ROTATE, token, id=made["subscription"]["id"])
    rotated = (await kit.data(KEYED, token, input=hook, key="hook-2"))["createWebhookSubscription"]
    assert (rotated["secret"], rotated["secretWithheld"]) == (None, "ROTATED")
    await kit.data("mutation($id: ID!) { deleteWebhookSubscription(id: $id) { id } }", token, id=subscription_id)
    deleted = (await kit.data(KEYED, token, input=hook, key="hook-1"))["createWebhookSubscription"]
    assert (deleted["secret"], deleted["secretWithheld"]) == (None, "DELETED")
    assert deleted["subscription"]["deletedAt"] is not None


async def test_deleting_a_subscription_again_answers_the_first_deletion(kit: ExchangeKit) -> None:
    """A retry of a deletion whose answer was lost is a success naming what was deleted, as the
    first answer was; an id that never was a subscription, or another program's, deleted or
    not, stays NOT_FOUND alike (no telling whether it exists)."""
    delete = """mutation($id: ID!) { deleteWebhookSubscription(id: $id) { id deletedAt } }"""
    token = await kit.partner_token("formosa-air")
    hook = {"url": "https://partner.example/hook", "eventTypes": ["PERIOD_CLOSED"], "programId": "formosa-air"}
    made = (await kit.data(CREATE, token, input=hook))["createWebhookSubscription"]["subscription"]["id"]
    first = (await kit.data(delete, token, id=made))["deleteWebhookSubscription"]
    assert first["id"] == made and first["deletedAt"] is not None
    assert (await kit.data(delete, token, id=made))["deleteWebhookSubscription"] == first

    other = await kit.partner_token("fresh-mart")
    live = (await kit.data(CREATE, token, input=hook))["createWebhookSubscription"]["subscription"]["id"]
    for caller, subscription_id in ((other, made), (other, live), (token, "no-such-subscription")):
        refused = (await kit.graphql(delete, caller, id=subscription_id)).json()
        assert refused["data"]["deleteWebhookSubscription"] is None
        assert [error["extensions"] for error in refused["errors"]] == [{"code": "NOT_FOUND", "field": "id"}]
    assert (await kit.data(SUBSCRIPTION, token, id=live))["webhookSubscription"]["id"] == live


async def test_a_repeated_rotation_answers_the_first_and_keeps_the_secret_the_receiver_holds(kit: ExchangeKit) -> None:
    """A rotation retried after a lost answer rotated again, and the secret the receiver still
    held stopped signing at once (a rotation during another's overlap ends the older secret).
    With the first one's key it answers that rotation: the same secret, the old one still
    signing beside it; a new key rotates, and the first key, sent later still, answers its own
    rotation (its secret withheld, replaced since) rather than rotating again."""
    rotate = """mutation($id: ID!, $key: String) { rotateWebhookSecret(id: $id, idempotencyKey: $key) {
      secret secretWithheld subscription { previousSecretUntil } } }"""
    token = await kit.partner_token("formosa-air")
    hook = {"url": "https://partner.example/hook", "eventTypes": ["PERIOD_CLOSED"], "programId": "formosa-air"}
    made = (await kit.data(CREATE, token, input=hook))["createWebhookSubscription"]
    subscription_id, held = made["subscription"]["id"], made["secret"]
    first = (await kit.data(rotate, token, id=subscription_id, key="rotation-1"))["rotateWebhookSecret"]
    assert first["secret"] not in (None, held) and first["secretWithheld"] is None
    assert (await kit.data(rotate, token, id=subscription_id, key="rotation-1"))["rotateWebhookSecret"] == first

    async def signing_secrets() -> tuple[str, str | None]:
        async with kit.db.transaction() as session:
            row = await session.get(WebhookSubscription, subscription_id)
            assert row is not None and row.previous_secret is not None
            key_secret = kit.settings.key_encryption_secret.get_secret_value()
            current = signing.unseal(row.secret, key_secret, row.id, row.secret_version)
            return current, signing.unseal(row.previous_secret, key_secret, row.id, row.secret_version - 1)

    assert await signing_secrets() == (first["secret"], held)

    async with kit.db.transaction() as session:
        rotation = await session.get(WebhookRotation, (subscription_id, "rotation-1"))
        assert rotation is not None
        rotation.rotated_at -= SECRET_SHOWN_AGAIN_FOR + timedelta(minutes=1)
        session.add(rotation)
    late = (await kit.data(rotate, token, id=subscription_id, key="rotation-1"))["rotateWebhookSecret"]
    assert late == {"secret": None, "secretWithheld": "EXPIRED", "subscription": first["subscription"]}
    assert await signing_secrets() == (first["secret"], held)

    second = (await kit.data(rotate, token, id=subscription_id, key="rotation-2"))["rotateWebhookSecret"]
    assert second["secret"] not in (None, held, first["secret"])
    assert await signing_secrets() == (second["secret"], first["secret"])
    # The first rotation retried later still: answered as it was, its secret replaced since.
    older = (await kit.data(rotate, token, id=subscription_id, key="rotation-1"))["rotateWebhookSecret"]
    assert older == {"secret": None, "secretWithheld": "ROTATED", "subscription": second["subscription"]}
    assert await signing_secrets() == (second["secret"], first["secret"]), "nothing rotated"
    assert (await kit.data(rotate, token, id=subscription_id, key="rotation-2"))["rotateWebhookSecret"] == second
