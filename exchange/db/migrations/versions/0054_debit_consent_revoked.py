"""Debit consents revoked by an unlink: ``debit_consent.revoked_at``.

Unlinking a member's account at a program revokes, in the same unit of work, the consents the
member gave through that program and had not used: a consent lived out its few minutes after
the account it debits was unlinked, and debited whatever account the member linked there next.
A revoked consent is refused ``CONSENT_REVOKED`` and forgotten, as an unused one is, a day
after it would have expired.

Revision ID: 0054
Revises: 0053
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0054"
down_revision = "0053"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("debit_consent", sa.Column("revoked_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN, on SQLite too (3.35 and later), as revision 0044's.
    op.drop_column("debit_consent", "revoked_at")
