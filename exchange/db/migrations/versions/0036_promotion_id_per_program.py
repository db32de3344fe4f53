"""A promotion is named by its program and its id: ``promotion``'s key is ``(id, program_id)``.

The id is the partner's own choice (``createPromotion``'s ``id``, "an id of yours"). Keyed by
the id alone, one partner's promotion ``spring`` refused another partner's ``spring`` as "taken
by other terms", which told that partner an id of a promotion it may not read exists, and a
program file declaring an id a partner had taken would have rewritten that partner's row into
its own program at the next load.

On SQLite the table is rebuilt to change its key, which drops its triggers: the three that move
``pricing_revision`` (revision 0012) are made again.

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-03
"""

from __future__ import annotations

import warnings

from alembic import op
from sqlalchemy.exc import SAWarning

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None

SQLITE_EVENTS = ("insert", "update", "delete")


def _sqlite_triggers() -> None:
    for event in SQLITE_EVENTS:
        op.execute(
            f"CREATE TRIGGER promotion_{event}_moves_pricing_revision AFTER {event.upper()} ON promotion "
            "BEGIN UPDATE pricing_revision SET revision = revision + 1; END"
        )


def _key(columns: list[str]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("promotion_pkey", "promotion", type_="primary")
        op.create_primary_key("promotion_pkey", "promotion", columns)
        return
    # Alembic copies the table with its old key's columns marked, then sets the new key, and
    # SQLAlchemy warns that the two differ: that difference is the point.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Table '_alembic_tmp_promotion' specifies columns", SAWarning)
        with op.batch_alter_table("promotion", recreate="always") as batch:
            batch.create_primary_key("promotion_pkey", columns)
    _sqlite_triggers()


def upgrade() -> None:
    _key(["id", "program_id"])


def downgrade() -> None:
    _key(["id"])
