"""``unlinked_account``: what is left of a link a member removed (``unlinkAccount``).

Unlinking deletes the ``linked_account`` row, so the account can be linked again; this table
keeps the link as it stood and when it ended, so that a repeated unlink is told the account is
unlinked already, and the member's past accounts stay on record.

Revision ID: 0043
Revises: 0042
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0043"
down_revision = "0042"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "unlinked_account",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("member_id", sa.String(40), sa.ForeignKey("member.id", ondelete="CASCADE"), nullable=False),
        sa.Column("program_id", sa.String(64), sa.ForeignKey("program.id"), nullable=False),
        sa.Column("member_ref", sa.String(128), nullable=False),
        sa.Column("linked_at", UTCDateTime(), nullable=False),
        sa.Column("established_by", sa.String(20), nullable=False),
        sa.Column("holder_name", sa.String(200), nullable=True),
        sa.Column("unlinked_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_unlinked_account_member_program", "unlinked_account", ["member_id", "program_id", "member_ref"])


def downgrade() -> None:
    op.drop_index("ix_unlinked_account_member_program", table_name="unlinked_account")
    op.drop_table("unlinked_account")
