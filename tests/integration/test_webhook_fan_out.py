"""Fanning events out to many subscriptions on PostgreSQL: a backlog of events to as many
subscriptions as the staff tools may hold is fanned out whole, and the worker's statements
read the same whatever the size of its batch."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from exchange.auth import clients
from exchange.auth.scopes import Role
from exchange.db.database import Database
from exchange.loading import load_directory
from exchange.programs.declarations import PartnersDirectory
from exchange.settings import DEVELOPMENT_KEY_ENCRYPTION_SECRET
from exchange.testing.clock import FrozenClock
from exchange.webhooks import subscriptions
from exchange.webhooks.delivery import Dispatcher
from exchange.webhooks.events import Event, EventType
from exchange.webhooks.models import WebhookDelivery, WebhookEvent
from exchange.webhooks.outbox import emit
from exchange.webhooks.subscriptions import SubscriptionDraft, WithSecret
from tests.integration.locks import waiting_on_a_lock
from tests.reads import statements_sent

#: The staff tools' default limit (``EXCHANGE_WEBHOOK_MAX_SUBSCRIPTIONS``).
STAFF_SUBSCRIPTIONS = 20


async def subscribed(db: Database, clock: FrozenClock, count: int) -> None:
    """``count`` staff subscriptions to every event type."""
    async with db.transaction() as session:
        for n in range(count):
            await subscriptions.create(
                session,
                SubscriptionDraft(f"http://127.0.0.1:9/{n}", [event_type.value for event_type in EventType]),
                production=False,
                key_secret=DEVELOPMENT_KEY_ENCRYPTION_SECRET,
                by="test",
                now=clock.now(),
                limit=count,
            )


async def closed(db: Database, clock: FrozenClock, periods: range) -> None:
    async with db.transaction() as session:
        await emit(
            session,
            *(Event(EventType.PERIOD_CLOSED, f"period:{n}", None, {"period": str(n)}, clock.now()) for n in periods),
        )


async def test_a_backlog_of_events_to_every_staff_subscription_is_fanned_out_whole(pg_db: Database) -> None:
    """One fan-out batch (500 events) to 20 subscriptions is 10,000 deliveries: written as one
    multi-row INSERT that is 70,000 parameters, past the 65,535 PostgreSQL's protocol takes, so
    the batch failed on every pass and no event reached anyone."""
    clock = FrozenClock(datetime.now(UTC))
    await subscribed(pg_db, clock, STAFF_SUBSCRIPTIONS)
    await closed(pg_db, clock, range(500))
    dispatcher = Dispatcher(db=pg_db, clock=clock, key_secret=DEVELOPMENT_KEY_ENCRYPTION_SECRET)
    assert await dispatcher.fan_out() == 500 * STAFF_SUBSCRIPTIONS
    async with pg_db.transaction() as session:
        made = (await session.exec(select(func.count()).select_from(WebhookDelivery))).one()
        unfanned = (await session.exec(select(WebhookEvent).where(col(WebhookEvent.fanned_out).is_(False)))).all()
    assert (made, unfanned) == (500 * STAFF_SUBSCRIPTIONS, [])


async def test_the_worker_sends_the_same_statements_for_a_batch_of_any_size(pg_db: Database) -> None:
    """Each distinct statement text is a prepared statement in every connection and an entry of
    ``pg_stat_statements``: a list of ids spelt ``IN ($1, $2, …)`` made one per batch size."""
    clock = FrozenClock(datetime.now(UTC))
    await subscribed(pg_db, clock, 2)
    # Port 9 refuses the connection: every attempt fails fast, and is retried later.
    dispatcher = Dispatcher(db=pg_db, clock=clock, key_secret=DEVELOPMENT_KEY_ENCRYPTION_SECRET, timeout=5)
    try:
        shapes = []
        for periods in (range(2), range(2, 5)):
            await closed(pg_db, clock, periods)
            with statements_sent(pg_db.engine) as sent:
                report = await dispatcher.run_once()
            assert (report.fanned_out, report.retrying) == (2 * len(periods), 2 * len(periods))
            shapes.append({statement for statement, _ in sent})
    finally:
        await dispatcher.aclose()
    assert shapes[0] == shapes[1]


async def test_a_subscription_deleted_while_its_events_are_fanned_out_gets_none_of_them(pg_db: Database) -> None:
    """A fan-out that read the subscription as live before its deletion committed made it a
    pending delivery after the deletion had cancelled its others, and the worker sent it: a
    deleted subscription kept receiving events."""
    clock = FrozenClock(datetime.now(UTC))
    await subscribed(pg_db, clock, 1)
    async with pg_db.transaction() as session:
        (subscription,) = await subscriptions.listed(session, None)
    await closed(pg_db, clock, range(1))
    dispatcher = Dispatcher(db=pg_db, clock=clock, key_secret=DEVELOPMENT_KEY_ENCRYPTION_SECRET)
    async with pg_db.transaction() as session:
        await subscriptions.delete(session, None, subscription.id, clock.now())
        fanning = asyncio.create_task(dispatcher.fan_out())
        await waiting_on_a_lock(pg_db)
    await fanning
    async with pg_db.transaction() as session:
        pending = (await session.exec(select(WebhookDelivery).where(WebhookDelivery.status == "PENDING"))).all()
    assert pending == []


async def deliveries_of(db: Database, subscription_id: str) -> list[str]:
    """The objects of the events fanned out to the subscription."""
    async with db.transaction() as session:
        rows = await session.exec(
            select(WebhookDelivery.object)
            .where(WebhookDelivery.subscription_id == subscription_id)
            .order_by(col(WebhookDelivery.sequence))
        )
        return list(rows.all())


async def test_an_event_written_while_a_subscription_is_made_reaches_it(pg_db: Database) -> None:
    """The subscription's unit of work is open (its time already read) when another writes an
    event and the worker fans out. Matched by time, the event, later than the subscription and
    fanned out before the subscription committed (so to nobody), was missed for good. The
    event is committed after the subscription's mark, so the subscription receives it: the
    fan-out leaves it for a pass after the subscription commits (and the event's writer, which
    waited for the subscription to commit, no longer does)."""
    clock = FrozenClock(datetime.now(UTC))
    dispatcher = Dispatcher(db=pg_db, clock=clock, key_secret=DEVELOPMENT_KEY_ENCRYPTION_SECRET)
    async with pg_db.transaction() as session:
        made = await subscriptions.create(
            session,
            SubscriptionDraft("http://127.0.0.1:9/hook", ["period.closed"]),
            production=False,
            key_secret=DEVELOPMENT_KEY_ENCRYPTION_SECRET,
            by="test",
            now=clock.now(),
            limit=1,
        )
        clock.advance(seconds=1)
        writing = asyncio.create_task(closed(pg_db, clock, range(1)))
        waiting = asyncio.create_task(waiting_on_a_lock(pg_db))
        # Whichever comes first: the event committed (nothing held it back), or its writer waits.
        await asyncio.wait({writing, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        await dispatcher.fan_out()
    await writing
    await dispatcher.fan_out()
    assert await deliveries_of(pg_db, made.subscription.id) == ["period:0"]


async def test_an_event_committed_before_a_subscription_does_not_reach_it_whatever_its_time(
    pg_db: Database,
) -> None:
    """The event is committed first, stamped a second after the subscription's time by a
    process whose clock runs ahead, and fanned out once the subscription is committed: matched
    by time it was sent to the subscription, though it was committed before it existed."""
    clock = FrozenClock(datetime.now(UTC))
    ahead = FrozenClock(clock.now() + timedelta(seconds=1))
    await closed(pg_db, ahead, range(1))
    await subscribed(pg_db, clock, 1)
    async with pg_db.transaction() as session:
        (subscription,) = await subscriptions.listed(session, None)
    await closed(pg_db, clock, range(1, 2))
    dispatcher = Dispatcher(db=pg_db, clock=clock, key_secret=DEVELOPMENT_KEY_ENCRYPTION_SECRET)
    assert await dispatcher.fan_out() == 1
    assert await deliveries_of(pg_db, subscription.id) == ["period:1"]


async def test_a_partner_subscribing_while_an_event_is_written_waits_for_nothing_and_receives_it(
    pg_db: Database, sample_partners: PartnersDirectory
) -> None:
    """A unit of work writes an event, then a row that refers to the partner's program (as a
    saga's writes its ledger's after its event). The partner subscribes in between, holding the
    program's row: it waited for the event's writer (and, the row locked FOR UPDATE, held the
    writer's foreign key check back, each waiting for the other). It waits for nothing now, and
    the event, committed after the subscription, reaches it."""
    clock = FrozenClock(datetime.now(UTC))
    async with pg_db.transaction() as session:
        await load_directory(session, sample_partners, clock.now())
    async with pg_db.transaction() as writer:
        await emit(writer, Event(EventType.PERIOD_CLOSED, "period:0", None, {"period": "0"}, clock.now()))
        await writer.flush()
        subscribing = asyncio.create_task(subscribed_partner(pg_db, clock, "formosa-air"))
        await first_of(subscribing, waiting_on_a_lock(pg_db))
        await clients.create_client(writer, role=Role.PARTNER, now=clock.now(), program_id="formosa-air")
        await writer.flush()
    made = await subscribing
    await closed(pg_db, clock, range(1, 2))
    await Dispatcher(db=pg_db, clock=clock, key_secret=DEVELOPMENT_KEY_ENCRYPTION_SECRET).fan_out()
    assert await deliveries_of(pg_db, made.subscription.id) == ["period:0", "period:1"]


async def test_event_writers_of_every_program_go_on_while_a_subscription_is_made(
    pg_db: Database, sample_partners: PartnersDirectory
) -> None:
    """A partner's subscription is made, its unit of work still open: units of work writing
    events, of its program (with a row that refers to the program, whose row the subscription
    holds), of another, and of every program, each commit meanwhile. Making a subscription held
    every writer of an event back (a SHARE lock on the outbox) until it committed. Committed
    after its mark, their events reach it, as far as they are its program's."""
    clock = FrozenClock(datetime.now(UTC))
    async with pg_db.transaction() as session:
        await load_directory(session, sample_partners, clock.now())
    before = Event(EventType.REDEMPTION_PAID, "redemption:r0", ("formosa-air", "fresh-mart"), {}, clock.now())
    async with pg_db.transaction() as session:
        await emit(session, before)

    async def written(event: Event, refers_to: str | None = None) -> None:
        async with pg_db.transaction() as session:
            await emit(session, event)
            if refers_to is not None:
                await clients.create_client(session, role=Role.PARTNER, now=clock.now(), program_id=refers_to)

    events = [
        Event(EventType.REDEMPTION_PAID, "redemption:r1", ("formosa-air", "fresh-mart"), {}, clock.now()),
        Event(EventType.REDEMPTION_PAID, "redemption:r2", ("fresh-mart", "wallet-pay"), {}, clock.now()),
        Event(EventType.PERIOD_CLOSED, "period:0", None, {}, clock.now()),
    ]
    async with pg_db.transaction() as session:
        made = await subscriptions.create(
            session,
            SubscriptionDraft(
                "http://127.0.0.1:9/hook", ["redemption.paid", "period.closed"], program_id="formosa-air"
            ),
            production=False,
            key_secret=DEVELOPMENT_KEY_ENCRYPTION_SECRET,
            by="test",
            now=clock.now(),
            limit=1,
        )
        for event, refers_to in zip(events, ("formosa-air", "wallet-pay", None), strict=True):
            await first_of(asyncio.create_task(written(event, refers_to)), waiting_on_a_lock(pg_db))
    await Dispatcher(db=pg_db, clock=clock, key_secret=DEVELOPMENT_KEY_ENCRYPTION_SECRET).fan_out()
    assert await deliveries_of(pg_db, made.subscription.id) == ["redemption:r1", "period:0"]


async def first_of(task: asyncio.Task[Any], waiting: Coroutine[Any, Any, None]) -> Any:
    """``task``'s result, if it ends before any other session waits on a lock (it waited for
    nothing, or for nothing held meanwhile); else fail."""
    lock = asyncio.create_task(waiting)
    await asyncio.wait({task, lock}, return_when=asyncio.FIRST_COMPLETED)
    lock.cancel()
    assert task.done(), "it waited on a lock"
    return task.result()


async def subscribed_partner(db: Database, clock: FrozenClock, program_id: str) -> WithSecret:
    async with db.transaction() as session:
        return await subscriptions.create(
            session,
            SubscriptionDraft("http://127.0.0.1:9/hook", ["period.closed"], program_id=program_id),
            production=False,
            key_secret=DEVELOPMENT_KEY_ENCRYPTION_SECRET,
            by="test",
            now=clock.now(),
            limit=1,
        )
