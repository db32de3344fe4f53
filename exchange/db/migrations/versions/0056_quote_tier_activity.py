"""The member's tier activity marker a quote's level was read under: ``quote.tier_activity``.

A quote kept the tier bonus it was priced with for its few minutes after the member unlinked
the account whose tier earned it (or after a status match that raised their tier ended), and
executing it paid that bonus. A quote with a tier bonus is now executed only while the member's
``tier_activity`` (which both move) is the one it was priced under; else ``QUOTE_EXPIRED``
(``extensions.reason`` ``TIERS_CHANGED``). Quotes made before have none and are executed as
they were: they expire within minutes.

Revision ID: 0056
Revises: 0055
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0056"
down_revision = "0055"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("quote", sa.Column("tier_activity", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN, on SQLite too (3.35 and later), as revision 0044's.
    op.drop_column("quote", "tier_activity")
