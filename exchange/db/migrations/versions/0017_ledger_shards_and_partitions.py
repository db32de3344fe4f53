"""A ledger that posts concurrently and, on PostgreSQL, is partitioned by settlement period.

* ``ledger_transaction`` and ``ledger_entry`` are rebuilt: on PostgreSQL ``PARTITION BY LIST
  (period)``, one partition a period (``exchange.ledger.partitions`` adds the next ones), their
  keys extended by the period as partitioning requires, and a default partition for periods that
  have none yet; on SQLite as plain tables of the same
  columns. Every row posted before is kept, with its seq and hashes.
* Transaction ids and reversals are unique in ``ledger_transaction_key`` (a unique index on a
  partitioned table must include the period).
* Postings spread over shards: ``ledger_shard`` (16 rows: the row a posting locks, with the
  last closed period), a hash chain per (shard, period) whose heads ``ledger_chain_head`` keeps,
  balances per account and shard in ``ledger_balance`` (``ledger_account.balance`` goes; the view
  ``ledger_account_balance`` sums the shards), ``seq`` from the sequence ``ledger_transaction_seq``
  on PostgreSQL. Triggers move heads and balances as rows are inserted.
* The single chain posted before is cut into one chain per period, in shard 1, without changing a
  hash: each such chain's ``genesis`` is what its first transaction linked to. Run ``exchange ledger
  verify`` before upgrading: from here on, the link between the last transaction of one period and
  the first of the next is no longer checked (each period's chain is, from that recorded genesis).
* Every period already closing or closed gets its close anchor (``ledger_close_anchor``).

The downgrade puts the rows back in the single-chain tables; it is exact for a ledger posted in
one shard (as the tests' round trip does), and refuses a ledger posted in several.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64
MAX_SHARDS = 16
TRANSACTION_COLUMNS = (
    "seq, id, kind, reference, period, effective_at, posted_at, reverses, request_hash, prev_hash, hash"
)
ENTRY_COLUMNS = "transaction_seq, position, account_id, unit, amount, period, counterparty_account_id"

#: Guards as 0002 made them (the functions stay: dropping a table drops only its triggers).
POSTGRES_GUARDS = [
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


def _balanced_check(period_filter: str) -> str:
    """0002's balance check at commit; ``period_filter`` lets it read one partition."""
    return f"""
    CREATE OR REPLACE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        unbalanced record;
    BEGIN
        IF current_setting('ledger.checked_seq', true) = NEW.transaction_seq::text THEN
            RETURN NULL;
        END IF;
        SELECT unit, sum(amount) AS total INTO unbalanced
          FROM ledger_entry
         WHERE transaction_seq = NEW.transaction_seq{period_filter}
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
    """


POSTGRES_FOLLOWERS = [
    _balanced_check(" AND period = NEW.period"),
    f"""
    CREATE OR REPLACE FUNCTION ledger_head_follows_transactions() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO ledger_chain_head AS head (shard, period, genesis, seq, hash, transactions)
        SELECT DISTINCT ON (shard, period) shard, period, '{GENESIS_HASH}', seq, hash,
               count(*) OVER (PARTITION BY shard, period)
          FROM new_transactions
         ORDER BY shard, period, seq DESC
        ON CONFLICT (shard, period) DO UPDATE
           SET seq = excluded.seq, hash = excluded.hash, transactions = head.transactions + excluded.transactions;
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER ledger_transaction_moves_head AFTER INSERT ON ledger_transaction "
    "REFERENCING NEW TABLE AS new_transactions FOR EACH STATEMENT EXECUTE FUNCTION ledger_head_follows_transactions()",
    """
    CREATE OR REPLACE FUNCTION ledger_balances_follow_entries() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO ledger_balance AS b (account_id, shard, balance)
        SELECT account_id, shard, sum(amount) FROM new_entries GROUP BY account_id, shard
        ON CONFLICT (account_id, shard) DO UPDATE SET balance = b.balance + excluded.balance;
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER ledger_entry_moves_balances AFTER INSERT ON ledger_entry "
    "REFERENCING NEW TABLE AS new_entries FOR EACH STATEMENT EXECUTE FUNCTION ledger_balances_follow_entries()",
]
SQLITE_FOLLOWERS = [
    "CREATE TRIGGER ledger_transaction_moves_head AFTER INSERT ON ledger_transaction BEGIN "
    "INSERT INTO ledger_chain_head (shard, period, genesis, seq, hash, transactions) "
    f"VALUES (NEW.shard, NEW.period, '{GENESIS_HASH}', NEW.seq, NEW.hash, 1) "
    "ON CONFLICT (shard, period) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
    "transactions = transactions + 1; END",
    "CREATE TRIGGER ledger_entry_moves_balances AFTER INSERT ON ledger_entry BEGIN "
    "INSERT INTO ledger_balance (account_id, shard, balance) VALUES (NEW.account_id, NEW.shard, NEW.amount) "
    "ON CONFLICT (account_id, shard) DO UPDATE SET balance = balance + excluded.balance; END",
]
BALANCE_VIEW = """
    CREATE VIEW ledger_account_balance AS
    SELECT a.id, a.code, a.kind, a.program_id, a.unit, coalesce(sum(b.balance), 0) AS balance
      FROM ledger_account a LEFT JOIN ledger_balance b ON b.account_id = a.id
     GROUP BY a.id, a.code, a.kind, a.program_id, a.unit
"""


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _stash(table: str) -> None:
    op.execute(f"CREATE TABLE {table}_stash AS SELECT * FROM {table}")
    op.drop_table(table)


def _partition(period: str) -> None:
    """The partitions of ``period`` (as ``exchange.ledger.partitions`` names them)."""
    suffix = period.replace("-", "_")
    for table in ("ledger_transaction", "ledger_entry"):
        op.execute(f"CREATE TABLE {table}_{suffix} PARTITION OF {table} FOR VALUES IN ('{period}')")


def _anchor_digest(prev_hash: str, period: str, heads: str) -> str:
    """``exchange.ledger.hashing.anchor_digest`` as of this revision."""
    return hashlib.sha256(f"{prev_hash}|{period}|{heads}".encode()).hexdigest()


def upgrade() -> None:
    bind = op.get_bind()
    postgres = _postgres()
    last_closed = bind.execute(sa.text("SELECT last_closed FROM ledger_chain_head WHERE id = 1")).scalar()
    _stash("ledger_entry")
    _stash("ledger_transaction")
    op.drop_table("ledger_chain_head")
    op.execute("ALTER TABLE ledger_account DROP COLUMN balance")

    op.create_table(
        "ledger_transaction",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("effective_at", UTCDateTime(), nullable=False),
        sa.Column("posted_at", UTCDateTime(), nullable=False),
        sa.Column("reverses", sa.String(100), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        postgresql_partition_by="LIST (period)",
    )
    for column in ("period", "id", "reference", "reverses"):
        op.create_index(f"ix_ledger_transaction_{column}", "ledger_transaction", [column])
    op.create_table(
        "ledger_entry",
        sa.Column("transaction_seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("position", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), sa.ForeignKey("ledger_account.id"), nullable=False),
        sa.Column("unit", sa.String(72), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("counterparty_account_id", sa.BigInteger(), sa.ForeignKey("ledger_account.id"), nullable=True),
        sa.CheckConstraint("amount <> 0", name="ledger_entry_amount_nonzero"),
        sa.ForeignKeyConstraint(
            ["transaction_seq", "period"],
            ["ledger_transaction.seq", "ledger_transaction.period"],
            name="ledger_entry_transaction_fkey",
        ),
        postgresql_partition_by="LIST (period)",
    )
    for column in ("period", "account_id"):
        op.create_index(f"ix_ledger_entry_{column}", "ledger_entry", [column])
    op.create_table(
        "ledger_transaction_key",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("reverses", sa.String(100), nullable=True, unique=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
    )
    op.create_table(
        "ledger_balance",
        sa.Column("account_id", sa.BigInteger(), sa.ForeignKey("ledger_account.id"), primary_key=True),
        sa.Column("shard", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "ledger_archived_balance",
        sa.Column("account_id", sa.BigInteger(), sa.ForeignKey("ledger_account.id"), primary_key=True),
        sa.Column("shard", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "ledger_shard",
        sa.Column("id", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("last_closed", sa.String(7), nullable=True),
        sa.CheckConstraint(f"id BETWEEN 1 AND {MAX_SHARDS}", name="ledger_shard_id_range"),
    )
    op.bulk_insert(
        sa.table("ledger_shard", sa.column("id"), sa.column("last_closed")),
        [{"id": shard, "last_closed": last_closed} for shard in range(1, MAX_SHARDS + 1)],
    )
    op.create_table(
        "ledger_chain_head",
        sa.Column("shard", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("genesis", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "ledger_close_anchor",
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("heads", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("archived_at", UTCDateTime(), nullable=True),
    )

    periods = [row[0] for row in bind.execute(sa.text("SELECT DISTINCT period FROM ledger_transaction_stash"))]
    if postgres:
        for table in ("ledger_transaction", "ledger_entry"):
            op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
        for period in sorted(periods):
            _partition(period)
        op.execute("CREATE SEQUENCE ledger_transaction_seq AS bigint")
        op.execute("SELECT setval('ledger_transaction_seq', (SELECT max(seq) FROM ledger_transaction_stash))")
    op.execute(
        f"INSERT INTO ledger_transaction ({TRANSACTION_COLUMNS}, shard) "
        f"SELECT {TRANSACTION_COLUMNS}, 1 FROM ledger_transaction_stash"
    )
    op.execute(f"INSERT INTO ledger_entry ({ENTRY_COLUMNS}, shard) SELECT {ENTRY_COLUMNS}, 1 FROM ledger_entry_stash")
    op.execute(
        "INSERT INTO ledger_transaction_key (id, reverses, seq, period) "
        "SELECT id, reverses, seq, period FROM ledger_transaction_stash"
    )
    op.execute(
        "INSERT INTO ledger_balance (account_id, shard, balance) "
        "SELECT account_id, 1, sum(amount) FROM ledger_entry_stash GROUP BY account_id"
    )
    # Each period's part of the single chain becomes the chain of (shard 1, period).
    op.execute(
        """
        INSERT INTO ledger_chain_head (shard, period, genesis, seq, hash, transactions)
        SELECT 1, ends.period, first.prev_hash, last.seq, last.hash, ends.transactions
          FROM (SELECT period, min(seq) AS first_seq, max(seq) AS last_seq, count(*) AS transactions
                  FROM ledger_transaction_stash GROUP BY period) ends
          JOIN ledger_transaction_stash first ON first.seq = ends.first_seq
          JOIN ledger_transaction_stash last ON last.seq = ends.last_seq
        """
    )
    closed = bind.execute(
        sa.text(
            "SELECT p.period, h.transactions, h.seq, h.hash FROM settlement_period p "
            "LEFT JOIN ledger_chain_head h ON h.period = p.period ORDER BY p.period"
        )
    ).all()
    prev_hash = GENESIS_HASH
    anchors = []
    for period, transactions, seq, head_hash in closed:
        heads = "" if seq is None else f"1:{transactions}:{seq}:{head_hash}"
        anchored = _anchor_digest(prev_hash, period, heads)
        anchors.append({"period": period, "heads": heads, "prev_hash": prev_hash, "hash": anchored})
        prev_hash = anchored
    if anchors:
        op.bulk_insert(
            sa.table(
                "ledger_close_anchor",
                sa.column("period"),
                sa.column("heads"),
                sa.column("prev_hash"),
                sa.column("hash"),
            ),
            anchors,
        )
    op.drop_table("ledger_entry_stash")
    op.drop_table("ledger_transaction_stash")
    for statement in (POSTGRES_GUARDS + POSTGRES_FOLLOWERS) if postgres else (SQLITE_GUARDS + SQLITE_FOLLOWERS):
        op.execute(statement)
    op.execute(BALANCE_VIEW)


def downgrade() -> None:
    bind = op.get_bind()
    postgres = _postgres()
    shards = bind.execute(sa.text("SELECT count(DISTINCT shard) FROM ledger_transaction")).scalar_one()
    if shards > 1:
        raise RuntimeError("the ledger was posted in several shards: one chain cannot hold it again; restore a backup")
    archived = bind.execute(
        sa.text("SELECT count(*) FROM ledger_close_anchor WHERE archived_at IS NOT NULL")
    ).scalar_one()
    if archived:
        raise RuntimeError("periods of the ledger were archived: their rows are no longer here; restore a backup")
    last_closed = bind.execute(sa.text("SELECT last_closed FROM ledger_shard WHERE id = 1")).scalar()
    op.execute("DROP VIEW ledger_account_balance")
    _stash("ledger_entry")
    _stash("ledger_transaction")
    for table in (
        "ledger_transaction_key",
        "ledger_balance",
        "ledger_archived_balance",
        "ledger_shard",
        "ledger_chain_head",
        "ledger_close_anchor",
    ):
        op.drop_table(table)
    if postgres:
        op.execute("DROP SEQUENCE ledger_transaction_seq")
    op.execute("ALTER TABLE ledger_account ADD COLUMN balance BIGINT NOT NULL DEFAULT 0")
    op.execute(
        "UPDATE ledger_account SET balance = coalesce("
        "(SELECT sum(amount) FROM ledger_entry_stash WHERE account_id = ledger_account.id), 0)"
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
    # As 0007 added it (SQLite can drop a column whose reference is written on the column only).
    op.execute("ALTER TABLE ledger_entry ADD COLUMN counterparty_account_id BIGINT REFERENCES ledger_account (id)")
    op.create_table(
        "ledger_chain_head",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("last_closed", sa.String(7), nullable=True),
        sa.CheckConstraint("id = 1", name="ledger_chain_head_single_row"),
    )
    op.execute(
        f"INSERT INTO ledger_transaction ({TRANSACTION_COLUMNS}) SELECT {TRANSACTION_COLUMNS} FROM ledger_transaction_stash"
    )
    op.execute(f"INSERT INTO ledger_entry ({ENTRY_COLUMNS}) SELECT {ENTRY_COLUMNS} FROM ledger_entry_stash")
    last = bind.execute(sa.text("SELECT seq, hash FROM ledger_transaction ORDER BY seq DESC LIMIT 1")).first()
    op.bulk_insert(
        sa.table("ledger_chain_head", sa.column("id"), sa.column("seq"), sa.column("hash"), sa.column("last_closed")),
        [
            {
                "id": 1,
                "seq": last[0] if last else 0,
                "hash": last[1] if last else GENESIS_HASH,
                "last_closed": last_closed,
            }
        ],
    )
    op.drop_table("ledger_entry_stash")
    op.drop_table("ledger_transaction_stash")
    if postgres:
        followers = [
            _balanced_check(""),
            """
            CREATE OR REPLACE FUNCTION ledger_head_follows_transactions() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE ledger_chain_head SET seq = last.seq, hash = last.hash
                  FROM (SELECT seq, hash FROM new_transactions ORDER BY seq DESC LIMIT 1) last
                 WHERE ledger_chain_head.id = 1;
                RETURN NULL;
            END $$
            """,
            POSTGRES_FOLLOWERS[2],
            """
            CREATE OR REPLACE FUNCTION ledger_balances_follow_entries() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE ledger_account SET balance = balance + moved.amount
                  FROM (SELECT account_id, sum(amount) AS amount FROM new_entries GROUP BY account_id) moved
                 WHERE ledger_account.id = moved.account_id;
                RETURN NULL;
            END $$
            """,
            POSTGRES_FOLLOWERS[4],
        ]
        statements = POSTGRES_GUARDS + followers
    else:
        statements = [
            *SQLITE_GUARDS,
            "CREATE TRIGGER ledger_transaction_moves_head AFTER INSERT ON ledger_transaction "
            "BEGIN UPDATE ledger_chain_head SET seq = NEW.seq, hash = NEW.hash WHERE id = 1; END",
            "CREATE TRIGGER ledger_entry_moves_balances AFTER INSERT ON ledger_entry "
            "BEGIN UPDATE ledger_account SET balance = balance + NEW.amount WHERE id = NEW.account_id; END",
        ]
    for statement in statements:
        op.execute(statement)
