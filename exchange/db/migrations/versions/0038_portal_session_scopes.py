"""A portal session records, per program that vouched for its member, the client whose
assertion vouched and when (``member_web_session.vouchers``, which replaces ``asserted_by``,
the list of those programs): what the session may do through a program is then read from that
client on every request, as a member token's is. A session through a partner whose client's
member scopes are ``member:read`` does not convert, redeem, link or ask for status matches; a
client deleted, or whose secret was reset, since the sign-in no longer vouches.

Sessions opened before this revision recorded no clients and could do everything: they are
ended (members sign in again), rather than kept with abilities their partners may not allow.

Revision ID: 0038
Revises: 0037
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0038"
down_revision = "0037"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Emptied first, so the new column needs no default to fill rows with.
    op.execute("DELETE FROM member_web_session")
    with op.batch_alter_table("member_web_session") as batch:
        batch.drop_column("asserted_by")
        batch.add_column(sa.Column("vouchers", sa.JSON(), nullable=False))


def downgrade() -> None:
    op.execute("DELETE FROM member_web_session")
    with op.batch_alter_table("member_web_session") as batch:
        batch.drop_column("vouchers")
        batch.add_column(sa.Column("asserted_by", sa.JSON(), nullable=False))
