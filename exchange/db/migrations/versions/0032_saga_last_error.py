"""A saga row remembers why its last attempt failed, so that staff see the rows a partner keeps
failing (:mod:`exchange.sagas.retrying`).

``last_error`` on ``conversion``, ``redemption`` and ``status_match``: the partner's words (or
what went wrong reaching it) when a step was put off to be asked again; cleared when the row
moves on. Rows being retried at the upgrade get theirs at their next attempt.

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None

SAGA_TABLES = ("conversion", "redemption", "status_match")


def upgrade() -> None:
    for table in SAGA_TABLES:
        op.add_column(table, sa.Column("last_error", sa.String(500), nullable=True))


def downgrade() -> None:
    # In place, on SQLite too: a batch copy of a saga table would drop the triggers on it.
    for table in SAGA_TABLES:
        op.drop_column(table, "last_error")
