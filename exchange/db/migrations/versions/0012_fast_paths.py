"""What the hot paths read in one statement instead of several, kept right by the database.

* ``member.activity``: a counter that moves whenever one of the member's sagas (conversion,
  redemption, status match) finishes a run — its row's ``step`` becomes ``DONE``. A trigger
  on each saga table moves it, in the transaction that records the outcome, so no code path
  can forget to. The federated view keys its cached partner answers on it and reads it with
  the member's links.
* ``pricing_revision``: one row whose counter moves with every change to ``rate_version`` or
  ``promotion`` (triggers again). Each process keeps the rates and promotions in memory and
  reads this counter in the statement a quote needs anyway; a different counter means reload.
* ``ledger_chain_head.last_closed``: the latest period that is closing or closed, kept on the
  row every posting locks first. Closing sets it under that lock, so the locked row itself
  tells a posting where it may land (a separate read could not: see ``exchange.ledger.chain``).
* The ledger's running figures follow its rows: inserting transactions moves the chain head
  to the last of them, inserting legs moves their accounts' balances, in the inserting
  statement (on PostgreSQL once per statement, from its transition table, so a COPY of
  thousands of legs makes one update per account). ``exchange ledger verify`` checks both.
* ``quote.usages``: the limit counters a quote counts against and how much, fixed when it is
  made, so that executing it records the conversion in one ``INSERT … SELECT`` from the quote.
  A quote made before this revision has none (NULL) and must be asked for again.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

SAGA_TABLES = ("conversion", "redemption", "status_match")
PRICING_TABLES = ("rate_version", "promotion")

POSTGRES_TRIGGERS = [
    """
    CREATE FUNCTION ledger_head_follows_transactions() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE ledger_chain_head SET seq = last.seq, hash = last.hash
          FROM (SELECT seq, hash FROM new_transactions ORDER BY seq DESC LIMIT 1) last
         WHERE ledger_chain_head.id = 1;
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER ledger_transaction_moves_head AFTER INSERT ON ledger_transaction "
    "REFERENCING NEW TABLE AS new_transactions FOR EACH STATEMENT EXECUTE FUNCTION ledger_head_follows_transactions()",
    """
    CREATE FUNCTION ledger_balances_follow_entries() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE ledger_account SET balance = balance + moved.amount
          FROM (SELECT account_id, sum(amount) AS amount FROM new_entries GROUP BY account_id) moved
         WHERE ledger_account.id = moved.account_id;
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER ledger_entry_moves_balances AFTER INSERT ON ledger_entry "
    "REFERENCING NEW TABLE AS new_entries FOR EACH STATEMENT EXECUTE FUNCTION ledger_balances_follow_entries()",
    """
    CREATE FUNCTION member_activity_moves() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE member SET activity = activity + 1 WHERE id = NEW.member_id;
        RETURN NULL;
    END $$
    """,
    *(
        f"CREATE TRIGGER {table}_moves_member_activity AFTER UPDATE OF step ON {table} FOR EACH ROW "
        "WHEN (NEW.step = 'DONE' AND OLD.step <> 'DONE') EXECUTE FUNCTION member_activity_moves()"
        for table in SAGA_TABLES
    ),
    """
    CREATE FUNCTION pricing_revision_moves() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE pricing_revision SET revision = revision + 1;
        RETURN NULL;
    END $$
    """,
    *(
        f"CREATE TRIGGER {table}_moves_pricing_revision AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION pricing_revision_moves()"
        for table in PRICING_TABLES
    ),
]

SQLITE_TRIGGERS = [
    "CREATE TRIGGER ledger_transaction_moves_head AFTER INSERT ON ledger_transaction "
    "BEGIN UPDATE ledger_chain_head SET seq = NEW.seq, hash = NEW.hash WHERE id = 1; END",
    "CREATE TRIGGER ledger_entry_moves_balances AFTER INSERT ON ledger_entry "
    "BEGIN UPDATE ledger_account SET balance = balance + NEW.amount WHERE id = NEW.account_id; END",
    *(
        f"CREATE TRIGGER {table}_moves_member_activity AFTER UPDATE OF step ON {table} FOR EACH ROW "
        "WHEN NEW.step = 'DONE' AND OLD.step <> 'DONE' "
        "BEGIN UPDATE member SET activity = activity + 1 WHERE id = NEW.member_id; END"
        for table in SAGA_TABLES
    ),
    *(
        f"CREATE TRIGGER {table}_{event}_moves_pricing_revision AFTER {event.upper()} ON {table} "
        "BEGIN UPDATE pricing_revision SET revision = revision + 1; END"
        for table in PRICING_TABLES
        for event in ("insert", "update", "delete")
    ),
]


def upgrade() -> None:
    with op.batch_alter_table("member") as batch:
        batch.add_column(sa.Column("activity", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "pricing_revision",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name="pricing_revision_single_row"),
    )
    op.bulk_insert(
        sa.table("pricing_revision", sa.column("id"), sa.column("revision")),
        [{"id": 1, "revision": 0}],
    )
    with op.batch_alter_table("ledger_chain_head") as batch:
        batch.add_column(sa.Column("last_closed", sa.String(7), nullable=True))
    op.execute(
        "UPDATE ledger_chain_head SET last_closed = (SELECT max(period) FROM settlement_period WHERE status <> 'OPEN')"
    )
    with op.batch_alter_table("quote") as batch:
        batch.add_column(sa.Column("usages", sa.JSON(), nullable=True))
    triggers = POSTGRES_TRIGGERS if op.get_bind().dialect.name == "postgresql" else SQLITE_TRIGGERS
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER ledger_transaction_moves_head ON ledger_transaction")
        op.execute("DROP TRIGGER ledger_entry_moves_balances ON ledger_entry")
        op.execute("DROP FUNCTION ledger_head_follows_transactions()")
        op.execute("DROP FUNCTION ledger_balances_follow_entries()")
        for table in SAGA_TABLES:
            op.execute(f"DROP TRIGGER {table}_moves_member_activity ON {table}")
        for table in PRICING_TABLES:
            op.execute(f"DROP TRIGGER {table}_moves_pricing_revision ON {table}")
        op.execute("DROP FUNCTION member_activity_moves()")
        op.execute("DROP FUNCTION pricing_revision_moves()")
    else:
        op.execute("DROP TRIGGER ledger_transaction_moves_head")
        op.execute("DROP TRIGGER ledger_entry_moves_balances")
        for table in SAGA_TABLES:
            op.execute(f"DROP TRIGGER {table}_moves_member_activity")
        for table in PRICING_TABLES:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER {table}_{event}_moves_pricing_revision")
    with op.batch_alter_table("quote") as batch:
        batch.drop_column("usages")
    with op.batch_alter_table("ledger_chain_head") as batch:
        batch.drop_column("last_closed")
    op.drop_table("pricing_revision")
    with op.batch_alter_table("member") as batch:
        batch.drop_column("activity")
