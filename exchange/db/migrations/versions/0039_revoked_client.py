"""When each client id was last revoked: ``revoked_client``.

Deleting a client (revoking it in the partner console) ended its tokens because the standing
check found no client of that id; a client made again under the same id (the demo's renewal of
a client that is missing, ``demo-<program>``) brought the deleted client's
unexpired tokens back to life. The time of the revocation is now kept after the client's row is
gone, and a token issued before it stays refused. Clients deleted before this revision are not
known: their tokens have expired by now unless one was deleted within a token's lifetime.

Revision ID: 0039
Revises: 0038
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0039"
down_revision = "0038"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revoked_client",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_id"),
    )


def downgrade() -> None:
    op.drop_table("revoked_client")
