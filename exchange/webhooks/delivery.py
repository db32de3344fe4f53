"""The delivery worker: fan events out to subscriptions, send them, record every attempt.

Each pass (the gateway's periodic job, or ``exchange webhooks deliver``):

1. **Fan out** events not yet fanned out, in their order, to every live subscription that
   wants them (its event type, its program among the event's, committed after it): one
   delivery per subscription and event (a unique key, so two workers cannot double one). One
   process fans out at a time (the events are locked in order), so an object's deliveries
   exist in the order of its events.
2. **Claim** due deliveries under a lease, skipping rows another worker holds. A delivery is
   due only if no earlier delivery of the *same object* to the same subscription is still
   pending: a subscription receives the events of one conversion (redemption, match, …) in
   the order they happened, the later waiting until the earlier is delivered or dead. First
   attempts go before retries, each kind by due time: the retries a receiver that is down
   piles up cannot hold other subscribers' new events back. No subscription has more than
   ``per_subscription`` deliveries in flight (leased, across every worker): a receiver that
   hangs until the timeout holds that many sending slots, never all of them.
3. **Send** them concurrently (at most ``concurrency`` at once, each within ``timeout``),
   outside any database transaction, signed by the Standard Webhooks rules. More is claimed
   as attempts come back, not batch after batch: a batch would wait for its slowest attempt,
   and so hold every other receiver's next events behind a hanging one.
4. **Record** each attempt in the delivery log; a 2xx delivers, anything else (or no
   answer) schedules a retry by :class:`~exchange.webhooks.schedule.RetrySchedule`, or
   dead-letters the delivery once its retry window is over. An attempt whose delivery was
   taken from it while it was on its way (its subscription deleted, or its lease run out and
   the delivery claimed by another worker) is logged too, ``CUT_OFF`` with the reason, and
   moves nothing.

A worker that dies between sending and recording leaves the lease to expire: the delivery is
sent again (at least once; receivers dedupe on ``webhook-id``). Nothing here runs on a
request's path, so a slow or failing receiver slows no request and no saga.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import httpx
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Update,
    bindparam,
    exists,
    func,
    literal,
    true,
    union_all,
    update,
)
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import SQLCoreOperations
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from exchange.clock import Clock
from exchange.db import dialects
from exchange.db.bulk import one_of
from exchange.db.database import Database
from exchange.db.types import UTCDateTime
from exchange.trust_store import trust_store
from exchange.webhooks import outbox, signing
from exchange.webhooks.egress import PublicOnlyTransport
from exchange.webhooks.models import (
    AttemptOutcome,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from exchange.webhooks.schedule import RetrySchedule, retry_after

logger = logging.getLogger("exchange.webhooks")

DELIVERIES = WebhookDelivery.__table__  # type: ignore[attr-defined]
ERROR_LENGTH = 300
#: Why an attempt sent was logged ``CUT_OFF`` (:meth:`Dispatcher.record`).
CUT_OFF_BY_DELETION = "cut off: its subscription was deleted while it was on its way; not retried"
CUT_OFF_BY_TAKEOVER = "cut off: its lease ran out and another worker took the delivery over"


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery leased for one attempt, with what sending it needs."""

    delivery_id: int
    attempts: int
    first_attempt_at: datetime
    subscription_id: str
    object: str
    sequence: int
    url: str
    message_id: str
    body: str


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    latency_ms: int
    error: str | None
    asked_to_wait: timedelta | None = None
    """What the receiver's ``Retry-After`` asked for, with a 429 or a 503."""

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass
class DeliveryPass:
    """What one pass did."""

    fanned_out: int = 0
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    cut_off: int = 0
    """Attempts sent whose delivery was taken from them on their way (logged ``CUT_OFF``)."""


@dataclass
class Dispatcher:
    db: Database
    clock: Clock
    key_secret: str
    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    timeout: float = 10.0
    concurrency: int = 8
    per_subscription: int = 2
    """Most deliveries to one subscription in flight at once, across every worker."""
    draw: Callable[[], float] = random.random
    """The jitter's random source (tests pass a fixed one)."""
    public_only: bool = False
    """Connect to public addresses only, wherever a URL's host name leads (production)."""
    _http: httpx.AsyncClient | None = field(default=None, init=False, repr=False)

    @property
    def batch(self) -> int:
        """Deliveries claimed at once: four waves of ``concurrency``."""
        return self.concurrency * 4

    @property
    def lease(self) -> timedelta:
        """Long enough for a batch whose every attempt times out, and recording it."""
        return timedelta(seconds=self.timeout * self.batch / self.concurrency + 30)

    @property
    def http(self) -> httpx.AsyncClient:
        """One client for every pass (its TLS context and connections are reused); redirects
        are not followed: a subscription's URL is the only place its events go. With
        ``public_only``, no connection goes to a non-public address (:mod:`.egress`)."""
        if self._http is None:
            transport = PublicOnlyTransport() if self.public_only else None
            self._http = httpx.AsyncClient(
                timeout=self.timeout, follow_redirects=False, transport=transport, verify=trust_store()
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def run_once(self, *, max_rounds: int = 100) -> DeliveryPass:
        """Fan out, then send what is due (and what becomes due as earlier deliveries of the
        same object finish) until nothing is, or ``max_rounds`` claims were made.

        Sending is a pipeline: whenever no more than a wave (``concurrency``) is left in hand,
        the worker claims again, up to a batch in hand. So the deliveries of a receiver that
        hangs until the timeout (at most ``per_subscription`` of them) hold their own slots
        only, and everyone else's keep going out meanwhile."""
        report = DeliveryPass()
        report.fanned_out = await self.fan_out()
        limit = asyncio.Semaphore(self.concurrency)
        sending: dict[asyncio.Task[Outcome | None], Claimed] = {}
        claims = 0
        try:
            while True:
                if len(sending) <= self.concurrency and claims < max_rounds:
                    claims += 1
                    for item in await self.claim(batch=self.batch - len(sending)):
                        sending[asyncio.create_task(self._send(limit, item))] = item
                if not sending:
                    return report
                done, _ = await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    item, outcome = sending.pop(task), task.result()
                    if outcome is None:
                        continue  # not sent: its subscription was deleted, and it cancelled
                    status = await self.record(item, outcome)
                    if status is None:
                        report.cut_off += 1
                    elif status == DeliveryStatus.DELIVERED:
                        report.delivered += 1
                    elif status == DeliveryStatus.DEAD:
                        report.dead += 1
                    elif status == DeliveryStatus.PENDING:
                        report.retrying += 1
        finally:
            # Left by a failure (the database gone mid-pass): their leases run out, and they
            # are sent again, as a dead worker's are.
            for task in sending:
                task.cancel()
            await asyncio.gather(*sending, return_exceptions=True)

    # -- fan out --------------------------------------------------------------------------

    async def fan_out(self, batch: int = 500) -> int:
        """Make the deliveries of events not yet fanned out; how many were made."""
        made = 0
        while True:
            async with self.db.transaction() as session:
                if not await outbox.fan_out_turn(session):
                    return made  # a subscription is being made, or another process fans out
                events = (
                    await session.exec(
                        select(WebhookEvent)
                        .where(col(WebhookEvent.fanned_out).is_(False))
                        .order_by(col(WebhookEvent.sequence))
                        .limit(batch)
                        # Not SKIP LOCKED: a second process (on SQLite, where the turn is not
                        # taken) waits for the first to commit, so it can never fan out an
                        # object's later event before its earlier one.
                        .with_for_update()
                    )
                ).all()
                if not events:
                    return made
                subscriptions = (
                    await session.exec(
                        select(WebhookSubscription)
                        .where(col(WebhookSubscription.deleted_at).is_(None))
                        # A deletion in progress is waited for, and its subscription then read as
                        # deleted: read from before it committed, it would get deliveries made
                        # after the deletion cancelled its others, and keep receiving events.
                        .with_for_update(read=True, key_share=True)
                    )
                ).all()
                rows = [
                    {
                        "subscription_id": subscription.id,
                        "sequence": event.sequence,
                        "object": event.object,
                        "status": DeliveryStatus.PENDING.value,
                        "attempts": 0,
                        "first_attempt_at": event.occurred_at,
                        "next_attempt_at": event.occurred_at,
                    }
                    for event in events
                    for subscription in subscriptions
                    if wants(subscription, event)
                ]
                if rows:
                    # Many rows as many parameter sets of one statement (psycopg pipelines them),
                    # not one multi-row VALUES: 500 events to 20 subscriptions would be 70,000
                    # parameters, past the 65,535 PostgreSQL takes in one statement.
                    await session.exec(
                        dialects.insert(session, DELIVERIES).on_conflict_do_nothing(
                            index_elements=["subscription_id", "sequence"]
                        ),
                        params=rows,
                    )
                    await session.exec(held_back_from_birth([event.sequence for event in events], session))
                await session.exec(
                    update(WebhookEvent)
                    .where(
                        one_of(col(WebhookEvent.sequence), [event.sequence for event in events], session, BigInteger)
                    )
                    .values(fanned_out=True)
                )
                made += len(rows)
            if len(events) < batch:
                return made

    # -- claim ----------------------------------------------------------------------------

    async def claim(self, batch: int) -> list[Claimed]:
        """Lease up to ``batch`` due deliveries, each the earliest pending of its object, and
        none of a subscription past ``per_subscription`` in flight."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            if session.get_bind().dialect.name == "postgresql":
                due = _due_at_every_place(self.per_subscription)
            else:
                due = _due_at(await self._places_one_by_one(session, now))
            deliveries = (await session.exec(due, params={"now": now, "batch": batch})).all()
            if not deliveries:
                return []
            for delivery in deliveries:
                delivery.lease_until = now + self.lease
                session.add(delivery)
            events = {
                event.sequence: event
                for event in await session.exec(
                    select(WebhookEvent).where(
                        one_of(col(WebhookEvent.sequence), [d.sequence for d in deliveries], session, BigInteger)
                    )
                )
            }
            subscriptions = {
                subscription.id: subscription
                for subscription in await session.exec(
                    select(WebhookSubscription).where(
                        one_of(col(WebhookSubscription.id), {d.subscription_id for d in deliveries}, session)
                    )
                )
            }
        return [
            Claimed(
                delivery_id=int(delivery.id),  # type: ignore[arg-type]
                attempts=delivery.attempts,
                first_attempt_at=delivery.first_attempt_at,
                subscription_id=delivery.subscription_id,
                object=delivery.object,
                sequence=delivery.sequence,
                url=subscriptions[delivery.subscription_id].url,
                message_id=events[delivery.sequence].id,
                body=events[delivery.sequence].body,
            )
            for delivery in deliveries
        ]

    async def _places_one_by_one(self, session: AsyncSession, now: datetime) -> list[int]:
        """The deliveries :func:`_due_at_every_place` chooses from, read one subscription at a
        time: SQLite has no ``LATERAL`` (and one process claims there)."""
        chosen_ids: list[int] = []
        at = {"now": now}
        for subscription_id in (await session.exec(select(col(WebhookSubscription.id)).where(_LIVE))).all():
            sending_now = (await session.exec(in_flight(literal(subscription_id)), params=at)).one()
            if sending_now < self.per_subscription:
                free = self.per_subscription - sending_now
                chosen_ids += (await session.exec(places_of(literal(subscription_id), free, free), params=at)).all()
        return chosen_ids

    async def secrets_now(self, subscription_id: str, now: datetime) -> tuple[str, ...] | None:
        """The secrets to sign an attempt sent at ``now`` with, read as it is sent rather than
        when it was claimed: a rotation committed in between (a wave may wait for the one
        before it) must sign it with the new secret too, as the overlap promises. ``None`` if
        a deletion committed in between: it stopped the subscription (and cancelled the
        delivery), so nothing more is sent to it."""
        async with self.db.transaction() as session:
            subscription = await session.get(WebhookSubscription, subscription_id)
        assert subscription is not None, "a subscription's row outlives its deliveries"
        if subscription.deleted_at is not None:
            return None
        return self.signing_secrets(subscription, now)

    def signing_secrets(self, subscription: WebhookSubscription, now: datetime) -> tuple[str, ...]:
        """The current secret and, while a rotation's window lasts, the one before it."""
        current = signing.unseal(subscription.secret, self.key_secret, subscription.id, subscription.secret_version)
        if (
            subscription.previous_secret is None
            or subscription.previous_secret_until is None
            or subscription.previous_secret_until <= now
        ):
            return (current,)
        previous = signing.unseal(
            subscription.previous_secret, self.key_secret, subscription.id, subscription.secret_version - 1
        )
        return (current, previous)

    # -- send -----------------------------------------------------------------------------

    async def _send(self, limit: asyncio.Semaphore, item: Claimed) -> Outcome | None:
        """The attempt's outcome; ``None`` if it was not sent (its subscription was deleted)."""
        async with limit:
            sent_at = self.clock.now()
            secrets = await self.secrets_now(item.subscription_id, sent_at)
            if secrets is None:
                return None
            headers = signing.headers(secrets, item.message_id, sent_at, item.body)
            started = time.perf_counter()
            try:
                # The timeout bounds the whole attempt (httpx's bounds each read), and the
                # receiver's body is never read: only its status counts.
                async with (
                    asyncio.timeout(self.timeout),
                    self.http.stream("POST", item.url, content=item.body.encode(), headers=headers) as response,
                ):
                    status, wait = response.status_code, response.headers.get("retry-after")
            except TimeoutError:
                return Outcome(None, _elapsed_ms(started), f"ReadTimeout: no answer within {self.timeout:g} s")
            except (httpx.HTTPError, httpx.InvalidURL) as failed:
                # InvalidURL: a subscription stored before its URL's rule refused a host the
                # client cannot send to; its attempt fails alone, not the batch it was claimed in.
                return Outcome(None, _elapsed_ms(started), f"{type(failed).__name__}: {failed}"[:ERROR_LENGTH])
            return answered(status, wait, self.clock.now(), _elapsed_ms(started))

    # -- record ---------------------------------------------------------------------------

    async def record(self, item: Claimed, outcome: Outcome) -> DeliveryStatus | None:
        """Log the attempt and move the delivery on; ``None`` if the delivery was no longer
        this attempt's: its subscription was deleted meanwhile (the deletion cancelled it), or
        another worker took it over (its lease ran out). Such an attempt was sent all the same,
        so it is logged too, as ``CUT_OFF`` with the reason, and moves nothing: a cancelled
        delivery is never tried again, and a delivery taken over is the other worker's."""
        now = self.clock.now()
        failures = item.attempts + 1
        values: dict[str, object] = {"attempts": failures, "lease_until": None, "last_status_code": outcome.status_code}
        values["last_error"] = outcome.error
        retry_at = None
        if outcome.delivered:
            status = DeliveryStatus.DELIVERED
        else:
            retry_at = self.schedule.next_attempt(
                item.first_attempt_at, now, failures, self.draw(), asked=outcome.asked_to_wait
            )
            status = DeliveryStatus.PENDING if retry_at is not None else DeliveryStatus.DEAD
            if retry_at is not None:
                values["next_attempt_at"] = retry_at
        values["status"] = status.value
        if status != DeliveryStatus.PENDING:
            values["finished_at"] = now
        async with self.db.transaction() as session:
            moved = await session.exec(
                update(WebhookDelivery)
                .where(
                    col(WebhookDelivery.id) == item.delivery_id,
                    col(WebhookDelivery.status) == DeliveryStatus.PENDING,
                    col(WebhookDelivery.attempts) == item.attempts,
                )
                .values(**values)
            )
            attempt = WebhookAttempt(
                delivery_id=item.delivery_id,
                subscription_id=item.subscription_id,
                attempted_at=now,
                status_code=outcome.status_code,
                latency_ms=outcome.latency_ms,
                error=outcome.error,
                outcome=status.value,
            )
            cut_off = moved.rowcount != 1
            if not cut_off and retry_at is not None:
                await session.exec(held_back(item, retry_at))
            if cut_off:
                subscription = await session.get(WebhookSubscription, item.subscription_id)
                deleted = subscription is not None and subscription.deleted_at is not None
                reason = CUT_OFF_BY_DELETION if deleted else CUT_OFF_BY_TAKEOVER
                attempt.outcome = AttemptOutcome.CUT_OFF.value
                attempt.error = (reason if outcome.error is None else f"{reason}; {outcome.error}")[:ERROR_LENGTH]
            session.add(attempt)
        if cut_off:
            return None
        if status == DeliveryStatus.DEAD:
            logger.warning(
                "webhook delivery %s to subscription %s dead-lettered", item.delivery_id, item.subscription_id
            )
        return status


#: Inlined into a statement, not bound: a partial index's predicate is then proven from the
#: statement's own text, in a plan made for any parameters (a prepared statement's) as well.
PENDING = literal(DeliveryStatus.PENDING.value, literal_execute=True)
NONE_YET = literal(0, literal_execute=True)
#: The instant a claim reads at, and how many deliveries it takes at most, bound when its
#: statements run (``now``, ``batch``), so that they can be built once.
NOW = bindparam("now", type_=UTCDateTime())
BATCH = bindparam("batch", type_=Integer())
_LIVE = col(WebhookSubscription.deleted_at).is_(None)


@lru_cache(maxsize=4)
def _due_at_every_place(per_subscription: int) -> SelectOfScalar[WebhookDelivery]:
    """PostgreSQL's claim: the deliveries each live subscription may have claimed, its first
    free slots' worth (``per_subscription`` less those it has in flight) of :func:`places_of`,
    in one statement, a ``LATERAL`` read per subscription. Each read stops at what it takes
    (the subscription table is small), so a receiver that is down with a day's backlog of due
    retries costs a claim its two places, not the backlog. A place another worker holds locked
    is skipped, not replaced by a later one: that worker is taking it in flight.

    Built once for each cap (its instant is bound when it runs): built at every pass, it took
    the worker about 7 ms of CPU, most of what a conversion costs, idle or not."""
    sending = in_flight(col(WebhookSubscription.id)).lateral("sending")
    slots = func.greatest(per_subscription - sending.c.sending, 0)
    chosen = places_of(col(WebhookSubscription.id), slots, per_subscription).lateral("chosen")
    return _due_at(
        select(chosen.c.id).select_from(WebhookSubscription).join(sending, true()).join(chosen, true()).where(_LIVE)
    )


def _due_at(places: SelectOfScalar[int] | list[int]) -> SelectOfScalar[WebhookDelivery]:
    """Up to ``batch`` of the deliveries at ``places``, in claim order, locked for the claim
    (those another worker holds are skipped)."""
    return (
        select(WebhookDelivery)
        # Claimable again here, not only where each subscription's are picked: a row another
        # worker leased since this statement's snapshot is read again once its lock is free,
        # and these conditions (not the subquery's) are checked on it anew.
        .where(col(WebhookDelivery.id).in_(places), *claimable(WebhookDelivery))
        .order_by(*claim_order(WebhookDelivery))
        .limit(BATCH)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    )


def claimable(delivery: type[WebhookDelivery]) -> tuple[ColumnElement[bool], ...]:
    """A delivery due at ``now`` and not leased to a worker."""
    return (
        col(delivery.status) == PENDING,
        col(delivery.next_attempt_at) <= NOW,
        col(delivery.lease_until).is_(None) | (col(delivery.lease_until) <= NOW),
    )


def claim_order(delivery: Any) -> tuple[ColumnElement[Any], ...]:
    """The order deliveries are claimed in (``delivery``: the model, an alias, or a subquery's
    columns): first attempts before retries, then by due time. A receiver that is down piles up
    retries (each may take the whole timeout), and in due-time order alone they would hold
    every other subscriber's new events back behind them."""
    return (col(delivery.attempts) > NONE_YET, col(delivery.next_attempt_at).asc(), col(delivery.sequence).asc())


def in_flight(subscription_id: SQLCoreOperations[str]) -> SelectOfScalar[int]:
    """How many of the subscription's deliveries are leased at ``now`` (by
    ``ix_webhook_delivery_leased``, which holds the leased ones only)."""
    leased = aliased(WebhookDelivery)
    return select(func.count().label("sending")).where(
        col(leased.subscription_id) == subscription_id,
        col(leased.status) == PENDING,
        col(leased.lease_until) > NOW,
    )


def places_of(
    subscription_id: SQLCoreOperations[str], slots: ColumnElement[int] | int, most: int
) -> SelectOfScalar[int]:
    """The subscription's first ``slots`` deliveries claimable at ``now`` in claim order, each the earliest
    pending of its object. Its first attempts and its retries are read apart, each by its own
    index in due order (``ix_webhook_delivery_first_due``, ``ix_webhook_delivery_retry_due``)
    and each stopped at ``most`` (the cap), and the two merged: in one index, the retries not
    due yet would sit between its due ones and the next first attempts. A later delivery of an
    object whose earlier one is pending is read and passed over, never claimed.

    Each read stops at ``most``, a number the planner knows, and their merge at ``slots``,
    which it may not: stopped at ``slots`` alone, the reads would be costed as a tenth of the
    backlog each, and the plan compiled (JIT) for that; with no slot free none is run."""
    kinds = []
    for retries in (False, True):
        due, earlier = aliased(WebhookDelivery), aliased(WebhookDelivery)
        kinds.append(
            select(col(due.id), col(due.attempts), col(due.next_attempt_at), col(due.sequence))
            .where(
                col(due.subscription_id) == subscription_id,
                *claimable(due),
                col(due.attempts) > NONE_YET if retries else col(due.attempts) == NONE_YET,
                ~exists().where(
                    col(earlier.subscription_id) == due.subscription_id,
                    col(earlier.object) == due.object,
                    col(earlier.status) == PENDING,
                    col(earlier.sequence) < due.sequence,
                ),
            )
            .order_by(col(due.next_attempt_at), col(due.sequence))
            .limit(most)
            .correlate(WebhookSubscription)
            .subquery()
        )
    merged = union_all(*(select(kind) for kind in kinds)).subquery("merged")
    return select(merged.c.id).order_by(*claim_order(merged.c)).limit(slots)


def held_back(item: Claimed, retry_at: datetime) -> Update:
    """The later pending deliveries of ``item``'s object to its subscription, due no earlier
    than ``item``'s next attempt (``retry_at``). None can be sent before ``item`` is delivered or
    dead, which takes an attempt, at ``retry_at`` at the soonest: due before it, each would be
    read (and passed over) by every claim meanwhile, and a receiver down with many objects'
    later events waiting so made each claim read them all. Their retry windows (from
    ``first_attempt_at``) are unchanged.

    A row locked elsewhere is left as it is (a deletion cancelling it, which may have locked
    it before waiting on ``item``'s): waiting for it could deadlock, and the row is still sent
    in order, only read by claims before its time."""
    waiting = (
        select(col(WebhookDelivery.id))
        .where(
            col(WebhookDelivery.subscription_id) == item.subscription_id,
            col(WebhookDelivery.object) == item.object,
            col(WebhookDelivery.status) == PENDING,
            col(WebhookDelivery.sequence) > item.sequence,
            col(WebhookDelivery.next_attempt_at) < retry_at,
        )
        .with_for_update(skip_locked=True)
    )
    return update(WebhookDelivery).where(col(WebhookDelivery.id).in_(waiting)).values(next_attempt_at=retry_at)


def held_back_from_birth(sequences: list[int | None], session: AsyncSession) -> Update:
    """The deliveries of the events ``sequences`` just fanned out, each due no earlier than the
    earlier pending deliveries of its object to its subscription (:func:`held_back`, for a
    delivery made while the one it waits for is between attempts)."""
    earlier = aliased(WebhookDelivery)
    waits_for = (
        select(func.max(col(earlier.next_attempt_at)))
        .where(
            col(earlier.subscription_id) == WebhookDelivery.subscription_id,
            col(earlier.object) == WebhookDelivery.object,
            col(earlier.status) == PENDING,
            col(earlier.sequence) < WebhookDelivery.sequence,
        )
        .scalar_subquery()
    )
    return (
        update(WebhookDelivery)
        .where(
            one_of(col(WebhookDelivery.sequence), sequences, session, BigInteger),
            col(WebhookDelivery.status) == PENDING,
            col(WebhookDelivery.next_attempt_at) < waits_for,
        )
        .values(next_attempt_at=waits_for)
    )


def wants(subscription: WebhookSubscription, event: WebhookEvent) -> bool:
    """Whether ``subscription`` receives ``event``: its type, its tenant, and committed after
    its mark (:class:`~exchange.webhooks.outbox.Mark`). By commit, not by time: a subscription
    made while an event was being written, or on a process whose clock differs, neither misses
    an event nor gets one from before it."""
    if event.xact is not None and subscription.after_snapshot is not None:
        after = not outbox.committed_before(event.xact, subscription.after_snapshot)
    else:
        after = (event.sequence or 0) > subscription.after_sequence
    return (
        event.type in subscription.event_types
        and after
        and (subscription.program_id is None or event.programs is None or subscription.program_id in event.programs)
    )


#: Statuses whose ``Retry-After`` the next attempt honours (RFC 6585, RFC 9110).
ASK_TO_WAIT = (429, 503)


def answered(status: int, wait: str | None, now: datetime, latency_ms: int) -> Outcome:
    """A receiver's answer as an attempt's outcome: a 2xx delivers; anything else fails, with
    its reason in words (a redirect says it was not followed; a 429 or 503's ``Retry-After``,
    the wait it asked for, which the next attempt honours)."""
    if 200 <= status < 300:
        return Outcome(status, latency_ms, None)
    if 300 <= status < 400:
        return Outcome(status, latency_ms, f"HTTP {status}: redirects are not followed")
    asked = retry_after(wait, now) if status in ASK_TO_WAIT else None
    if asked is None:
        return Outcome(status, latency_ms, f"HTTP {status}")
    return Outcome(status, latency_ms, f"HTTP {status}, Retry-After {int(asked.total_seconds())} s", asked)


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
