"""OAuth hardening.

Failed client authentications are counted per (client id, caller's address), so that no one
locks a partner out by sending wrong secrets under its client id: ``client_auth_failure`` is
rebuilt with the new key. Its rows are open rate-limit windows (at most
``EXCHANGE_TOKEN_FAILURE_WINDOW`` seconds old) and are not kept: a window open at the upgrade
starts again with the next failure.

``oauth_client.secret_set_at``: when the client's secret was last reset; tokens issued before
are refused. ``NULL`` (every existing client's) while a client has the secret it was made with.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def _create_client_auth_failure(*key: sa.Column[str]) -> None:
    op.create_table(
        "client_auth_failure",
        *key,
        sa.Column("window_started_at", UTCDateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
    )
    op.create_index("ix_client_auth_failure_window_started_at", "client_auth_failure", ["window_started_at"])


def upgrade() -> None:
    op.drop_table("client_auth_failure")
    _create_client_auth_failure(
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("address", sa.String(64), primary_key=True),
    )
    with op.batch_alter_table("oauth_client") as batch:
        batch.add_column(sa.Column("secret_set_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("oauth_client") as batch:
        batch.drop_column("secret_set_at")
    op.drop_table("client_auth_failure")
    _create_client_auth_failure(sa.Column("client_id", sa.String(64), primary_key=True))
