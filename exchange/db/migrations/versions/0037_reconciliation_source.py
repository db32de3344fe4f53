"""Where an import's records came from: ``reconciliation.source``.

``PARTNER_FILE`` (a partner's file, uploaded or given to ``exchange settle reconcile``) or
``COALITION_BOOK`` (the coalition point's records, written from the exchange's own book of the
point). Until now the point's imports recorded ``exchange:coalition-book`` as their importer, in
place of whoever reconciled the point; ``imported_by`` now names that person, and the source says
where the file came from. Imports made before keep ``exchange:coalition-book`` as their importer
(who it was is not known) and get ``COALITION_BOOK``; every other import ``PARTNER_FILE``.

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reconciliation", sa.Column("source", sa.String(20), nullable=False, server_default="PARTNER_FILE"))
    op.execute("UPDATE reconciliation SET source = 'COALITION_BOOK' WHERE imported_by = 'exchange:coalition-book'")


def downgrade() -> None:
    op.drop_column("reconciliation", "source")
