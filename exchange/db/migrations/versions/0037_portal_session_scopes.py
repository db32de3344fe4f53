"""A portal session keeps, per program that vouched for its member, what that program's client
lets its members' tokens do (``member_web_session.program_scopes``): a session opened through a
partner whose client's member scopes are ``member:read`` no longer converts, redeems, links or
asks for status matches.

Sessions opened before this revision recorded no scopes and could do everything: they are ended
(members sign in again), rather than kept with abilities their partners may not allow.

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
    op.execute("DELETE FROM member_web_session")
    with op.batch_alter_table("member_web_session") as batch:
        batch.add_column(sa.Column("program_scopes", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("member_web_session") as batch:
        batch.drop_column("program_scopes")
