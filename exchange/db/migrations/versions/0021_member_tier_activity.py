"""``member.tier_activity``: a counter that moves only when one of the member's status matches
finishes a run (its row's ``step`` becomes ``DONE``), moved by a trigger in the transaction
that records the outcome, as ``member.activity`` is by every saga.

The federated view keeps partners' tier answers against this marker rather than against
``member.activity``: a conversion or a redemption changes balances, not tiers, so a quote made
right after one reuses the tiers it knew instead of asking every partner again, while a status
match still shows in the very next quote. (A partner's own change to a tier shows once the
tier cache's time to live has passed, as before.)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

POSTGRES_TRIGGERS = [
    """
    CREATE FUNCTION member_tier_activity_moves() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE member SET tier_activity = tier_activity + 1 WHERE id = NEW.member_id;
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER status_match_moves_member_tier_activity AFTER UPDATE OF step ON status_match FOR EACH ROW "
    "WHEN (NEW.step = 'DONE' AND OLD.step <> 'DONE') EXECUTE FUNCTION member_tier_activity_moves()",
]

SQLITE_TRIGGERS = [
    "CREATE TRIGGER status_match_moves_member_tier_activity AFTER UPDATE OF step ON status_match FOR EACH ROW "
    "WHEN NEW.step = 'DONE' AND OLD.step <> 'DONE' "
    "BEGIN UPDATE member SET tier_activity = tier_activity + 1 WHERE id = NEW.member_id; END",
]


def upgrade() -> None:
    with op.batch_alter_table("member") as batch:
        batch.add_column(sa.Column("tier_activity", sa.BigInteger(), nullable=False, server_default="0"))
    for statement in POSTGRES_TRIGGERS if op.get_bind().dialect.name == "postgresql" else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER status_match_moves_member_tier_activity ON status_match")
        op.execute("DROP FUNCTION member_tier_activity_moves()")
        op.drop_column("member", "tier_activity")
    else:
        op.execute("DROP TRIGGER status_match_moves_member_tier_activity")
        # In place: a batch copy of ``member`` would break the triggers on the saga tables that name it.
        op.execute("ALTER TABLE member DROP COLUMN tier_activity")
