"""Webhook receivers that misbehave, each a real HTTP server on loopback, on PostgreSQL: one
that asks to be left alone for a while (429 or 503 with ``Retry-After``), one that redirects
to another host, one that answers an endless body, one that hangs up mid-answer, and one whose
secret is rotated while a delivery is on its way. Each delivery is retried with back-off under
its one ``webhook-id``, every attempt logged with its reason (one cut off on its way by a
deletion or a lost lease too), and never sent anywhere but the subscription's URL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from sqlmodel import col, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from exchange.db.database import Database
from exchange.services.webhooks import WebhookService
from exchange.serving import RunningServer, free_port, serving
from exchange.testing.clock import FrozenClock
from exchange.webhooks.delivery import CUT_OFF_BY_DELETION, CUT_OFF_BY_TAKEOVER, Claimed, DeliveryPass
from exchange.webhooks.events import Event, EventType
from exchange.webhooks.models import (
    AttemptOutcome,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from exchange.webhooks.outbox import emit
from exchange.webhooks.schedule import RetrySchedule
from exchange.webhooks.subscriptions import SubscriptionDraft, WithSecret
from tests.integration.test_webhooks import service_for, verified

Answer = Callable[[Request], Awaitable[Response]]


@dataclass
class Misbehaving:
    """A receiver on loopback whose every answer ``answer`` decides; it keeps what it was sent."""

    server: RunningServer
    answer: Answer
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        self.received.append((dict(request.headers), body))
        return await self.answer(request)


@dataclass
class Faults:
    db: Database
    clock: FrozenClock
    receiver: Misbehaving
    other: Misbehaving
    """A second receiver, as the other host a redirect points to."""

    async def subscribe(self, schedule: RetrySchedule | None = None) -> tuple[WithSecret, WebhookService]:
        service = service_for(self.db, self.clock, timeout=1, schedule=schedule)
        made = await service.create(SubscriptionDraft(self.receiver.server.url + "/hook", ["period.closed"]), by="t")
        return made, service

    async def closed(self, period: str = "2026-10") -> None:
        async with self.db.transaction() as session:
            await emit(
                session, Event(EventType.PERIOD_CLOSED, f"period:{period}", None, {"period": period}, self.clock.now())
            )

    async def delivery(self) -> WebhookDelivery:
        async with self.db.transaction() as session:
            (row,) = (await session.exec(select(WebhookDelivery))).all()
            return row


async def _no_content(_: Request) -> Response:
    return Response(status_code=204)


@pytest.fixture
async def faults(pg_db: Database) -> AsyncIterator[Faults]:
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    holders: list[Misbehaving] = []

    def app() -> Starlette:
        async def route(request: Request) -> Response:
            return await holders[index].hook(request)

        index = len(holders)
        return Starlette(routes=[Route("/{name}", route, methods=["POST"])])

    async with serving(app()) as first:
        holders.append(Misbehaving(first, _no_content))
        async with serving(app()) as second:
            holders.append(Misbehaving(second, _no_content))
            yield Faults(pg_db, clock, holders[0], holders[1])


async def test_a_receiver_that_asks_to_wait_with_retry_after_is_not_tried_again_sooner(faults: Faults) -> None:
    """429 with ``Retry-After`` in seconds, then 503 with it as an HTTP date: each next attempt
    waits what the receiver asked (the schedule alone would wait half a second), and the log
    says so; a receiver asking for more than the longest wait gets the longest."""
    answers = [
        Response(status_code=429, headers={"retry-after": "120"}),
        Response(
            status_code=503,
            headers={"retry-after": format_datetime(faults.clock.now() + timedelta(minutes=10), usegmt=True)},
        ),
        Response(status_code=429, headers={"retry-after": "99999999"}),
        Response(status_code=204),
    ]

    async def asks_to_wait(_: Request) -> Response:
        return answers.pop(0)

    faults.receiver.answer = asks_to_wait
    schedule = RetrySchedule(first=timedelta(seconds=1), longest=timedelta(hours=1), give_up_after=timedelta(days=1))
    made, service = await faults.subscribe(schedule)
    await faults.closed()
    waits = []
    for _ in range(3):
        await service.deliver()
        delivery = await faults.delivery()
        assert delivery.status == DeliveryStatus.PENDING
        waits.append(delivery.next_attempt_at - faults.clock.now())
        faults.clock.current = delivery.next_attempt_at - timedelta(seconds=1)
        assert await service.deliver() == DeliveryPass()  # not a second sooner
        faults.clock.current = delivery.next_attempt_at
    assert waits == [timedelta(seconds=120), timedelta(minutes=10) - timedelta(seconds=120), timedelta(hours=1)]
    await service.deliver()
    assert (await faults.delivery()).status == DeliveryStatus.DELIVERED
    log = (await service.attempts(None, made.subscription.id)).items
    assert [(attempt.status_code, attempt.error) for attempt in reversed(log)] == [
        (429, "HTTP 429, Retry-After 120 s"),
        (503, "HTTP 503, Retry-After 480 s"),
        (429, "HTTP 429, Retry-After 99999999 s"),
        (204, None),
    ]
    assert len({headers["webhook-id"] for headers, _ in faults.receiver.received}) == 1


async def test_a_redirect_to_another_host_is_not_followed_and_is_logged_as_such(faults: Faults) -> None:
    async def redirect(_: Request) -> Response:
        return Response(status_code=307, headers={"location": faults.other.server.url + "/inside"})

    faults.receiver.answer = redirect
    made, service = await faults.subscribe()
    await faults.closed()
    assert await service.deliver() == DeliveryPass(fanned_out=1, retrying=1)
    assert not faults.other.received  # nothing went where the redirect pointed
    (attempt,) = (await service.attempts(None, made.subscription.id)).items
    assert (attempt.status_code, attempt.error) == (307, "HTTP 307: redirects are not followed")


async def test_an_endless_body_is_not_read_and_a_receiver_hanging_up_mid_answer_is_retried(faults: Faults) -> None:
    """A 200 whose body never ends delivers at once (only the status counts); a receiver that
    hangs up halfway through its status line is a failed attempt, retried with the same id."""
    sent = 0

    async def endless(_: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            nonlocal sent
            while True:
                sent += 1
                yield b"x" * 65536
                await asyncio.sleep(0)

        return StreamingResponse(chunks(), status_code=200)

    faults.receiver.answer = endless
    made, service = await faults.subscribe()
    await faults.closed("2026-09")
    assert await service.deliver() == DeliveryPass(fanned_out=1, delivered=1)
    assert sent < 1000  # not 64 MB read

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 2")
        await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(hang_up, "127.0.0.1", port)
    try:
        async with faults.db.transaction() as session:
            row = await session.get(WebhookSubscription, made.subscription.id)
            assert row is not None
            row.url = f"http://127.0.0.1:{port}/hook"
            session.add(row)
        await faults.closed("2026-10")
        assert await service.deliver() == DeliveryPass(fanned_out=1, retrying=1)
    finally:
        server.close()
        await server.wait_closed()
    latest = (await service.attempts(None, made.subscription.id)).items[0]
    assert latest.status_code is None and (latest.error or "").startswith("RemoteProtocolError")


async def test_a_secret_rotated_while_a_delivery_is_on_its_way_signs_it_too(
    faults: Faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rotation commits after the worker claimed the delivery and before it sends it: the
    attempt, sent inside the overlap, carries the new secret's signature beside the old one,
    so a receiver that switched to the new secret at once verifies it as well as one that
    has not switched yet."""
    made, service = await faults.subscribe()
    await faults.closed()
    dispatcher = service.dispatcher
    claim = dispatcher.claim
    rotated: list[WithSecret] = []

    async def claim_then_rotate(batch: int) -> list[Claimed]:
        claimed = await claim(batch)
        if claimed and not rotated:
            rotated.append(await service.rotate_secret(None, made.subscription.id))
        return claimed

    monkeypatch.setattr(dispatcher, "claim", claim_then_rotate)
    assert await service.deliver() == DeliveryPass(fanned_out=1, delivered=1)
    ((headers, body),) = faults.receiver.received
    assert verified(rotated[0].secret, headers, body)["data"] == {"period": "2026-10"}
    assert verified(made.secret, headers, body)["data"] == {"period": "2026-10"}


async def test_a_subscription_deleted_while_a_delivery_is_on_its_way_is_sent_nothing_more(
    faults: Faults, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deletion commits after the worker claimed the delivery and before it sends it (a
    batch's later waves wait for its earlier ones): deleting stops the subscription, so the
    delivery, cancelled with it, is not sent."""
    made, service = await faults.subscribe()
    await faults.closed()
    dispatcher = service.dispatcher
    claim = dispatcher.claim

    async def claim_then_delete(batch: int) -> list[Claimed]:
        claimed = await claim(batch)
        if claimed:
            await service.delete(None, made.subscription.id)
        return claimed

    monkeypatch.setattr(dispatcher, "claim", claim_then_delete)
    assert await service.deliver() == DeliveryPass(fanned_out=1)
    assert faults.receiver.received == []
    assert (await faults.delivery()).status == DeliveryStatus.CANCELLED


async def attempts_logged(db: Database) -> list[WebhookAttempt]:
    async with db.transaction() as session:
        return list((await session.exec(select(WebhookAttempt).order_by(col(WebhookAttempt.id)))).all())


async def test_an_attempt_on_its_way_when_its_subscription_is_deleted_is_logged_cut_off_and_not_retried(
    faults: Faults,
) -> None:
    """The deletion commits while the receiver holds the request: the attempt was sent, so the
    log keeps it, as cut off by the deletion; the delivery stays cancelled and nothing more is
    sent to the stopped subscription."""
    made, service = await faults.subscribe()

    async def deleted_meanwhile(_: Request) -> Response:
        await service.delete(None, made.subscription.id)
        return Response(status_code=503)

    faults.receiver.answer = deleted_meanwhile
    await faults.closed()
    assert await service.deliver() == DeliveryPass(fanned_out=1, cut_off=1)
    (attempt,) = await attempts_logged(faults.db)
    assert (attempt.status_code, attempt.outcome, attempt.error) == (
        503,
        AttemptOutcome.CUT_OFF,
        f"{CUT_OFF_BY_DELETION}; HTTP 503",
    )
    faults.clock.advance(hours=1)
    assert await service.deliver() == DeliveryPass()
    assert len(faults.receiver.received) == 1
    assert (await faults.delivery()).status == DeliveryStatus.CANCELLED


async def test_an_attempt_whose_lease_ran_out_on_its_way_is_logged_cut_off_beside_the_one_that_took_over(
    faults: Faults,
) -> None:
    """The receiver holds the first attempt past its worker's lease; another worker claims the
    delivery, sends it and records it delivered. The first attempt, answered after, was sent
    too: the log shows both, the first cut off by the takeover, and the delivery stays
    delivered."""
    made, first = await faults.subscribe()
    second = service_for(faults.db, faults.clock, timeout=1)

    async def outlives_its_lease(_: Request) -> Response:
        if len(faults.receiver.received) == 1:
            faults.clock.advance(seconds=first.dispatcher.lease.total_seconds() + 1)
            assert await second.deliver() == DeliveryPass(delivered=1)
        return Response(status_code=204)

    faults.receiver.answer = outlives_its_lease
    await faults.closed()
    try:
        assert await first.deliver() == DeliveryPass(fanned_out=1, cut_off=1)
    finally:
        await second.aclose()
    assert len(faults.receiver.received) == 2
    log = (await first.attempts(None, made.subscription.id)).items
    assert [(attempt.status_code, attempt.outcome, attempt.error) for attempt in reversed(log)] == [
        (204, AttemptOutcome.DELIVERED, None),
        (204, AttemptOutcome.CUT_OFF, CUT_OFF_BY_TAKEOVER),
    ]
    assert (await faults.delivery()).status == DeliveryStatus.DELIVERED


async def test_a_receiver_that_hangs_holds_back_only_its_own_deliveries(faults: Faults) -> None:
    """The hanging receiver's six events are due before the healthy one's six, and the worker
    sends four at a time: unbounded, the hanging receiver's deliveries took every sending slot
    until they timed out, and the healthy receiver waited behind them. Capped at two in flight
    per subscription, and claimed again as attempts come back, the healthy receiver gets all
    six while the hanging one still holds its first two: here it answers only once the other
    has them all and both of its first two have reached it (on a busy machine the second may
    arrive after the healthy one's sixth), so each of its attempts is answered (none timed out)
    only if it did, and it never holds more than two."""
    service = service_for(faults.db, faults.clock, timeout=10)
    assert (service.dispatcher.concurrency, service.dispatcher.per_subscription) == (4, 2)
    hanging, healthy = faults.receiver, faults.other
    healthy_has_all = asyncio.Event()
    both_held = asyncio.Event()
    holding = 0
    most_held = 0

    async def hangs(_: Request) -> Response:
        nonlocal holding, most_held
        holding += 1
        most_held = max(most_held, holding)
        if holding == 2:
            both_held.set()
        try:
            await healthy_has_all.wait()
            await both_held.wait()
        finally:
            holding -= 1
        return Response(status_code=204)

    async def counts(_: Request) -> Response:
        if len(healthy.received) == 6:
            healthy_has_all.set()
        return Response(status_code=204)

    hanging.answer, healthy.answer = hangs, counts
    slow = await service.create(SubscriptionDraft(hanging.server.url + "/hook", ["period.closed"]), by="t")
    await service.create(SubscriptionDraft(healthy.server.url + "/hook", ["statement.ready"]), by="t")
    now = faults.clock.now()
    async with faults.db.transaction() as session:
        await emit(session, *(Event(EventType.PERIOD_CLOSED, f"period:{n}", None, {}, now) for n in range(6)))
        await emit(
            session,
            *(Event(EventType.STATEMENT_READY, f"statement:x:{n}", None, {}, now) for n in range(6)),
        )
    try:
        assert await service.deliver() == DeliveryPass(fanned_out=12, delivered=12)
    finally:
        await service.aclose()
    assert (len(healthy.received), len(hanging.received)) == (6, 6)
    log = (await service.attempts(None, slow.subscription.id)).items
    assert [(attempt.status_code, attempt.error) for attempt in log] == [(204, None)] * 6
    assert most_held == 2
