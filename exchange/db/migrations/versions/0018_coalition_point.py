"""The coalition point: programs' kind, the point's declaration, and its lots and operations.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import BigIdentity, ExactNumeric, UTCDateTime
from exchange.money import POINT_VALUE_SCALE

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("program") as batch:
        batch.add_column(sa.Column("kind", sa.String(20), nullable=False, server_default="PARTNER"))
    with op.batch_alter_table("coalition_settings") as batch:
        batch.add_column(sa.Column("point_program_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("point_expiry", sa.String(40), nullable=True))
        batch.add_column(sa.Column("point_timezone", sa.String(64), nullable=True))
        batch.add_column(sa.Column("point_breakage", sa.String(20), nullable=True))
    op.create_table(
        "coalition_lot",
        sa.Column("id", BigIdentity, primary_key=True, autoincrement=True),
        sa.Column("member_id", sa.String(40), sa.ForeignKey("member.id"), nullable=False),
        sa.Column("program_id", sa.String(64), sa.ForeignKey("program.id"), nullable=False),
        sa.Column("funded_by", sa.String(64), sa.ForeignKey("program.id"), nullable=True),
        sa.Column("opened_by", sa.String(128), nullable=False, unique=True),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("expired", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("earned_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "remaining >= 0 AND expired >= 0 AND remaining + expired <= points", name="coalition_lot_sums"
        ),
    )
    op.create_index("ix_coalition_lot_member_expiry", "coalition_lot", ["member_id", "expires_at", "id"])
    op.create_index("ix_coalition_lot_expires_at", "coalition_lot", ["expires_at"])
    op.create_table(
        "coalition_operation",
        sa.Column("operation_id", sa.String(128), primary_key=True),
        sa.Column("saga_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(20), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("member_ref", sa.String(128), nullable=True),
        sa.Column("points", sa.BigInteger(), nullable=True),
        sa.Column("reversed_points", sa.BigInteger(), nullable=False),
        sa.Column("reverses", sa.String(128), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_coalition_operation_saga_id", "coalition_operation", ["saga_id"])
    op.create_table(
        "coalition_draw",
        sa.Column("operation_id", sa.String(128), sa.ForeignKey("coalition_operation.operation_id"), primary_key=True),
        sa.Column("lot_id", sa.BigInteger(), sa.ForeignKey("coalition_lot.id"), primary_key=True),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("restored", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("restored >= 0 AND restored <= points", name="coalition_draw_restored"),
    )
    op.create_table(
        "coalition_expiry",
        sa.Column("id", BigIdentity, primary_key=True, autoincrement=True),
        sa.Column("lot_id", sa.BigInteger(), sa.ForeignKey("coalition_lot.id"), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("ledger_transaction_id", sa.String(100), nullable=False),
        sa.Column("expired_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_coalition_expiry_lot_id", "coalition_expiry", ["lot_id"])
    op.create_index("ix_coalition_expiry_ledger_transaction_id", "coalition_expiry", ["ledger_transaction_id"])
    op.create_table(
        "coalition_liability",
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("program_id", sa.String(64), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("point_value", ExactNumeric(18, POINT_VALUE_SCALE), nullable=False),
        sa.Column("liability_minor", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("coalition_liability")
    op.drop_table("coalition_expiry")
    op.drop_table("coalition_draw")
    op.drop_table("coalition_operation")
    op.drop_table("coalition_lot")
    with op.batch_alter_table("coalition_settings") as batch:
        for column in ("point_breakage", "point_timezone", "point_expiry", "point_program_id"):
            batch.drop_column(column)
    with op.batch_alter_table("program") as batch:
        batch.drop_column("kind")
