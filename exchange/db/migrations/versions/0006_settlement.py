"""Settlement: closed periods' obligations and positions, reconciliations, breaks and their
resolutions; and the two ledger-entry indexes the netting reads a period through.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import BigIdentity, UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ENTRY_INDEXES = (("negative", "amount < 0"), ("positive", "amount > 0"))


def upgrade() -> None:
    for side, condition in ENTRY_INDEXES:
        op.create_index(
            f"ix_ledger_entry_{side}",
            "ledger_entry",
            ["period", "unit", "transaction_seq"],
            postgresql_include=["account_id", "amount"],
            postgresql_where=sa.text(condition),
            sqlite_where=sa.text(condition),
        )
    op.create_table(
        "settlement_obligation",
        sa.Column("period", sa.String(7), sa.ForeignKey("settlement_period.period"), primary_key=True),
        sa.Column("debtor", sa.String(64), primary_key=True),
        sa.Column("creditor", sa.String(64), primary_key=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount > 0", name="settlement_obligation_amount_positive"),
    )
    op.create_table(
        "settlement_position",
        sa.Column("period", sa.String(7), sa.ForeignKey("settlement_period.period"), primary_key=True),
        sa.Column("participant", sa.String(64), primary_key=True),
        sa.Column("opening", sa.BigInteger(), nullable=False),
        sa.Column("payable", sa.BigInteger(), nullable=False),
        sa.Column("receivable", sa.BigInteger(), nullable=False),
        sa.Column("net", sa.BigInteger(), nullable=False),
        sa.Column("signed_off_at", UTCDateTime(), nullable=True),
        sa.Column("signed_off_by", sa.String(100), nullable=True),
        sa.Column("sign_off_note", sa.String(500), nullable=True),
        sa.CheckConstraint("net = receivable - payable", name="settlement_position_net"),
    )
    op.create_table(
        "reconciliation",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("partner", sa.String(64), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("imported_at", UTCDateTime(), nullable=False),
        sa.Column("imported_by", sa.String(100), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        *(
            sa.Column(name, sa.Integer(), nullable=False)
            for name in ("lines", "matched", "missing_in_ledger", "missing_in_partner", "amount_mismatch", "duplicate")
        ),
        sa.UniqueConstraint("period", "partner", "sequence"),
    )
    op.create_table(
        "reconciliation_break",
        sa.Column("id", BigIdentity, primary_key=True, autoincrement=True),
        sa.Column("reconciliation_id", sa.String(36), sa.ForeignKey("reconciliation.id"), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("line", sa.BigInteger(), nullable=True),
        sa.Column("partner_amount", sa.BigInteger(), nullable=True),
        sa.Column("ledger_amount", sa.BigInteger(), nullable=True),
        sa.Column("counterparty", sa.String(64), nullable=True),
        sa.Column("partner_date", sa.Date(), nullable=True),
        sa.Index("ix_reconciliation_break_reconciliation", "reconciliation_id", "id"),
    )
    op.create_table(
        "break_resolution",
        sa.Column(
            "break_id",
            sa.BigInteger(),
            sa.ForeignKey("reconciliation_break.id"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("resolution", sa.String(15), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("resolved_by", sa.String(100), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("counterparty", sa.String(64), nullable=True),
        sa.Column("transaction_id", sa.String(100), nullable=True),
    )


def downgrade() -> None:
    for table in (
        "break_resolution",
        "reconciliation_break",
        "reconciliation",
        "settlement_position",
        "settlement_obligation",
    ):
        op.drop_table(table)
    for side, _ in ENTRY_INDEXES:
        op.drop_index(f"ix_ledger_entry_{side}", table_name="ledger_entry")
