"""Portal sign-ins under way move from a table to a signed cookie, and a statement key signs
from a moment of its own.

``portal_sign_in`` goes: anyone could fill it by asking for sign-in pages; a sign-in is now kept
by the browser (:mod:`exchange.people.portal_sign_in`). Sign-ins under way at the upgrade are
lost: their members start again.

``statement_key.signs_from``: a rotated-in statement key is published at once but signs only
from then (:mod:`exchange.settlement.keys`); keys made before have none and sign from their
creation.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("portal_sign_in")
    op.add_column("statement_key", sa.Column("signs_from", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("statement_key") as statement_key:
        statement_key.drop_column("signs_from")
    op.create_table(
        "portal_sign_in",
        sa.Column("state_hash", sa.String(64), primary_key=True),
        sa.Column("program_id", sa.String(64), sa.ForeignKey("program.id", ondelete="CASCADE"), nullable=False),
        sa.Column("session_hash", sa.String(64), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_portal_sign_in_expires_at", "portal_sign_in", ["expires_at"])
