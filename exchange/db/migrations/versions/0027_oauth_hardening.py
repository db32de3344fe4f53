"""OAuth hardening.

Failed client authentications are counted per (client id, caller's address), so that no one
locks a partner out by sending wrong secrets under its client id: ``client_auth_failure`` is
rebuilt with the new key. Its rows are open rate-limit windows (at most
``EXCHANGE_TOKEN_FAILURE_WINDOW`` seconds old) and are not kept: a window open at the upgrade
starts again with the next failure.

``oauth_client.secret_set_at``: when the client's secret was last reset; tokens issued before
are refused. ``NULL`` (every existing client's) while a client has the secret it was made with.

``oauth_client.member_scope``: the most the member tokens a partner's client obtains may carry
(``exchange.auth.scopes``). An existing partner's client gets the default: every member scope
if it holds ``partner:write`` (what it could mint before), ``member:read`` if it does not; a
staff client none.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

#: Member scopes as this revision knows them (not imported: a migration does not change with
#: the code).
ALL_MEMBER_SCOPES = "member:coalition member:read member:write"
READ_MEMBERS = "member:read"


def _create_client_auth_failure(*key: sa.Column[str]) -> None:
    op.create_table(
        "client_auth_failure",
        *key,
        sa.Column("window_started_at", UTCDateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
    )
    op.create_index("ix_client_auth_failure_window_started_at", "client_auth_failure", ["window_started_at"])


def upgrade() -> None:
    op.drop_table("client_auth_failure")
    _create_client_auth_failure(
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("address", sa.String(64), primary_key=True),
    )
    with op.batch_alter_table("oauth_client") as batch:
        batch.add_column(sa.Column("secret_set_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("member_scope", sa.String(255), nullable=True))
    # ``scope`` is scope names separated by single spaces (exchange.auth.scopes.scope_text).
    op.execute(
        "UPDATE oauth_client SET member_scope = CASE"
        f" WHEN role = 'partner' AND ' ' || scope || ' ' LIKE '% partner:write %' THEN '{ALL_MEMBER_SCOPES}'"
        f" WHEN role = 'partner' THEN '{READ_MEMBERS}'"
        " ELSE '' END"
    )
    with op.batch_alter_table("oauth_client") as batch:
        batch.alter_column("member_scope", existing_type=sa.String(255), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("oauth_client") as batch:
        batch.drop_column("member_scope")
        batch.drop_column("secret_set_at")
    op.drop_table("client_auth_failure")
    _create_client_auth_failure(sa.Column("client_id", sa.String(64), primary_key=True))
