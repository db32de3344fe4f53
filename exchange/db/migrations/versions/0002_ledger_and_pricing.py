"""The clearing ledger (append-only, balanced, hash-chained) and pricing (rates, promotions, quotes).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import BigIdentity, ExactNumeric, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64

POSTGRES_GUARDS = [
    # Entries and transactions are never changed or removed: corrections are new entries.
    """
    CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the ledger is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation';
    END $$
    """,
    # At commit, every transaction's entries sum to zero in each unit. The check of one entry
    # covers all entries of its transaction (they are all in place at commit, and deferred
    # events fire in insertion order), so the entries after the first skip it: the
    # transaction-local setting remembers which transaction was checked last.
    """
    CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        unbalanced record;
    BEGIN
        IF current_setting('ledger.checked_seq', true) = NEW.transaction_seq::text THEN
            RETURN NULL;
        END IF;
        SELECT unit, sum(amount) AS total INTO unbalanced
          FROM ledger_entry
         WHERE transaction_seq = NEW.transaction_seq
         GROUP BY unit
        HAVING sum(amount) <> 0
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'ledger transaction % does not balance: % % left over',
                NEW.transaction_seq, unbalanced.total, unbalanced.unit
                USING ERRCODE = 'check_violation';
        END IF;
        PERFORM set_config('ledger.checked_seq', NEW.transaction_seq::text, true);
        RETURN NULL;
    END $$
    """,
    *(
        statement
        for table in ("ledger_transaction", "ledger_entry")
        for statement in (
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()",
        )
    ),
    "CREATE CONSTRAINT TRIGGER ledger_entry_balanced AFTER INSERT ON ledger_entry "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced()",
]

SQLITE_GUARDS = [
    f"CREATE TRIGGER {table}_no_{operation} BEFORE {operation.upper()} ON {table} "
    f"BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: {operation.upper()} on {table} is refused'); END"
    for table in ("ledger_transaction", "ledger_entry")
    for operation in ("update", "delete")
]


def upgrade() -> None:
    with op.batch_alter_table("coalition_settings") as batch:
        batch.add_column(sa.Column("fee_percent", ExactNumeric(9, 4), nullable=False, server_default="0"))
        batch.add_column(sa.Column("fee_fixed", ExactNumeric(18, 4), nullable=False, server_default="0"))
        batch.add_column(sa.Column("tier_bonus_percent", sa.JSON(), nullable=False, server_default="[]"))

    op.create_table(
        "ledger_account",
        sa.Column("id", BigIdentity, primary_key=True, autoincrement=True),
        sa.Column("code", sa.String(120), nullable=False, unique=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("program_id", sa.String(64), nullable=True, index=True),
        sa.Column("unit", sa.String(72), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "ledger_transaction",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("id", sa.String(100), nullable=False, unique=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False, index=True),
        sa.Column("period", sa.String(7), nullable=False, index=True),
        sa.Column("effective_at", UTCDateTime(), nullable=False),
        sa.Column("posted_at", UTCDateTime(), nullable=False),
        sa.Column("reverses", sa.String(100), nullable=True, unique=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "ledger_entry",
        sa.Column(
            "transaction_seq",
            sa.BigInteger(),
            sa.ForeignKey("ledger_transaction.seq"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("position", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("account_id", sa.BigInteger(), sa.ForeignKey("ledger_account.id"), nullable=False, index=True),
        sa.Column("unit", sa.String(72), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(7), nullable=False, index=True),
        sa.CheckConstraint("amount <> 0", name="ledger_entry_amount_nonzero"),
    )
    op.create_table(
        "ledger_chain_head",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.CheckConstraint("id = 1", name="ledger_chain_head_single_row"),
    )
    op.bulk_insert(
        sa.table("ledger_chain_head", sa.column("id"), sa.column("seq"), sa.column("hash")),
        [{"id": 1, "seq": 0, "hash": GENESIS_HASH}],
    )
    op.create_table(
        "settlement_period",
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("closing_started_at", UTCDateTime(), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.Column("closed_by", sa.String(100), nullable=False),
    )
    guards = POSTGRES_GUARDS if op.get_bind().dialect.name == "postgresql" else SQLITE_GUARDS
    for statement in guards:
        op.execute(statement)

    op.create_table(
        "rate_version",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("from_program", sa.String(64), sa.ForeignKey("program.id"), nullable=False),
        sa.Column("to_program", sa.String(64), sa.ForeignKey("program.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("effective_from", UTCDateTime(), nullable=False),
        sa.Column("effective_to", UTCDateTime(), nullable=True),
        sa.Column("origin", sa.String(10), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("source_point_value", ExactNumeric(18, 6), nullable=False),
        sa.Column("target_point_value", ExactNumeric(18, 6), nullable=False),
        sa.Column("fee_percent", ExactNumeric(9, 4), nullable=False),
        sa.Column("fee_fixed", ExactNumeric(18, 4), nullable=False),
        sa.Column("bands", sa.JSON(), nullable=False),
        sa.Column("bonus_every", sa.Integer(), nullable=True),
        sa.Column("bonus_points", sa.Integer(), nullable=True),
        sa.Column("minimum_points", sa.Integer(), nullable=True),
        sa.Column("increment", sa.Integer(), nullable=True),
        sa.Column("member_daily_cap", sa.Integer(), nullable=True),
        sa.Column("member_monthly_cap", sa.Integer(), nullable=True),
        sa.Column("member_yearly_cap", sa.Integer(), nullable=True),
        sa.UniqueConstraint("from_program", "to_program", "version"),
        sa.Index("ix_rate_version_pair_window", "from_program", "to_program", "effective_from"),
    )
    op.create_table(
        "promotion",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("program_id", sa.String(64), sa.ForeignKey("program.id"), nullable=False, index=True),
        sa.Column("sources", sa.JSON(), nullable=True),
        sa.Column("bonus_percent", ExactNumeric(9, 4), nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=False),
        sa.Column("origin", sa.String(10), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "quote",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("member_id", sa.String(64), nullable=False, index=True),
        sa.Column("from_program", sa.String(64), sa.ForeignKey("program.id"), nullable=False),
        sa.Column("to_program", sa.String(64), sa.ForeignKey("program.id"), nullable=False),
        sa.Column("rate_version_id", sa.Integer(), sa.ForeignKey("rate_version.id"), nullable=False, index=True),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in (
                "points_in",
                "points_out",
                "base_points",
                "step_bonus_points",
                "promotion_bonus_points",
                "tier_bonus_points",
            )
        ),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("money_value_minor", sa.BigInteger(), nullable=False),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("promotions", sa.JSON(), nullable=False),
        sa.Column("member_level", sa.Integer(), nullable=False),
        sa.Column("tier_bonus_percent", ExactNumeric(9, 4), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "limit_usage",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("used", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    for table in ("limit_usage", "quote", "promotion", "rate_version", "settlement_period", "ledger_chain_head"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER ledger_entry_balanced ON ledger_entry")
        for table in ("ledger_entry", "ledger_transaction"):
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION ledger_check_balanced()")
        op.execute("DROP FUNCTION ledger_refuse_change()")
    for table in ("ledger_entry", "ledger_transaction", "ledger_account"):
        op.drop_table(table)
    with op.batch_alter_table("coalition_settings") as batch:
        for column in ("tier_bonus_percent", "fee_fixed", "fee_percent"):
            batch.drop_column(column)
