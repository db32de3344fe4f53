"""The webhook tables: subscriptions, the event outbox, deliveries and their attempts.

An event row is written in the unit of work of the change it reports (the outbox), so it
exists if and only if that change committed. The delivery worker fans each event out to the
subscriptions that want it (one delivery per subscription and event) and sends them; every
try is an attempt row, the subscription's delivery log.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, BigInteger, Column, FetchedValue, ForeignKey, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from exchange.db.types import BigIdentity, UTCDateTime
from exchange.idempotency import IDEMPOTENCY_KEY_LENGTH

#: ``https://…`` URLs longer than this are refused (and the column is this long).
URL_LENGTH = 2000
DESCRIPTION_LENGTH = 200
#: An event's id, sent as ``webhook-id``: ``msg_`` and a UUID's hex.
EVENT_ID_LENGTH = 36
OBJECT_LENGTH = 120


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    """To be sent (again) at ``next_attempt_at``."""
    DELIVERED = "DELIVERED"
    """The receiver answered 2xx."""
    DEAD = "DEAD"
    """Retried for the whole retry window without a 2xx: dead-lettered, until replayed."""
    CANCELLED = "CANCELLED"
    """Its subscription was deleted before it was delivered."""


class AttemptOutcome(StrEnum):
    """What one attempt did to its delivery: the delivery's status after it, or ``CUT_OFF``."""

    PENDING = DeliveryStatus.PENDING.value
    DELIVERED = DeliveryStatus.DELIVERED.value
    DEAD = DeliveryStatus.DEAD.value
    CUT_OFF = "CUT_OFF"
    """Sent, but the delivery was no longer this attempt's when it came back: its subscription
    was deleted meanwhile (the delivery is cancelled, never retried), or the worker's lease ran
    out and another worker took the delivery over. What the receiver made of it is unknown to
    the delivery; the attempt's ``error`` says which."""


class WebhookSubscription(SQLModel, table=True):
    """A URL that receives events of the listed types. ``program_id`` is the partner that owns
    it (and whose events alone it receives); ``None``: a staff tool's, which receives every
    program's events. It receives every event committed after its mark was taken as it was
    made, and none before (:func:`~exchange.webhooks.outbox.mark`): on PostgreSQL those whose
    unit of work ``after_snapshot`` did not see committed; else those whose sequence is above
    ``after_sequence``."""

    __tablename__ = "webhook_subscription"
    __table_args__ = (Index("ix_webhook_subscription_client_key", "created_by", "idempotency_key", unique=True),)

    id: str = Field(primary_key=True, max_length=36)
    program_id: str | None = Field(default=None, foreign_key="program.id", max_length=64, index=True)
    url: str = Field(max_length=URL_LENGTH)
    event_types: list[str] = Field(sa_column=Column(JSON, nullable=False))
    description: str = Field(default="", max_length=DESCRIPTION_LENGTH)
    secret: str = Field(sa_column=Column(Text, nullable=False), description="The signing secret, as a JWE.")
    previous_secret: str | None = Field(
        default=None, sa_column=Column(Text, nullable=True), description="The secret before a rotation, as a JWE."
    )
    previous_secret_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    secret_version: int = 1
    rotated_at: datetime | None = Field(
        default=None, sa_type=UTCDateTime, description="When the secret was made, if by a rotation."
    )
    created_by: str = Field(max_length=120)
    created_at: datetime = Field(sa_type=UTCDateTime)
    idempotency_key: str | None = Field(
        default=None,
        max_length=IDEMPOTENCY_KEY_LENGTH,
        description="The creating client's key for the request, if it gave one (unique per client).",
    )
    after_sequence: int = Field(
        default=0,
        sa_column=Column(BigInteger, nullable=False, server_default="0"),
        description="The latest event's sequence its mark saw committed (events above it are after it).",
    )
    after_snapshot: str | None = Field(
        default=None,
        sa_column=Column(Text, nullable=True),
        description="PostgreSQL: the snapshot of its mark (`xmin:xmax:xip,…`); an event of a unit of work it "
        "did not see committed is after it. None on SQLite, and for a subscription made before it was kept.",
    )
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookRotation(SQLModel, table=True):
    """A rotation of a subscription's secret made under an idempotency key: the secret version
    it made, and when. The key sent again answers that rotation, however many came after it."""

    __tablename__ = "webhook_rotation"

    subscription_id: str = Field(primary_key=True, foreign_key="webhook_subscription.id", max_length=36)
    idempotency_key: str = Field(primary_key=True, max_length=IDEMPOTENCY_KEY_LENGTH)
    version: int
    rotated_at: datetime = Field(sa_type=UTCDateTime)


class WebhookReplay(SQLModel, table=True):
    """A replay of a subscription's deliveries made under its client's idempotency key (unique
    per client, ``created_by``): what it asked for and how many deliveries it queued, which the
    same request sent again answers, queuing nothing."""

    __tablename__ = "webhook_replay"

    created_by: str = Field(primary_key=True, max_length=120)
    idempotency_key: str = Field(primary_key=True, max_length=IDEMPOTENCY_KEY_LENGTH)
    subscription_id: str = Field(foreign_key="webhook_subscription.id", max_length=36)
    delivery_ids: list[int] = Field(
        sa_column=Column(JSON, nullable=False), description="The deliveries it named, in order; none: by filters."
    )
    dead: bool
    since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    queued: int
    created_at: datetime = Field(sa_type=UTCDateTime)


class WebhookEvent(SQLModel, table=True):
    """One event in the outbox. ``sequence`` orders events (and so the deliveries of one
    object); ``programs`` are the partners it concerns (``None``: every partner)."""

    __tablename__ = "webhook_event"
    __table_args__ = (Index("ix_webhook_event_unfanned", "fanned_out", "sequence"),)

    sequence: int | None = Field(default=None, sa_column=Column(BigIdentity, primary_key=True, autoincrement=True))
    id: str = Field(max_length=EVENT_ID_LENGTH, unique=True, description="Sent as `webhook-id`.")
    type: str = Field(max_length=40)
    object: str = Field(max_length=OBJECT_LENGTH, description="What the event is about: `conversion:<id>`, ….")
    programs: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    body: str = Field(sa_column=Column(Text, nullable=False), description="The JSON sent, byte for byte.")
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    fanned_out: bool = False
    xact: int | None = Field(
        default=None,
        sa_column=Column(BigInteger, nullable=True, server_default=FetchedValue()),
        description="PostgreSQL: the id of the unit of work that wrote it (the column's default, "
        "`pg_current_xact_id()`), to tell whether a subscription's mark saw it committed. None on SQLite.",
    )


FIRST_ATTEMPT = "status = 'PENDING' AND attempts = 0"
RETRY = "status = 'PENDING' AND attempts > 0"
LEASED = "status = 'PENDING' AND lease_until IS NOT NULL"


class WebhookDelivery(SQLModel, table=True):
    """One event to send to one subscription, and where its sending stands."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("subscription_id", "sequence"),
        # A subscription's due first attempts, and its due retries, each in the order claimed;
        # and its leased deliveries, counted against its cap (the claim's reads).
        Index(
            "ix_webhook_delivery_first_due",
            "subscription_id",
            "next_attempt_at",
            "sequence",
            postgresql_where=text(FIRST_ATTEMPT),
            sqlite_where=text(FIRST_ATTEMPT),
        ),
        Index(
            "ix_webhook_delivery_retry_due",
            "subscription_id",
            "next_attempt_at",
            "sequence",
            postgresql_where=text(RETRY),
            sqlite_where=text(RETRY),
        ),
        Index(
            "ix_webhook_delivery_leased",
            "subscription_id",
            "lease_until",
            postgresql_where=text(LEASED),
            sqlite_where=text(LEASED),
        ),
        Index("ix_webhook_delivery_object", "subscription_id", "object", "status", "sequence"),
        Index("ix_webhook_delivery_sequence", "sequence"),
        Index("ix_webhook_delivery_ended", "status", "finished_at"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIdentity, primary_key=True, autoincrement=True))
    subscription_id: str = Field(foreign_key="webhook_subscription.id", max_length=36)
    sequence: int = Field(
        sa_column=Column(BigInteger, ForeignKey("webhook_event.sequence"), nullable=False),
        description="The event's: deliveries of one object go out in this order.",
    )
    object: str = Field(max_length=OBJECT_LENGTH)
    status: str = Field(default=DeliveryStatus.PENDING, max_length=10)
    attempts: int = 0
    first_attempt_at: datetime = Field(sa_type=UTCDateTime, description="When the retry window started.")
    next_attempt_at: datetime = Field(sa_type=UTCDateTime)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=300)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookAttempt(SQLModel, table=True):
    """One try at a delivery: the delivery log."""

    __tablename__ = "webhook_attempt"
    __table_args__ = (Index("ix_webhook_attempt_subscription", "subscription_id", "attempted_at"),)

    id: int | None = Field(default=None, sa_column=Column(BigIdentity, primary_key=True, autoincrement=True))
    delivery_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("webhook_delivery.id"), nullable=False, index=True)
    )
    subscription_id: str = Field(max_length=36)
    attempted_at: datetime = Field(sa_type=UTCDateTime)
    status_code: int | None = Field(default=None, description="The receiver's HTTP status; none if none came.")
    latency_ms: int
    error: str | None = Field(default=None, max_length=300)
    outcome: str = Field(
        max_length=10, description="An :class:`AttemptOutcome`: the delivery's status after this attempt, or CUT_OFF."
    )
