"""A held conversion's ``next_attempt_at`` is when its hold ends unreviewed (``HOLD_EXPIRED``).

Conversions held before this revision carry the lease's end there (seconds after they were
held), so they would all end at the first pass after the upgrade. They get the default
review time from the upgrade on instead: staff have a full week to review what was waiting.

Revision ID: 0025
Revises: 0021
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime
from exchange.programs.declarations import HOLD_EXPIRES_AFTER

revision = "0025"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().execute(
        sa.text("UPDATE conversion SET next_attempt_at = :ends WHERE status = 'HELD'").bindparams(
            sa.bindparam("ends", type_=UTCDateTime())
        ),
        {"ends": datetime.now(UTC) + HOLD_EXPIRES_AFTER},
    )


def downgrade() -> None:
    """Nothing to undo: before this revision, a held row's ``next_attempt_at`` was not read."""
