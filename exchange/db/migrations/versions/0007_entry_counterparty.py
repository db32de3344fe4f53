"""Each spoke leg of a money transaction names its hub's account; the pairing indexes go.

Adds ``ledger_entry.counterparty_account_id`` and fills it for the rows already posted, with the
rule of ``exchange.ledger.stars`` written out here in SQL (a migration keeps the rule as it was
when it ran, whatever the code later becomes): in each money unit of a transaction, the hub is
the negative leg if it is the only one, else the only positive leg; every other leg of that unit
names the hub's account; hub legs and points legs stay NULL.

The ledger's tables refuse updates, so the guard on ``ledger_entry`` is lifted for this one
statement, which only derives the new column from the legs (``exchange ledger verify``
recomputes it). On PostgreSQL the update writes a new version of every money leg: run VACUUM
on a large ledger afterwards.

Drops the two partial indexes that handed netting each side of a period in transaction order,
which saves every posted leg an index entry: closing now reads each leg of the period once and
finds the period's rows as the bare per-account sum of the period does (a parallel sequential
scan when the period is a large part of the table, a bitmap scan of ``ix_ledger_entry_period``
when it is a small one). A covering index for the new aggregation was measured: PostgreSQL does
not choose it over the sequential scan of a month that is most of the table, forced it saves a
fifth of the aggregation, and every posted leg would pay an entry in it, dearer than the two
partial indexes' (its entries land all over the period's range, not at its end).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ADD_COLUMN = "ALTER TABLE ledger_entry ADD COLUMN counterparty_account_id BIGINT REFERENCES ledger_account (id)"
#: Each spoke leg with its hub's account: window functions over each transaction's money legs of
#: one unit, so that the update reads the legs once whatever the planner knows of the table.
SPOKES = """
    SELECT transaction_seq, position, hub_account
      FROM (SELECT transaction_seq, position,
                   CASE WHEN negatives = 1 AND amount > 0 THEN negative_account
                        WHEN negatives > 1 AND positives = 1 AND amount < 0 THEN positive_account
                   END AS hub_account
              FROM (SELECT transaction_seq, position, amount,
                           sum(CASE WHEN amount < 0 THEN 1 ELSE 0 END) OVER legs AS negatives,
                           sum(CASE WHEN amount > 0 THEN 1 ELSE 0 END) OVER legs AS positives,
                           max(CASE WHEN amount < 0 THEN account_id END) OVER legs AS negative_account,
                           max(CASE WHEN amount > 0 THEN account_id END) OVER legs AS positive_account
                      FROM ledger_entry
                     WHERE unit NOT LIKE 'PTS:%'
                    WINDOW legs AS (PARTITION BY transaction_seq, unit)) sides) spokes
     WHERE hub_account IS NOT NULL
"""
BACKFILL = f"""
    UPDATE ledger_entry SET counterparty_account_id = spoke.hub_account
      FROM ({SPOKES}) spoke
     WHERE spoke.transaction_seq = ledger_entry.transaction_seq AND spoke.position = ledger_entry.position
"""
#: The update guard of ``ledger_entry`` as 0002 created it on SQLite (which cannot disable one).
SQLITE_GUARD = (
    "CREATE TRIGGER ledger_entry_no_update BEFORE UPDATE ON ledger_entry "
    "BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: UPDATE on ledger_entry is refused'); END"
)
#: The partial indexes of 0006, for the downgrade.
PAIRING_INDEXES = (("negative", "amount < 0"), ("positive", "amount > 0"))


def _backfill() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE ledger_entry DISABLE TRIGGER ledger_entry_append_only")
        op.execute(BACKFILL)
        op.execute("ALTER TABLE ledger_entry ENABLE TRIGGER ledger_entry_append_only")
    else:
        op.execute("DROP TRIGGER ledger_entry_no_update")
        op.execute(BACKFILL)
        op.execute(SQLITE_GUARD)


def upgrade() -> None:
    op.execute(ADD_COLUMN)
    _backfill()
    for side, _ in PAIRING_INDEXES:
        op.drop_index(f"ix_ledger_entry_{side}", table_name="ledger_entry")


def downgrade() -> None:
    for side, condition in PAIRING_INDEXES:
        op.create_index(
            f"ix_ledger_entry_{side}",
            "ledger_entry",
            ["period", "unit", "transaction_seq"],
            postgresql_include=["account_id", "amount"],
            postgresql_where=sa.text(condition),
            sqlite_where=sa.text(condition),
        )
    op.execute("ALTER TABLE ledger_entry DROP COLUMN counterparty_account_id")
