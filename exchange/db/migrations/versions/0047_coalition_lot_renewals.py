"""A lot a reversal opens names the reversal and the funder: ``coalition_lot.opened_by`` holds
200 characters, not 128.

A reversal of a debit puts what a lot that has expired since gave into a new lot per funder
(docs/COALITION.md, "Expiry"); its ``opened_by`` is the reversal's operation id (up to 128
characters), a ``#`` and the funding program's id (up to 64). On PostgreSQL a longer
``varchar`` rewrites nothing.

Revision ID: 0047
Revises: 0046
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0047"
down_revision = "0046"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("coalition_lot") as lot:
        lot.alter_column("opened_by", existing_type=sa.String(128), type_=sa.String(200), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("coalition_lot") as lot:
        lot.alter_column("opened_by", existing_type=sa.String(200), type_=sa.String(128), existing_nullable=False)
