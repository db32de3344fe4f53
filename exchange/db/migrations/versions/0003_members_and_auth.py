"""Members and their linked accounts; OAuth clients, signing keys, assertion keys, and the
records behind revocation, assertion replay protection and token-endpoint rate limiting.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "member",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "linked_account",
        sa.Column(
            "member_id",
            sa.String(40),
            sa.ForeignKey("member.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("program_id", sa.String(64), sa.ForeignKey("program.id"), primary_key=True),
        sa.Column("member_ref", sa.String(128), nullable=False),
        sa.Column("linked_at", UTCDateTime(), nullable=False),
        sa.Column("established_by", sa.String(20), nullable=False),
        sa.UniqueConstraint("program_id", "member_ref"),
    )
    op.create_table(
        "oauth_client",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("secret_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("program_id", sa.String(64), sa.ForeignKey("program.id"), nullable=True),
        sa.Column("scope", sa.String(255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "(role = 'partner') = (program_id IS NOT NULL)",
            name="oauth_client_partner_has_program",
        ),
    )
    op.create_index("ix_oauth_client_program_id", "oauth_client", ["program_id"])
    op.create_table(
        "partner_assertion_key",
        sa.Column(
            "program_id",
            sa.String(64),
            sa.ForeignKey("program.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("kid", sa.String(128), primary_key=True),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "signing_key",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("algorithm", sa.String(10), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("encrypted_private_key", sa.Text(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("retired_at", UTCDateTime(), nullable=True),
        sa.Column("publish_until", UTCDateTime(), nullable=True),
        sa.CheckConstraint("state IN ('active', 'retired')", name="signing_key_state"),
        sa.CheckConstraint("(state = 'active') = (retired_at IS NULL)", name="signing_key_retired_at"),
    )
    op.create_index(
        "signing_key_one_active",
        "signing_key",
        ["state"],
        unique=True,
        postgresql_where=sa.text("state = 'active'"),
        sqlite_where=sa.text("state = 'active'"),
    )
    op.create_table(
        "revoked_token",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_revoked_token_expires_at", "revoked_token", ["expires_at"])
    op.create_table(
        "used_assertion",
        sa.Column("issuer", sa.String(64), primary_key=True),
        sa.Column("jti", sa.String(128), primary_key=True),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_used_assertion_expires_at", "used_assertion", ["expires_at"])
    op.create_table(
        "client_auth_failure",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("window_started_at", UTCDateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
    )
    op.create_index("ix_client_auth_failure_window_started_at", "client_auth_failure", ["window_started_at"])


def downgrade() -> None:
    op.drop_table("client_auth_failure")
    op.drop_table("used_assertion")
    op.drop_table("revoked_token")
    op.drop_index("signing_key_one_active", table_name="signing_key")
    op.drop_table("signing_key")
    op.drop_table("partner_assertion_key")
    op.drop_table("oauth_client")
    op.drop_table("linked_account")
    op.drop_table("member")
