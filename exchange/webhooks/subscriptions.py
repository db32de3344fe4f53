"""Subscriptions: made, listed, rotated, deleted, and their deliveries replayed.

Every function takes ``tenant``: the program of the partner acting (it sees and changes only
its own program's subscriptions; any other is "not found", whether or not it exists) or
``None`` for staff and the command line, who see every subscription. A subscription with a
program receives that program's events only; one without (a staff tool's) receives all.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import BigInteger, ColumnElement, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from exchange.db import dialects
from exchange.db.bulk import one_of
from exchange.db.grouping import grouped, page_per_parent
from exchange.db.paging import Keyset, Page, following, page_of
from exchange.errors import BadUserInput
from exchange.idempotency import claiming, same_request
from exchange.programs import service as programs
from exchange.text import shown_text_problem
from exchange.webhooks import outbox, signing
from exchange.webhooks.errors import DeliveryNotFound, SubscriptionNotFound, TooManySubscriptions
from exchange.webhooks.events import EventType
from exchange.webhooks.models import (
    DESCRIPTION_LENGTH,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookReplay,
    WebhookRotation,
    WebhookSubscription,
)
from exchange.webhooks.urls import check_url

#: Most deliveries one replay may queue again.
REPLAY_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class SubscriptionDraft:
    url: str
    event_types: Sequence[str]
    description: str = ""
    program_id: str | None = None


class Withheld(StrEnum):
    """Why an answer to a repeated request shows no secret (:func:`repeated`)."""

    ROTATED = "ROTATED"
    """The secret was rotated since: the rotation's answer showed the one that signs now."""
    DELETED = "DELETED"
    """The subscription was deleted: nothing is signed for it any more."""
    EXPIRED = "EXPIRED"
    """The secret was made more than :data:`SECRET_SHOWN_AGAIN_FOR` before the repeat."""


#: How long after a subscription is made a repeat of the request that made it (its key again)
#: shows its secret again: a retry after a lost answer comes within it, and a stolen token
#: cannot read a live secret unnoticed long after (a rotation, which a receiver sees, can).
SECRET_SHOWN_AGAIN_FOR = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class WithSecret:
    """A subscription and its new secret: shown this once, and again only to a repeat of the
    request that made it (:func:`repeated`); ``secret`` is ``None`` when it is ``withheld``."""

    subscription: WebhookSubscription
    secret: str | None
    withheld: Withheld | None = None


@dataclass(frozen=True, slots=True)
class DeliveryView:
    delivery: WebhookDelivery
    event: WebhookEvent


def check_event_types(names: Sequence[str]) -> list[str]:
    """The event types' canonical names, each known (by either spelling :meth:`EventType.named`
    reads), none twice, at least one; else ``eventTypes``' error."""
    named = [(name, EventType.named(name)) for name in names]
    unknown = [name for name, event_type in named if event_type is None]
    if unknown:
        known = ", ".join(sorted(event_type.value for event_type in EventType))
        raise BadUserInput(
            f"unknown event type {unknown[0]!r}; the types are {known} (GraphQL's names, such as "
            "CONVERSION_COMPLETED, also do)",
            field="eventTypes",
        )
    if not names:
        raise BadUserInput("name at least one event type", field="eventTypes")
    return sorted({event_type.value for _, event_type in named if event_type is not None})


async def create(
    session: AsyncSession,
    draft: SubscriptionDraft,
    *,
    production: bool,
    key_secret: str,
    by: str,
    now: datetime,
    limit: int,
    key: str | None = None,
) -> WithSecret:
    """A new subscription and its secret; one past the ``limit`` live subscriptions of its
    owner (the program, or the staff tools) is :class:`TooManySubscriptions`. A partner's
    program row is locked while counting, so two at once cannot both take its last place.

    With the client's idempotency ``key``: the subscription the key holds, if the client made
    it by the same request (:func:`repeated`); ``IdempotencyConflict`` if by another. The limit
    does not refuse such a repeat: it makes nothing.

    It receives every event committed after it commits, and none committed before
    (:func:`~exchange.webhooks.outbox.mark`)."""
    url = check_url(draft.url, production=production)
    event_types = check_event_types(draft.event_types)
    if len(draft.description) > DESCRIPTION_LENGTH:
        raise BadUserInput(f"at most {DESCRIPTION_LENGTH} characters", field="description")
    if problem := shown_text_problem(draft.description):
        raise BadUserInput(f"description {problem}", field="description")
    created_by = by[:120]

    def made(row: WebhookSubscription) -> bool:
        return (row.program_id, row.url, row.event_types, row.description) == (
            draft.program_id,
            url,
            event_types,
            draft.description,
        )

    def again(existing: WebhookSubscription, key: str) -> WithSecret:
        """The answer to this request repeated: the subscription ``key`` holds, if made by it."""
        return repeated(
            same_request(existing, key, made), version=1, made_at=existing.created_at, key_secret=key_secret, now=now
        )

    if draft.program_id is not None:
        await programs.get_program(session, draft.program_id, field="programId", lock=True)
    if key is not None and (existing := await _keyed(session, WebhookSubscription, created_by, key)) is not None:
        return again(existing, key)
    live = await session.exec(
        select(func.count())
        .select_from(WebhookSubscription)
        .where(
            col(WebhookSubscription.program_id).is_(None)
            if draft.program_id is None
            else col(WebhookSubscription.program_id) == draft.program_id,
            col(WebhookSubscription.deleted_at).is_(None),
        )
    )
    if live.one() >= limit:
        raise TooManySubscriptions(limit)
    # Last: it holds the fan-out back until this unit of work ends.
    start = await outbox.mark(session)
    subscription_id = str(uuid.uuid4())
    secret = signing.new_secret()
    row = WebhookSubscription(
        id=subscription_id,
        program_id=draft.program_id,
        url=url,
        event_types=event_types,
        description=draft.description,
        secret=signing.seal(secret, key_secret, subscription_id, 1),
        created_by=created_by,
        created_at=now,
        idempotency_key=key,
        after_sequence=start.sequence,
        after_snapshot=start.snapshot,
    )
    # The unique key decides between requests racing with it (a staff tool's request locks no program row).
    if (taken := await _claim(session, row)) is not None:
        assert key is not None, "only the key is unique among what a subscription is inserted with"
        return again(taken, key)
    return WithSecret(row, secret)


ClientKeyed = TypeVar("ClientKeyed", WebhookSubscription, WebhookReplay)


async def _keyed(session: AsyncSession, model: type[ClientKeyed], created_by: str, key: str) -> ClientKeyed | None:
    """The row of ``model`` the client's key holds, if any."""
    return (
        await session.exec(select(model).where(model.created_by == created_by, model.idempotency_key == key))
    ).first()


async def _claim(session: AsyncSession, row: ClientKeyed) -> ClientKeyed | None:
    """Insert ``row`` unless its client's key (``created_by``, ``idempotency_key``) is taken:
    ``None`` once inserted, else the row the key holds (the caller checks it was made by the
    same request, :func:`~exchange.idempotency.same_request`). The unique key decides between
    requests racing with the same key."""
    table = type(row).__table__  # type: ignore[attr-defined]  # a table model's
    claim = claiming(dialects.insert(session, table).values({c.name: getattr(row, c.name) for c in table.columns}))
    if (await session.exec(claim)).first() is not None:
        return None
    assert row.idempotency_key is not None, "only the key is unique among what such a row is inserted with"
    taken = await _keyed(session, type(row), row.created_by, row.idempotency_key)
    assert taken is not None, "the key that refused the insert holds a row"
    return taken


def repeated(
    row: WebhookSubscription, *, version: int, made_at: datetime, key_secret: str, now: datetime
) -> WithSecret:
    """The answer to a repeat of the request that made ``row``'s secret ``version`` at
    ``made_at`` (its creation, or a rotation): that secret, again, while it is still the one
    that signs and the repeat comes within :data:`SECRET_SHOWN_AGAIN_FOR`; else no secret, and
    why (:class:`Withheld`)."""
    if row.deleted_at is not None:
        return WithSecret(row, None, Withheld.DELETED)
    if row.secret_version != version:
        return WithSecret(row, None, Withheld.ROTATED)
    if now - made_at > SECRET_SHOWN_AGAIN_FOR:
        return WithSecret(row, None, Withheld.EXPIRED)
    return WithSecret(row, signing.unseal(row.secret, key_secret, row.id, row.secret_version))


async def listed(
    session: AsyncSession, tenant: str | None, *, program_id: str | None = None, deleted: bool = False
) -> Sequence[WebhookSubscription]:
    """Live subscriptions the tenant sees (staff: optionally one program's), and with
    ``deleted`` the deleted ones too, oldest first; a program that does not exist is not found,
    not a program with no subscription."""
    if program_id is not None:
        await programs.get_program(session, program_id, field="programId")
    query = select(WebhookSubscription)
    if not deleted:
        query = query.where(col(WebhookSubscription.deleted_at).is_(None))
    owner = tenant if tenant is not None else program_id
    if owner is not None:
        query = query.where(WebhookSubscription.program_id == owner)
    return (await session.exec(query.order_by(col(WebhookSubscription.created_at), col(WebhookSubscription.id)))).all()


async def get(
    session: AsyncSession,
    tenant: str | None,
    subscription_id: str,
    *,
    lock: bool = False,
    field: str = "id",
    deleted: bool = False,
) -> WebhookSubscription:
    """A live subscription the tenant may see (with ``deleted``, or a deleted one: its log is
    still read), else not found."""
    query = select(WebhookSubscription).where(WebhookSubscription.id == subscription_id)
    row = (await session.exec(query.with_for_update() if lock else query)).first()
    if row is None or (row.deleted_at is not None and not deleted) or (tenant is not None and row.program_id != tenant):
        raise SubscriptionNotFound(subscription_id, field)
    return row


async def rotate(
    session: AsyncSession,
    tenant: str | None,
    subscription_id: str,
    *,
    key_secret: str,
    overlap: timedelta,
    now: datetime,
    key: str | None = None,
) -> WithSecret:
    """A new secret; the one it replaces keeps signing beside it for ``overlap`` (receivers
    switch meanwhile). A rotation during another's overlap ends the older secret at once.

    With the idempotency ``key`` of a rotation of this subscription, it is that rotation repeated
    (a retry after a lost answer), the latest or an earlier one: nothing rotates, and the answer
    is that rotation's (:func:`repeated`: its secret withheld, ROTATED, once another replaced
    it). Rotating again instead would end the secret the receiver still holds at once, the one
    the lost answer replaced never having reached it. The subscription's row, locked, queues
    rotations of it, so one key makes one rotation."""
    row = await get(session, tenant, subscription_id, lock=True)
    if key is not None and (earlier := await session.get(WebhookRotation, (row.id, key))) is not None:
        return repeated(row, version=earlier.version, made_at=earlier.rotated_at, key_secret=key_secret, now=now)
    current = signing.unseal(row.secret, key_secret, row.id, row.secret_version)
    secret = signing.new_secret()
    row.secret_version += 1
    row.previous_secret = signing.seal(current, key_secret, row.id, row.secret_version - 1)
    row.previous_secret_until = now + overlap
    row.secret = signing.seal(secret, key_secret, row.id, row.secret_version)
    row.rotated_at = now
    session.add(row)
    if key is not None:
        session.add(
            WebhookRotation(subscription_id=row.id, idempotency_key=key, version=row.secret_version, rotated_at=now)
        )
    return WithSecret(row, secret)


async def delete(session: AsyncSession, tenant: str | None, subscription_id: str, now: datetime) -> WebhookSubscription:
    """Stop the subscription: nothing more is sent, what was pending is cancelled; its rows (the
    delivery log) are kept for the record, read as a live one's are (its retention aside). One
    deleted already (a retry after a lost answer) is the answer as it stands, changed no more."""
    row = await get(session, tenant, subscription_id, lock=True, deleted=True)
    if row.deleted_at is not None:
        return row
    row.deleted_at = now
    session.add(row)
    await session.exec(
        update(WebhookDelivery)
        .where(col(WebhookDelivery.subscription_id) == row.id, col(WebhookDelivery.status) == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.CANCELLED.value, finished_at=now, lease_until=None)
    )
    return row


async def replay(
    session: AsyncSession,
    tenant: str | None,
    subscription_id: str,
    *,
    delivery_ids: Collection[int] = (),
    dead: bool = False,
    since: datetime | None = None,
    now: datetime,
    by: str | None = None,
    key: str | None = None,
) -> int:
    """Queue deliveries again, each with a fresh retry window: those named by id, or every
    dead-lettered one (``dead``), or every finished one of an event since ``since`` (the oldest
    :data:`REPLAY_LIMIT` of them); how many.

    The same ``webhook-id`` is sent again (it is the same event), so a receiver that had
    processed it can tell.

    With the idempotency ``key`` of the client ``by``: the replay the key holds, if made by the
    same request (the same subscription, ids, or filters when it names none), answered by the
    count it queued, nothing queued now; ``IdempotencyConflict`` if made by another. The key is
    claimed first, so that the same request sent twice at once queues once."""
    row = await get(session, tenant, subscription_id, field="subscriptionId")
    if not delivery_ids and not dead and since is None:
        raise BadUserInput("name deliveries, or ask for the dead-lettered ones, or give a time", field="deliveryIds")
    if len(delivery_ids) > REPLAY_LIMIT:
        # Each id is a bound parameter: past 65,535 of them PostgreSQL's client library refuses
        # the query in words that read as an outage.
        raise BadUserInput(f"name at most {REPLAY_LIMIT} deliveries at once", field="deliveryIds")
    if delivery_ids:
        dead, since = False, None  # not read when deliveries are named
    asked = None
    if key is not None:
        assert by is not None, "a key is its client's"
        asked = WebhookReplay(
            created_by=by[:120],
            idempotency_key=key,
            subscription_id=row.id,
            delivery_ids=sorted(set(delivery_ids)),
            dead=dead,
            since=since,
            queued=0,
            created_at=now,
        )
        if (earlier := await _claim(session, asked)) is not None:
            return same_request(earlier, key, lambda replay: _asked_for(replay) == _asked_for(asked)).queued
    queued = await _queue_again(session, row, delivery_ids, dead=dead, since=since, now=now)
    if asked is not None:
        await session.exec(
            update(WebhookReplay)
            .where(
                col(WebhookReplay.created_by) == asked.created_by,
                col(WebhookReplay.idempotency_key) == asked.idempotency_key,
            )
            .values(queued=queued)
        )
    return queued


def _asked_for(replay: WebhookReplay) -> tuple[object, ...]:
    """What a replay was asked for: its subscription and deliveries, or its filters."""
    return (replay.subscription_id, replay.delivery_ids, replay.dead, replay.since)


async def _queue_again(
    session: AsyncSession,
    row: WebhookSubscription,
    delivery_ids: Collection[int],
    *,
    dead: bool,
    since: datetime | None,
    now: datetime,
) -> int:
    """:func:`replay`'s queuing: the deliveries chosen, queued again; how many."""
    query = select(WebhookDelivery.id).where(
        WebhookDelivery.subscription_id == row.id,
        col(WebhookDelivery.status).in_([DeliveryStatus.DELIVERED, DeliveryStatus.DEAD]),
    )
    if delivery_ids:
        found = set((await session.exec(query.where(col(WebhookDelivery.id).in_(list(delivery_ids))))).all())
        missing = sorted(set(delivery_ids) - found)
        if missing:
            raise DeliveryNotFound(missing[0])
        chosen = list(found)
    else:
        if dead:
            query = query.where(WebhookDelivery.status == DeliveryStatus.DEAD)
        if since is not None:
            query = query.join(WebhookEvent, col(WebhookEvent.sequence) == WebhookDelivery.sequence).where(
                col(WebhookEvent.occurred_at) >= since
            )
        # The oldest first: replaying again until none is queued sends each object's in order.
        chosen = list((await session.exec(query.order_by(col(WebhookDelivery.sequence)).limit(REPLAY_LIMIT))).all())
    if chosen:
        await session.exec(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.id).in_(chosen))
            .values(
                status=DeliveryStatus.PENDING.value,
                attempts=0,
                first_attempt_at=now,
                next_attempt_at=now,
                lease_until=None,
                finished_at=None,
            )
        )
    return len(chosen)


#: A subscription's deliveries, the latest event first; its delivery log, the latest try first.
DELIVERIES = Keyset("deliveries", (col(WebhookDelivery.sequence),), descending=True)
ATTEMPTS = Keyset("attempts", (col(WebhookAttempt.attempted_at), col(WebhookAttempt.id)), descending=True)


async def deliveries(
    session: AsyncSession,
    tenant: str | None,
    subscription_id: str,
    *,
    status: str | None,
    first: int,
    after: str | None = None,
) -> Page[DeliveryView]:
    """A page of the subscription's deliveries (a deleted one's too), newest event first, with
    their events, after the cursor ``after`` (one given out for the same subscription and
    ``status``)."""
    row = await get(session, tenant, subscription_id, deleted=True)
    return _one(await delivery_pages(session, tenant, [row.id], status=status, first=first, after=after), row.id)


async def delivery_pages(
    session: AsyncSession,
    tenant: str | None,
    subscription_ids: Collection[str],
    *,
    status: str | None,
    first: int,
    after: str | None = None,
) -> dict[str, Page[DeliveryView] | BadUserInput]:
    """Each of ``subscription_ids``' page of deliveries (only those in ``status``, if given),
    as :func:`deliveries` reads one, in two statements for a list of them (:func:`_pages`)."""
    only = [] if status is None else [col(WebhookDelivery.status) == status]
    pages = await _pages(
        session,
        WebhookDelivery,
        subscription_ids,
        DELIVERIES,
        tenant=tenant,
        scope=lambda subscription_id: [subscription_id, status],
        only=only,
        first=first,
        after=after,
    )
    sequences = [delivery.sequence for page in pages.values() if isinstance(page, Page) for delivery in page.items]
    events = {
        event.sequence: event
        for event in (
            await session.exec(
                select(WebhookEvent).where(one_of(col(WebhookEvent.sequence), sequences, session, BigInteger))
            )
            if sequences
            else []
        )
    }
    return {
        subscription_id: Page([DeliveryView(d, events[d.sequence]) for d in page.items], page.next_cursor)
        if isinstance(page, Page)
        else page
        for subscription_id, page in pages.items()
    }


async def attempts(
    session: AsyncSession, tenant: str | None, subscription_id: str, *, first: int, after: str | None = None
) -> Page[WebhookAttempt]:
    """A page of the subscription's delivery log (a deleted one's too), newest attempt first,
    after the cursor ``after``."""
    row = await get(session, tenant, subscription_id, deleted=True)
    return _one(await attempt_pages(session, tenant, [row.id], first=first, after=after), row.id)


async def attempt_pages(
    session: AsyncSession,
    tenant: str | None,
    subscription_ids: Collection[str],
    *,
    first: int,
    after: str | None = None,
) -> dict[str, Page[WebhookAttempt] | BadUserInput]:
    """Each of ``subscription_ids``' page of its delivery log, as :func:`attempts` reads one, in
    one statement for a list of them (:func:`_pages`)."""
    return await _pages(
        session,
        WebhookAttempt,
        subscription_ids,
        ATTEMPTS,
        tenant=tenant,
        scope=lambda subscription_id: subscription_id,
        first=first,
        after=after,
    )


Logged = TypeVar("Logged", WebhookDelivery, WebhookAttempt)
Item = TypeVar("Item")


async def _pages(
    session: AsyncSession,
    model: type[Logged],
    subscription_ids: Collection[str],
    keyset: Keyset,
    *,
    tenant: str | None,
    scope: Callable[[str], object],
    only: Sequence[ColumnElement[bool]] = (),
    first: int,
    after: str | None,
) -> dict[str, Page[Logged] | BadUserInput]:
    """Each subscription's page of ``model``'s rows (``only`` those), ``first`` of them after
    the cursor ``after``, in one statement per :data:`~exchange.db.grouping.PAGES_PER_STATEMENT`
    subscriptions (:func:`~exchange.db.grouping.page_per_parent`): a list of them costs what one
    does. A subscription the tenant does not see has an empty page; a deleted one, its log. ``after`` is one
    subscription's cursor (its ``scope`` is checked in it): for any other, the answer is its
    refusal, as it would be were the subscription asked alone."""
    positions: dict[str, list[Any] | None] = {}
    answers: dict[str, Page[Logged] | BadUserInput] = {}
    for subscription_id in dict.fromkeys(subscription_ids):
        try:
            positions[subscription_id] = (
                None if after is None else keyset.position(after, scope(subscription_id), "after")
            )
        except BadUserInput as refused:
            answers[subscription_id] = refused

    def page(subscription_id: str) -> SelectOfScalar[int | None]:
        rows = select(col(model.id)).where(col(model.subscription_id) == subscription_id, *only)
        return following(rows, keyset, positions[subscription_id], first)

    found: list[Logged] = []
    for chosen in page_per_parent(positions, page):
        found.extend(
            await session.exec(
                select(model)
                .join(WebhookSubscription, col(WebhookSubscription.id) == model.subscription_id)
                .where(col(model.id).in_(chosen), *_seen_by(tenant))
                .order_by(*keyset.order)
            )
        )
    by_subscription = grouped(found, lambda row: row.subscription_id)
    for subscription_id in positions:
        answers[subscription_id] = page_of(
            by_subscription.get(subscription_id, []), keyset, scope(subscription_id), first
        )
    return answers


def _one(pages: Mapping[str, Page[Item] | BadUserInput], subscription_id: str) -> Page[Item]:
    """One subscription's page, or its cursor's refusal raised."""
    answer = pages[subscription_id]
    if isinstance(answer, BadUserInput):
        raise answer
    return answer


def _seen_by(tenant: str | None) -> list[ColumnElement[bool]]:
    """A subscription the tenant sees, live or deleted, as :func:`get` finds one: its own unless staff."""
    return [] if tenant is None else [col(WebhookSubscription.program_id) == tenant]
