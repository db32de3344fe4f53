"""A publisher's redemptions to confirm indexed in the order its console lists them:
``ix_redemption_to_confirm`` on ``(publisher, kind, status, deliver_by, id)``.

The partner console lists a publisher's paid direct redemptions whose delivery it has yet to
confirm, the earliest ``deliver_by`` first. The only index to help was ``(status,
deliver_by)``, so each listing read every ``COMPLETED`` redemption of every publisher, among
them every lottery entry ever made (entries stay ``COMPLETED``: nothing is delivered), and
sorted them. With this index a listing reads its own page and stops.

Revision ID: 0046
Revises: 0045
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0046"
down_revision = "0045"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_redemption_to_confirm", "redemption", ["publisher", "kind", "status", "deliver_by", "id"])


def downgrade() -> None:
    op.drop_index("ix_redemption_to_confirm", table_name="redemption")
