"""Retries answer what the first request did: webhook replays and debit consents take an
idempotency key, and every keyed rotation of a webhook secret is remembered, not only the latest.

``webhook_replay``: a replay made under its client's key (unique per client, ``created_by``),
what it asked and how many deliveries it queued. ``replayWebhookDeliveries`` sent again queued
the deliveries again (each receiver got them once more); with the same key and request it now
answers the first replay's count, queuing nothing.

``debit_consent.idempotency_key`` (unique per member, by an index as revision 0055's) and
``sealed_secret``: ``authorizeDebit`` sent again gave a second consent, and a second debit of
the points could be made; with the same key and request it now answers the first consent, its
secret shown again (sealed with the key-encryption secret, as webhook secrets are; only a keyed
consent keeps one). Both nullable: a request without a key records neither.

``webhook_rotation``: each keyed rotation of a subscription's secret, the version it made and
when. Only the latest rotation's key was kept (``webhook_subscription.rotation_key``), so an
older rotation retried late rotated again and ended at once the secret its receiver held; every
rotation's key now answers its own rotation (its secret withheld, ROTATED, once another
rotation replaced it). The kept keys move to the new table, and the column goes.

Revision ID: 0057
Revises: 0056
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0057"
down_revision = "0056"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_rotation",
        sa.Column("subscription_id", sa.String(36), sa.ForeignKey("webhook_subscription.id"), nullable=False),
        sa.Column("idempotency_key", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rotated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("subscription_id", "idempotency_key"),
    )
    op.execute(
        "INSERT INTO webhook_rotation (subscription_id, idempotency_key, version, rotated_at) "
        "SELECT id, rotation_key, secret_version, rotated_at FROM webhook_subscription "
        "WHERE rotation_key IS NOT NULL AND rotated_at IS NOT NULL"
    )
    # ALTER TABLE … DROP COLUMN, on SQLite too (3.35 and later), as revision 0044's.
    op.drop_column("webhook_subscription", "rotation_key")
    op.create_table(
        "webhook_replay",
        sa.Column("created_by", sa.String(120), nullable=False),
        sa.Column("idempotency_key", sa.String(100), nullable=False),
        sa.Column("subscription_id", sa.String(36), sa.ForeignKey("webhook_subscription.id"), nullable=False),
        sa.Column("delivery_ids", sa.JSON(), nullable=False),
        sa.Column("dead", sa.Boolean(), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=True),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("created_by", "idempotency_key"),
    )
    op.add_column("debit_consent", sa.Column("idempotency_key", sa.String(100), nullable=True))
    op.add_column("debit_consent", sa.Column("sealed_secret", sa.Text(), nullable=True))
    op.create_index("ix_debit_consent_member_key", "debit_consent", ["member_id", "idempotency_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_debit_consent_member_key", table_name="debit_consent")
    op.drop_column("debit_consent", "sealed_secret")
    op.drop_column("debit_consent", "idempotency_key")
    op.drop_table("webhook_replay")
    op.add_column("webhook_subscription", sa.Column("rotation_key", sa.String(100), nullable=True))
    # The latest rotation's key, as the column kept it (when that rotation was given one).
    op.execute(
        "UPDATE webhook_subscription SET rotation_key = (SELECT r.idempotency_key FROM webhook_rotation r "
        "WHERE r.subscription_id = webhook_subscription.id AND r.version = webhook_subscription.secret_version)"
    )
    op.drop_table("webhook_rotation")
