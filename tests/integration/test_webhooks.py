"""Webhooks end to end: events written by the sagas with their change, delivered to a real
receiver on loopback that fails and then recovers, signatures verified with the Standard
Webhooks reference library, order per object kept, retries and dead-lettering on an
injected clock, replay and secret rotation, and the history's retention."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from exchange.conversions.models import Conversion
from exchange.db.database import Database
from exchange.db.paging import Page
from exchange.errors import BadUserInput, IdempotencyConflict
from exchange.pricing.models import Quote
from exchange.programs.declarations import PartnersDirectory
from exchange.retention import REMOVED_GRACE, Pruned, Retention
from exchange.services.webhooks import WebhookService
from exchange.serving import RunningServer, free_port, serving
from exchange.settings import DEVELOPMENT_KEY_ENCRYPTION_SECRET
from exchange.testing.clock import FrozenClock
from exchange.testing.sandboxes import SandboxFleet
from exchange.tiers.expiry import MatchExpiry
from exchange.webhooks import subscriptions
from exchange.webhooks.delivery import DeliveryPass, Dispatcher, Outcome
from exchange.webhooks.errors import SubscriptionNotFound, TooManySubscriptions
from exchange.webhooks.events import Event, EventType
from exchange.webhooks.models import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from exchange.webhooks.outbox import emit
from exchange.webhooks.schedule import RetrySchedule
from exchange.webhooks.subscriptions import SubscriptionDraft, Withheld, WithSecret
from tests.conftest import SettableClock
from tests.integration import test_conversion_saga as conversions
from tests.reads import statements_sent

ALL_TYPES = [event_type.value for event_type in EventType]
CONVERSION_TYPES = ["conversion.completed", "conversion.failed", "conversion.reversed"]


@dataclass
class Receiver:
    """A webhook receiver on loopback: answers 503 to the next ``failures`` requests, then 204;
    keeps every request it was sent."""

    failures: int = 0
    received: list[tuple[str, dict[str, str], bytes, int]] = field(default_factory=list)
    server: RunningServer | None = None

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        status = 204
        if self.failures > 0:
            status, self.failures = 503, self.failures - 1
        self.received.append((request.url.path, dict(request.headers), body, status))
        return Response(status_code=status)

    def url(self, path: str = "/hook") -> str:
        assert self.server is not None
        return self.server.url + path

    def accepted(self, path: str = "/hook") -> list[tuple[dict[str, str], bytes]]:
        return [(headers, body) for at, headers, body, status in self.received if at == path and status == 204]


@dataclass
class Hooks:
    db: Database
    clock: FrozenClock
    service: WebhookService
    receiver: Receiver
    world: conversions.World

    async def subscribe(self, url: str, types: list[str], program_id: str | None = None) -> WithSecret:
        return await self.service.create(SubscriptionDraft(url, types, program_id=program_id), by="test")

    async def deliver_all(self, step: timedelta = timedelta(seconds=10), passes: int = 20) -> int:
        """Run the worker, moving the clock on between passes, until nothing is pending;
        how many passes it took."""
        for done in range(1, passes + 1):
            await self.service.deliver()
            if not await self.deliveries(DeliveryStatus.PENDING):
                return done
            self.clock.advance(seconds=step.total_seconds())
        raise AssertionError(f"deliveries still pending after {passes} passes")

    async def deliveries(self, status: DeliveryStatus | None = None) -> list[WebhookDelivery]:
        async with self.db.transaction() as session:
            query = select(WebhookDelivery).order_by(col(WebhookDelivery.id))
            if status is not None:
                query = query.where(WebhookDelivery.status == status)
            return list((await session.exec(query)).all())

    async def events(self) -> list[WebhookEvent]:
        async with self.db.transaction() as session:
            return list((await session.exec(select(WebhookEvent).order_by(col(WebhookEvent.sequence)))).all())

    async def emit(self, *events: Event) -> None:
        async with self.db.transaction() as session:
            await emit(session, *events)


def service_for(
    db: Database, clock: FrozenClock, *, timeout: float = 5, schedule: RetrySchedule | None = None
) -> WebhookService:
    dispatcher = Dispatcher(
        db=db,
        clock=clock,
        key_secret=DEVELOPMENT_KEY_ENCRYPTION_SECRET,
        schedule=schedule or RetrySchedule(),
        timeout=timeout,
        concurrency=4,
        draw=lambda: 0.0,  # no jitter: each wait is the shortest the schedule allows
    )
    return WebhookService(
        db=db,
        clock=clock,
        dispatcher=dispatcher,
        key_secret=DEVELOPMENT_KEY_ENCRYPTION_SECRET,
        production=False,
        rotation_overlap=timedelta(minutes=2),
        max_subscriptions=3,
    )


@pytest.fixture
async def hooks(db: Database) -> AsyncIterator[Hooks]:
    world = await conversions.make_world(db)
    # Near the real time: the reference library refuses signatures more than 5 minutes off.
    world.clock.current = datetime.now(UTC).replace(microsecond=0)
    receiver = Receiver()
    app = Starlette(routes=[Route("/{name}", receiver.hook, methods=["POST"])])
    async with serving(app) as server:
        receiver.server = server
        hooks = Hooks(db, world.clock, service_for(db, world.clock), receiver, world)
        try:
            yield hooks
        finally:
            await hooks.service.aclose()


def verified(secret: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The body, if the Standard Webhooks reference library accepts its signature."""
    return dict(Webhook(secret).verify(body, headers))


def redemption_event(event_type: EventType, redemption: str, now: datetime) -> Event:
    return Event(event_type, f"redemption:{redemption}", ("happy-card", "formosa-air"), {"id": redemption}, now)


async def test_a_receiver_that_fails_then_recovers_gets_every_event_signed_and_in_order_per_object(
    hooks: Hooks,
) -> None:
    staff = await hooks.subscribe(hooks.receiver.url("/staff"), ALL_TYPES)
    partner = await hooks.subscribe(hooks.receiver.url("/happy-card"), CONVERSION_TYPES, program_id="happy-card")
    world = hooks.world
    completed = await world.execute(await world.quote(1000), key="a")
    del world.partners["fresh-mart"].balances["bob"]  # bob is unknown at the target: reversed
    reversed_ = await world.execute(await world.quote(100, member="m2"), key="b", member="m2")
    elsewhere = await world.execute(await world.quote(1000, source="wallet-pay"), key="c")
    now = hooks.clock.now()
    await hooks.emit(
        redemption_event(EventType.REDEMPTION_PAID, "r1", now),
        redemption_event(EventType.REDEMPTION_DELIVERED, "r1", now),
    )
    events = await hooks.events()
    assert [(event.type, event.object) for event in events] == [
        ("conversion.completed", f"conversion:{completed.id}"),
        ("conversion.reversed", f"conversion:{reversed_.id}"),
        ("conversion.completed", f"conversion:{elsewhere.id}"),
        ("redemption.paid", "redemption:r1"),
        ("redemption.delivered", "redemption:r1"),
    ]

    hooks.receiver.failures = 6  # down for the first pass
    first = await hooks.service.deliver()
    # 5 events to staff, 2 to happy-card; the earliest of each object was tried (r1's delivery
    # waits for its payment's), and every try failed.
    assert (first.fanned_out, first.delivered, first.retrying) == (7, 0, 6)
    assert b"redemption.delivered" not in b"".join(body for _, _, body, _ in hooks.receiver.received)

    passes = await hooks.deliver_all()
    assert passes >= 2
    staff_bodies = [verified(staff.secret, headers, body) for headers, body in hooks.receiver.accepted("/staff")]
    assert sorted(body["type"] for body in staff_bodies) == sorted(event.type for event in events)
    r1 = [body["type"] for body in staff_bodies if body["data"].get("id") == "r1"]
    assert r1 == ["redemption.paid", "redemption.delivered"]
    partner_bodies = [
        verified(partner.secret, headers, body) for headers, body in hooks.receiver.accepted("/happy-card")
    ]
    assert sorted(body["data"]["id"] for body in partner_bodies) == sorted([completed.id, reversed_.id])
    assert {body["data"]["fromProgram"] for body in partner_bodies} == {"happy-card"}
    headers, body = hooks.receiver.accepted("/staff")[0]
    with pytest.raises(WebhookVerificationError):
        verified(partner.secret, headers, body)  # each subscription has its own secret
    with pytest.raises(WebhookVerificationError):
        verified(staff.secret, headers, body.replace(b"conversion", b"Conversion"))
    log = (await hooks.service.attempts(None, staff.subscription.id, first=50)).items
    assert sorted((attempt.status_code, attempt.outcome) for attempt in log).count((503, "PENDING")) >= 1
    assert all(attempt.latency_ms >= 0 for attempt in log)
    assert {d.status for d in await hooks.deliveries()} == {DeliveryStatus.DELIVERED}


class WorkerKilled(BaseException):
    """The delivery worker's process dies (no ``except Exception`` catches it)."""


async def test_a_worker_killed_between_sending_and_recording_leaves_each_event_sent_again_with_its_id(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The only test of a worker that dies after its receivers got the events and before it
    recorded a single attempt: once its lease runs out, the next pass sends each event again,
    same ``webhook-id`` and same body, so the receiver can dedupe; every event is delivered,
    and the attempt log holds only what was recorded."""
    staff = await hooks.subscribe(hooks.receiver.url("/staff"), CONVERSION_TYPES)
    world = hooks.world
    for key in ("a", "b", "c"):
        await world.execute(await world.quote(1000), key=key)

    async def killed(*_: object) -> None:
        raise WorkerKilled

    dispatcher = hooks.service.dispatcher
    with monkeypatch.context() as dying:
        dying.setattr(dispatcher, "record", killed)
        with pytest.raises(WorkerKilled):
            await hooks.service.deliver()
    first = [headers["webhook-id"] for headers, _ in hooks.receiver.accepted("/staff")]
    assert len(first) >= 1
    assert await hooks.service.deliver() == DeliveryPass()  # still leased to the dead worker

    hooks.clock.advance(seconds=dispatcher.lease.total_seconds() + 1)
    await hooks.deliver_all()
    accepted = hooks.receiver.accepted("/staff")
    bodies: dict[str, set[bytes]] = {}
    for headers, body in accepted:
        verified(staff.secret, headers, body)
        bodies.setdefault(headers["webhook-id"], set()).add(body)
    events = await hooks.events()
    assert sorted(bodies) == sorted(event.id for event in events)  # every event, at least once
    assert all(len(sent) == 1 for sent in bodies.values())  # each id always with the same body
    sent = [headers["webhook-id"] for headers, _ in accepted]
    assert all(sent.count(message_id) == 2 for message_id in first)  # what the dead worker sent went again
    assert {d.status for d in await hooks.deliveries()} == {DeliveryStatus.DELIVERED}
    log = (await hooks.service.attempts(None, staff.subscription.id, first=50)).items
    assert len(log) == len(events)


async def test_redemptions_and_status_matches_write_their_events_with_the_change(db: Database) -> None:
    from tests.integration import test_redemptions as redemptions

    world = await redemptions.make_world(db)
    reward = await world.reward()
    paid = await world.redeem(reward, "k1")
    delivered = await world.saga.confirm_delivery(paid.id, "formosa-air")
    cancelled = await world.saga.cancel((await world.redeem(reward, "k2")).id, member_id=world.alice)
    async with db.transaction() as session:
        rows = (await session.exec(select(WebhookEvent).order_by(col(WebhookEvent.sequence)))).all()
    assert [(row.type, row.object) for row in rows] == [
        ("redemption.paid", f"redemption:{paid.id}"),
        ("redemption.delivered", f"redemption:{delivered.id}"),
        ("redemption.paid", f"redemption:{cancelled.id}"),
        ("redemption.reversed", f"redemption:{cancelled.id}"),
    ]
    assert all(row.programs == ["happy-card", "formosa-air"] for row in rows)


async def test_a_redemption_whose_debit_is_refused_writes_one_failed_event(db: Database) -> None:
    from tests.integration import test_redemptions as redemptions

    world = await redemptions.make_world(db)
    world.partners["happy-card"].balances["alice"] = 100  # the reward costs 612 happy-card points
    failed = await world.redeem(await world.reward(), "poor")
    assert (failed.status, failed.failure_code) == ("FAILED", "INSUFFICIENT_POINTS")
    assert await world.recover() == 0
    async with db.transaction() as session:
        rows = (await session.exec(select(WebhookEvent))).all()
    assert [(row.type, row.object, row.programs) for row in rows] == [
        ("redemption.failed", f"redemption:{failed.id}", ["happy-card", "formosa-air"])
    ]
    data = json.loads(rows[0].body)["data"]
    assert (data["status"], data["failureCode"], data["cancelledBy"]) == ("FAILED", "INSUFFICIENT_POINTS", None)
    assert data["reason"]


async def test_a_receiver_that_never_answers_is_retried_with_backoff_then_dead_lettered_and_replayed(
    hooks: Hooks,
) -> None:
    down = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there: refused at once
    schedule = RetrySchedule(first=timedelta(hours=1), longest=timedelta(hours=20), give_up_after=timedelta(days=3))
    hooks.service = service_for(hooks.db, hooks.clock, schedule=schedule)
    subscription = await hooks.subscribe(down, ["period.closed"])
    started = hooks.clock.now()
    await hooks.emit(Event(EventType.PERIOD_CLOSED, "period:2026-10", None, {"period": "2026-10"}, started))
    waits: list[timedelta] = []
    for _ in range(100):
        await hooks.service.deliver()
        (delivery,) = await hooks.deliveries()
        if delivery.status != DeliveryStatus.PENDING:
            break
        waits.append(delivery.next_attempt_at - hooks.clock.now())
        hooks.clock.current = delivery.next_attempt_at
    # No jitter: each wait is half of an hour doubled per failure, capped at half of 20 hours;
    # the attempt whose next wait would end past three days is the last.
    assert waits == [timedelta(minutes=30 * 2**n) for n in range(5)] + [timedelta(hours=10)] * 5
    assert delivery.status == DeliveryStatus.DEAD
    assert timedelta(days=3) - timedelta(hours=10) < hooks.clock.now() - started <= timedelta(days=3)
    log = (await hooks.service.attempts(None, subscription.subscription.id, first=100)).items
    assert len(log) == len(waits) + 1 == delivery.attempts
    assert log[0].outcome == "DEAD" and all(attempt.status_code is None for attempt in log)
    assert "ConnectError" in (log[0].error or "")

    # Replay once the receiver is back (and the clock near the real time again, which the
    # reference library checks the timestamp against): the same message, to the new URL.
    hooks.clock.current = datetime.now(UTC)
    async with hooks.db.transaction() as session:
        row = await session.get(WebhookSubscription, subscription.subscription.id)
        assert row is not None
        row.url = hooks.receiver.url("/back")
        session.add(row)
    replayed = await hooks.service.replay(None, subscription.subscription.id, dead=True)
    assert replayed == 1
    await hooks.deliver_all()
    ((headers, body),) = hooks.receiver.accepted("/back")
    assert verified(subscription.secret, headers, body)["data"] == {"period": "2026-10"}
    assert headers["webhook-id"] == (await hooks.events())[0].id
    assert await hooks.service.replay(None, subscription.subscription.id, delivery_ids=[delivery.id or 0]) == 1
    await hooks.deliver_all()
    assert len(hooks.receiver.accepted("/back")) == 2
    with pytest.raises(BadUserInput):
        await hooks.service.replay(None, subscription.subscription.id)


async def test_a_replay_of_more_dead_letters_than_one_replay_takes_queues_the_oldest_first(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dead`` queues at most the replay limit: the oldest, so that replaying again until it
    queues none sends every dead letter, each object's earlier events first."""
    monkeypatch.setattr(subscriptions, "REPLAY_LIMIT", 2)
    subscription = await hooks.subscribe(hooks.receiver.url(), ["period.closed"])
    now = hooks.clock.now()
    # Periods named newest first, and dead-lettered newest first (the oldest's row is the last
    # written): neither an index on the object nor the table's order yields the oldest first.
    periods = ["2026-12", "2026-11", "2026-10"]
    await hooks.emit(*(Event(EventType.PERIOD_CLOSED, f"period:{p}", None, {"period": p}, now) for p in periods))
    await hooks.service.dispatcher.fan_out()
    oldest, *later = await hooks.deliveries()
    async with hooks.db.transaction() as session:
        for row in [*reversed(later), oldest]:
            await session.exec(
                update(WebhookDelivery).where(col(WebhookDelivery.id) == row.id).values(status=DeliveryStatus.DEAD)
            )
    queued = []
    while replayed := await hooks.service.replay(None, subscription.subscription.id, dead=True):
        queued.append([row.id for row in await hooks.deliveries(DeliveryStatus.PENDING)])
        assert replayed == len(queued[-1])
        async with hooks.db.transaction() as session:
            await session.exec(
                update(WebhookDelivery)
                .where(col(WebhookDelivery.status) == DeliveryStatus.PENDING)
                .values(status=DeliveryStatus.DELIVERED)
            )
    assert queued == [[oldest.id, later[0].id], [later[1].id]]


async def test_a_replay_sent_again_under_its_key_answers_the_first_and_queues_nothing(hooks: Hooks) -> None:
    """A retry of a replay after a lost answer queued every delivery again (each receiver got
    them once more). Under its key it answers the first replay's count, queuing nothing; the same
    key for another request is a conflict; another client's key is its own."""
    subscription = await hooks.subscribe(hooks.receiver.url(), ["period.closed"])
    now = hooks.clock.now()
    await hooks.emit(*(Event(EventType.PERIOD_CLOSED, f"period:{p}", None, {"period": p}, now) for p in ("10", "11")))
    await hooks.service.dispatcher.fan_out()

    async def dead_again() -> None:
        async with hooks.db.transaction() as session:
            await session.exec(update(WebhookDelivery).values(status=DeliveryStatus.DEAD))

    async def replay(by: str = "tool", **asked: Any) -> int:
        return await hooks.service.replay(None, subscription.subscription.id, by=by, key="replay-1", **asked)

    await dead_again()
    assert await replay(dead=True) == 2
    assert len(await hooks.deliveries(DeliveryStatus.PENDING)) == 2
    await dead_again()
    assert await replay(dead=True) == 2, "the first replay's answer"
    assert await hooks.deliveries(DeliveryStatus.PENDING) == [], "nothing queued again"
    first = (await hooks.deliveries())[0].id or 0
    with pytest.raises(IdempotencyConflict) as conflict:
        await replay(delivery_ids=[first])
    assert conflict.value.field == "idempotencyKey"
    assert await replay(by="another tool", delivery_ids=[first]) == 1


async def test_first_attempts_are_claimed_before_the_retries_a_receiver_that_is_down_piled_up(hooks: Hooks) -> None:
    """A receiver that is down piles up retries, each of which may take the whole timeout: in
    due-time order alone, another subscriber's new event would wait behind all of them."""
    down = await hooks.subscribe(f"http://127.0.0.1:{free_port()}/hook", ["period.closed"])
    now = hooks.clock.now()
    await hooks.emit(*(Event(EventType.PERIOD_CLOSED, f"period:2025-{m:02}", None, {}, now) for m in range(1, 6)))
    await hooks.service.dispatcher.fan_out()
    async with hooks.db.transaction() as session:  # each of them failed before, and is due again long since
        await session.exec(
            update(WebhookDelivery).values(attempts=3, next_attempt_at=now - timedelta(hours=1), first_attempt_at=now)
        )
    healthy = await hooks.subscribe(hooks.receiver.url(), ["period.closed"])
    hooks.clock.advance(seconds=1)
    await hooks.emit(Event(EventType.PERIOD_CLOSED, "period:2026-01", None, {}, hooks.clock.now()))
    await hooks.service.dispatcher.fan_out()
    claimed = await hooks.service.dispatcher.claim(batch=2)
    # The new event's first attempts, to both: the retries wait for the next claim.
    assert sorted((item.subscription_id, item.attempts) for item in claimed) == sorted(
        [(healthy.subscription.id, 0), (down.subscription.id, 0)]
    )
    # Then one retry: the receiver that is down has its first attempt in flight already, and
    # no subscription has more than two in flight.
    assert hooks.service.dispatcher.per_subscription == 2
    assert [item.attempts for item in await hooks.service.dispatcher.claim(batch=10)] == [3]


async def test_a_subscription_past_its_cap_has_none_claimed_until_enough_come_back(hooks: Hooks) -> None:
    """The cap lowered while a gateway still sends under the old one: the subscription has more
    in flight than it now allows. It has none claimed (and the claim does not fail) until its
    attempts coming back leave it below the cap, and then only the slots that are free."""
    await hooks.subscribe(hooks.receiver.url(), ["period.closed"])
    now = hooks.clock.now()
    await hooks.emit(*(Event(EventType.PERIOD_CLOSED, f"period:2025-{m:02}", None, {}, now) for m in range(1, 7)))
    await hooks.service.dispatcher.fan_out()
    dispatcher = hooks.service.dispatcher
    dispatcher.per_subscription = 3
    sending = await dispatcher.claim(batch=10)
    assert len(sending) == 3
    dispatcher.per_subscription = 2
    assert await dispatcher.claim(batch=10) == []
    assert await dispatcher.record(sending[0], Outcome(204, 1, None)) == DeliveryStatus.DELIVERED
    assert await dispatcher.claim(batch=10) == []
    assert await dispatcher.record(sending[1], Outcome(204, 1, None)) == DeliveryStatus.DELIVERED
    assert [item.attempts for item in await dispatcher.claim(batch=10)] == [0]
    assert await dispatcher.claim(batch=10) == []


async def test_a_later_event_of_an_object_waits_for_its_earlier_ones_next_attempt_then_follows_it(
    hooks: Hooks,
) -> None:
    """A delivery waiting behind an earlier one of its object that is being retried cannot go
    before that one's next attempt: it is due then (its nextAttemptAt says so), whether it was
    made before that one failed or after, and once that one is delivered it follows at once."""
    made = await hooks.subscribe(hooks.receiver.url(), ["redemption.paid", "redemption.delivered"])
    hooks.receiver.failures = 2  # the first attempts of r1.paid and r2.paid
    now = hooks.clock.now()
    await hooks.emit(
        redemption_event(EventType.REDEMPTION_PAID, "r1", now),
        redemption_event(EventType.REDEMPTION_DELIVERED, "r1", now),
        redemption_event(EventType.REDEMPTION_PAID, "r2", now),
    )
    assert (await hooks.service.deliver()).retrying == 2
    hooks.clock.advance(seconds=1)
    await hooks.emit(redemption_event(EventType.REDEMPTION_DELIVERED, "r2", hooks.clock.now()))
    assert (await hooks.service.deliver()).fanned_out == 1
    pending = {(await event_of(hooks, d)).type + ":" + d.object: d for d in await hooks.deliveries()}
    for redemption in ("redemption:r1", "redemption:r2"):
        earlier, later = pending["redemption.paid:" + redemption], pending["redemption.delivered:" + redemption]
        assert (earlier.attempts, later.attempts) == (1, 0)
        assert later.next_attempt_at == earlier.next_attempt_at > hooks.clock.now()
    assert await hooks.deliver_all() > 1
    received = [verified(made.secret, headers, body) for headers, body in hooks.receiver.accepted()]
    for redemption in ("r1", "r2"):
        assert [body["type"] for body in received if body["data"]["id"] == redemption] == [
            "redemption.paid",
            "redemption.delivered",
        ]


async def event_of(hooks: Hooks, delivery: WebhookDelivery) -> WebhookEvent:
    async with hooks.db.transaction() as session:
        return (await session.exec(select(WebhookEvent).where(WebhookEvent.sequence == delivery.sequence))).one()


async def test_a_claim_reads_none_of_the_later_events_waiting_behind_a_retried_delivery(pg_db: Database) -> None:
    """A receiver that is down with many objects' later events waiting behind their earlier
    ones' retries: each claim read every one of them by the index of due first attempts and
    passed it over (seconds a claim, with a day's backlog). Due at their earlier ones' next
    attempt, none is read before then: PostgreSQL's plan of the claim counts the rows read."""
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    service = service_for(pg_db, clock)
    dispatcher = service.dispatcher
    try:
        await service.create(SubscriptionDraft(f"http://127.0.0.1:{free_port()}/hook", ALL_TYPES), by="t")
        objects = 200
        async with pg_db.transaction() as session:
            for n in range(objects):
                await emit(session, redemption_event(EventType.REDEMPTION_PAID, f"r{n}", clock.now()))
        await dispatcher.fan_out()
        dispatcher.per_subscription = objects
        for item in await dispatcher.claim(batch=objects):
            assert await dispatcher.record(item, Outcome(503, 1, "HTTP 503")) == DeliveryStatus.PENDING
        dispatcher.per_subscription = 2
        async with pg_db.transaction() as session:
            for n in range(objects):
                await emit(session, redemption_event(EventType.REDEMPTION_DELIVERED, f"r{n}", clock.now()))
        assert await dispatcher.fan_out() == objects
        clock.advance(seconds=1)
        with statements_sent(pg_db.engine) as sent:
            assert await dispatcher.claim(batch=10) == []
        claims = [
            (statement, parameters)
            for statement, parameters in sent
            if statement.lstrip().startswith("SELECT webhook_delivery.id") and "SKIP LOCKED" in statement
        ]
        plan = await explained(pg_db, *claims[0])
        assert rows_read(plan, {"ix_webhook_delivery_first_due", "ix_webhook_delivery_retry_due"}) == 0, plan
    finally:
        await service.aclose()


async def explained(db: Database, statement: str, parameters: Any) -> dict[str, Any]:
    """EXPLAIN ANALYZE's plan (JSON) of ``statement``, run in a transaction rolled back (the
    rows it locks with it)."""
    async with db.engine.connect() as connection:
        result = await connection.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
        plan: dict[str, Any] = result.scalar_one()[0]["Plan"]
        await connection.rollback()
    return plan


def rows_read(plan: dict[str, Any], indexes: set[str]) -> int:
    """Rows the plan's scans of ``indexes`` read, over all their loops."""
    own = plan["Actual Rows"] * plan["Actual Loops"] if plan.get("Index Name") in indexes else 0
    return own + sum(rows_read(child, indexes) for child in plan.get("Plans", []))


async def test_a_cursor_read_with_other_subscriptions_pages_its_own_on_and_is_refused_for_the_others(
    hooks: Hooks,
) -> None:
    """Subscriptions' log pages asked in one request are read together: a cursor given out for
    one pages it on, and is refused for each of the others alone (naming ``after``), as it
    would be were each asked on its own."""
    made = [await hooks.subscribe(f"http://127.0.0.1:9/{n}", ["period.closed"]) for n in range(2)]
    ids = [subscription.subscription.id for subscription in made]
    now = hooks.clock.now()
    await hooks.emit(*(Event(EventType.PERIOD_CLOSED, f"period:2026-0{m}", None, {}, now) for m in (1, 2)))
    await hooks.service.dispatcher.fan_out()
    first = await hooks.service.delivery_pages(None, ids, first=1)
    for page in first.values():
        assert isinstance(page, Page) and page.next_cursor is not None, page
    again = await hooks.service.delivery_pages(None, ids, first=1, after=first[ids[0]].next_cursor)
    mine, theirs = again[ids[0]], again[ids[1]]
    assert isinstance(mine, Page) and mine.next_cursor is None
    assert [view.event.object for view in mine.items] == ["period:2026-01"]
    assert isinstance(theirs, BadUserInput) and theirs.field == "after"


async def test_a_stored_url_the_client_cannot_send_to_fails_its_own_attempts_not_the_batch(hooks: Hooks) -> None:
    """A subscription stored before its URL's rule refused a host no HTTP client sends to (a
    zero-width space in it): its attempts fail, logged, and the other subscriptions' deliveries
    claimed with them are sent and recorded, instead of the whole pass failing on every run."""
    theirs = await hooks.subscribe(hooks.receiver.url("/theirs"), ["period.closed"], program_id="fresh-mart")
    ours = await hooks.subscribe(hooks.receiver.url("/ours"), ["period.closed"], program_id="happy-card")
    async with hooks.db.transaction() as session:
        await session.exec(
            update(WebhookSubscription)
            .where(col(WebhookSubscription.id) == theirs.subscription.id)
            .values(url="https://fresh\u200bmart.example/hook")
        )
    await hooks.emit(Event(EventType.PERIOD_CLOSED, "period:2026-10", None, {"period": "2026-10"}, hooks.clock.now()))
    report = await hooks.service.deliver()
    assert (report.delivered, report.retrying) == (1, 1)
    ((headers, body),) = hooks.receiver.accepted("/ours")
    assert verified(ours.secret, headers, body)["data"] == {"period": "2026-10"}
    (attempt,) = (await hooks.service.attempts(None, theirs.subscription.id)).items
    assert (attempt.error or "").startswith("InvalidURL:"), attempt


async def test_a_rotated_secret_signs_beside_the_old_one_until_the_overlap_ends(hooks: Hooks) -> None:
    old = await hooks.subscribe(hooks.receiver.url(), ["period.closed"])
    new = await hooks.service.rotate_secret(None, old.subscription.id)
    assert new.secret != old.secret and new.secret.startswith("whsec_")
    await hooks.emit(Event(EventType.PERIOD_CLOSED, "period:2026-09", None, {"period": "2026-09"}, hooks.clock.now()))
    await hooks.deliver_all()
    hooks.clock.advance(minutes=2, seconds=1)  # the overlap is over
    await hooks.emit(Event(EventType.PERIOD_CLOSED, "period:2026-10", None, {"period": "2026-10"}, hooks.clock.now()))
    await hooks.deliver_all()
    (during_headers, during_body), (after_headers, after_body) = hooks.receiver.accepted()
    assert len(during_headers["webhook-signature"].split()) == 2
    assert verified(old.secret, during_headers, during_body) == verified(new.secret, during_headers, during_body)
    assert len(after_headers["webhook-signature"].split()) == 1
    assert verified(new.secret, after_headers, after_body)["data"] == {"period": "2026-10"}
    with pytest.raises(WebhookVerificationError):
        verified(old.secret, after_headers, after_body)


async def test_a_partner_reaches_only_its_own_subscriptions_and_events(hooks: Hooks) -> None:
    theirs = await hooks.subscribe(hooks.receiver.url("/fresh"), ALL_TYPES, program_id="fresh-mart")
    ours = await hooks.subscribe(hooks.receiver.url("/happy"), ALL_TYPES, program_id="happy-card")
    assert [row.id for row in await hooks.service.subscriptions("happy-card")] == [ours.subscription.id]
    for attempt in (
        hooks.service.subscription("happy-card", theirs.subscription.id),
        hooks.service.rotate_secret("happy-card", theirs.subscription.id),
        hooks.service.delete("happy-card", theirs.subscription.id),
        hooks.service.replay("happy-card", theirs.subscription.id, dead=True),
        hooks.service.attempts("happy-card", theirs.subscription.id),
    ):
        with pytest.raises(SubscriptionNotFound):
            await attempt
    now = hooks.clock.now()
    await hooks.emit(
        Event(EventType.STATEMENT_READY, "statement:fresh-mart:2026-10", ("fresh-mart",), {"p": "fresh-mart"}, now),
        Event(EventType.PERIOD_CLOSED, "period:2026-10", None, {"period": "2026-10"}, now),
    )
    await hooks.deliver_all()
    assert [verified(ours.secret, h, b)["type"] for h, b in hooks.receiver.accepted("/happy")] == ["period.closed"]
    assert len(hooks.receiver.accepted("/fresh")) == 2
    await hooks.service.delete("fresh-mart", theirs.subscription.id)
    assert [row.id for row in await hooks.service.subscriptions(None)] == [ours.subscription.id]


async def test_a_partner_holds_at_most_the_configured_subscriptions(hooks: Hooks) -> None:
    made = [
        await hooks.subscribe(hooks.receiver.url(f"/{n}"), ["period.closed"], program_id="happy-card") for n in range(3)
    ]
    with pytest.raises(TooManySubscriptions) as refused:
        await hooks.subscribe(hooks.receiver.url("/4"), ["period.closed"], program_id="happy-card")
    assert refused.value.extensions()["code"] == "LIMIT_EXCEEDED"
    await hooks.subscribe(hooks.receiver.url("/other"), ["period.closed"], program_id="fresh-mart")  # its own count
    await hooks.service.delete("happy-card", made[0].subscription.id)
    await hooks.subscribe(hooks.receiver.url("/4"), ["period.closed"], program_id="happy-card")


async def test_a_receiver_slower_than_the_timeout_is_cut_off_and_retried(hooks: Hooks) -> None:
    never = asyncio.Event()

    async def hang(_: Request) -> Response:
        await never.wait()
        return Response(status_code=204)

    async with serving(Starlette(routes=[Route("/slow", hang, methods=["POST"])])) as slow:
        service = service_for(hooks.db, hooks.clock, timeout=0.2)
        subscription = await service.create(SubscriptionDraft(slow.url + "/slow", ["period.closed"]), by="test")
        await hooks.emit(Event(EventType.PERIOD_CLOSED, "period:2026-10", None, {}, hooks.clock.now()))
        report = await service.deliver()
        never.set()
        await service.aclose()
    assert (report.delivered, report.retrying) == (0, 1)
    (attempt,) = (await service.attempts(None, subscription.subscription.id)).items
    assert "Timeout" in (attempt.error or "") and attempt.latency_ms < 5000


async def test_a_status_match_writes_granted_then_expired(
    pg_db: Database, sandboxes: SandboxFleet, sample_partners: PartnersDirectory, sandbox_clock: SettableClock
) -> None:
    from tests.integration import test_status_matches as matches

    async for world in matches.make_world(pg_db, sandboxes, sample_partners, sandbox_clock):
        match = await world.matching.request(world.member, "harbor-bank", "formosa-air")
        world.advance(timedelta(days=91))
        assert await MatchExpiry(world.matching.saga).run_once() == 1
    async with pg_db.transaction() as session:
        rows = (await session.exec(select(WebhookEvent).order_by(col(WebhookEvent.sequence)))).all()
    assert [(row.type, row.object, row.programs) for row in rows] == [
        ("status_match.granted", f"status_match:{match.id}", ["harbor-bank", "formosa-air"]),
        ("status_match.expired", f"status_match:{match.id}", ["harbor-bank", "formosa-air"]),
    ]
    assert json.loads(rows[0].body)["data"]["tier"] == "Gold"


async def test_two_workers_in_parallel_send_each_event_once_and_each_objects_events_in_order(pg_db: Database) -> None:
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    receiver = Receiver()
    async with serving(Starlette(routes=[Route("/{name}", receiver.hook, methods=["POST"])])) as server:
        receiver.server = server
        first, second = service_for(pg_db, clock), service_for(pg_db, clock)
        try:
            made = await first.create(
                SubscriptionDraft(receiver.url(), ["redemption.paid", "redemption.delivered"]), by="t"
            )
            async with pg_db.transaction() as session:
                for n in range(15):
                    await emit(session, redemption_event(EventType.REDEMPTION_PAID, f"r{n}", clock.now()))
            async with pg_db.transaction() as session:
                for n in range(15):
                    await emit(session, redemption_event(EventType.REDEMPTION_DELIVERED, f"r{n}", clock.now()))
            await asyncio.gather(first.deliver(), second.deliver(), first.deliver(), second.deliver())
        finally:
            await first.aclose()
            await second.aclose()
    received = [(headers["webhook-id"], verified(made.secret, headers, body)) for headers, body in receiver.accepted()]
    assert len(received) == len({message_id for message_id, _ in received}) == 30
    for n in range(15):
        assert [body["type"] for _, body in received if body["data"]["id"] == f"r{n}"] == [
            "redemption.paid",
            "redemption.delivered",
        ]


async def table_sizes(hooks: Hooks) -> dict[str, int]:
    async with hooks.db.transaction() as session:
        return {
            model.__name__: len((await session.exec(select(model))).all())
            for model in (Quote, Conversion, WebhookEvent, WebhookDelivery, WebhookAttempt)
        }


async def test_retention_prunes_what_is_past_its_keeping_and_keeps_the_rest(hooks: Hooks) -> None:
    """Quotes nobody executed go a week after they expired; ended deliveries, with their
    attempts and events, after the retention period; what a conversion used, and a delivery
    still to be sent, stay (``exchange.retention``)."""
    await hooks.subscribe(hooks.receiver.url("/a"), CONVERSION_TYPES)
    await hooks.subscribe(hooks.receiver.url("/b"), CONVERSION_TYPES)
    world = hooks.world
    executed = await world.execute(await world.quote(1000), key="a")
    await world.execute(await world.quote(1000, member="m2"), key="b", member="m2")
    never_executed = await world.quote(1000)
    await hooks.deliver_all()
    start = hooks.clock.now()
    async with hooks.db.transaction() as session:
        ids = (await session.exec(select(WebhookDelivery.id).order_by(col(WebhookDelivery.id)))).all()
        # one delivery dead-lettered, one replayed (pending again): only the first may go
        await session.exec(update(WebhookDelivery).where(col(WebhookDelivery.id) == ids[0]).values(status="DEAD"))
        await session.exec(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.id) == ids[1])
            .values(status=DeliveryStatus.PENDING.value, finished_at=None)
        )
    before = await table_sizes(hooks)
    assert before == {"Quote": 3, "Conversion": 2, "WebhookEvent": 2, "WebhookDelivery": 4, "WebhookAttempt": 4}

    def retention(days: float) -> Retention:
        return Retention(hooks.db, FrozenClock(start + timedelta(days=days)), timedelta(days=90), batch=1)

    assert await retention(6).run_once() == Pruned()
    assert await retention(8).run_once() == Pruned(quotes=1)
    async with hooks.db.transaction() as session:
        assert await session.get(Quote, never_executed.id) is None
        assert await session.get(Quote, executed.quote_id) is not None
    assert await retention(89).run_once() == Pruned()

    # Past 90 days: three ended deliveries and their attempts go; the replayed one, its
    # attempt and its event stay, and so does every conversion and the quotes they used.
    assert await retention(91).run_once() == Pruned(webhook_deliveries=3, webhook_attempts=3, webhook_events=1)
    assert await table_sizes(hooks) == {
        "Quote": 2,
        "Conversion": 2,
        "WebhookEvent": 1,
        "WebhookDelivery": 1,
        "WebhookAttempt": 1,
    }
    async with hooks.db.transaction() as session:
        kept = await session.get(WebhookDelivery, ids[1])
        assert kept is not None and kept.status == DeliveryStatus.PENDING
    assert await retention(365).run_once() == Pruned()


async def test_a_deleted_subscription_answers_retries_until_the_grace_and_its_log_is_gone_then_is_pruned(
    hooks: Hooks,
) -> None:
    """A deleted subscription stays for ``REMOVED_GRACE`` (its creation's key, sent again,
    answers it, as its deletion sent again does), and for as long as a delivery of its log is
    kept; then the retention job deletes it, with its rotations. A keyed replay is remembered
    as long. A live one stays."""
    draft = SubscriptionDraft(hooks.receiver.url("/a"), CONVERSION_TYPES)
    logged = await hooks.service.create(draft, by="test", key="logged")
    # quiet takes no event of a conversion: its log stays empty
    quiet = await hooks.service.create(
        SubscriptionDraft(hooks.receiver.url("/b"), ["redemption.paid"]), by="test", key="quiet"
    )
    live = await hooks.subscribe(hooks.receiver.url("/c"), CONVERSION_TYPES)
    await hooks.world.execute(await hooks.world.quote(1000), key="a")
    await hooks.deliver_all()
    await hooks.service.rotate_secret(None, quiet.subscription.id, key="rotated")
    await hooks.service.replay(None, logged.subscription.id, dead=True, by="test", key="replayed")
    start = hooks.clock.now()
    for made in (logged, quiet):
        await hooks.service.delete(None, made.subscription.id)

    def retention(after: timedelta) -> Retention:
        return Retention(hooks.db, FrozenClock(start + after), timedelta(days=90), batch=1)

    assert await retention(REMOVED_GRACE).run_once() == Pruned()
    hooks.clock.current = start + REMOVED_GRACE
    repeated = await hooks.service.create(draft, by="test", key="logged")
    assert (repeated.subscription.id, repeated.secret, repeated.withheld) == (
        logged.subscription.id,
        None,
        Withheld.DELETED,
    )
    assert (await hooks.service.delete(None, quiet.subscription.id)).deleted_at == start

    assert await retention(REMOVED_GRACE + timedelta(seconds=1)).run_once() == Pruned(
        webhook_replays=1, webhook_rotations=1, webhook_subscriptions=1
    )
    # Past the webhook retention, the event's two deliveries (to logged and to live) end their
    # keeping; logged, its log gone, goes with them.
    assert await retention(timedelta(days=91)).run_once() == Pruned(
        webhook_deliveries=2, webhook_attempts=2, webhook_events=1, webhook_subscriptions=1
    )
    assert [row.id for row in await hooks.service.subscriptions(None, deleted=True)] == [live.subscription.id]
    with pytest.raises(SubscriptionNotFound):
        await hooks.service.delete(None, logged.subscription.id)
