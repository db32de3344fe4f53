"""``member.activity`` moves whenever a saga row records a step, or falls in doubt, not only when
it finishes (revision 0012's triggers, replaced).

A conversion whose credit the target did not answer stays PENDING at ``CREDIT`` after the
source applied its debit; a debit the partner did not answer may have applied. Neither row's
``step`` became ``DONE``, so the member's marker stood, and for the balance cache's lifetime the
federated view showed the balance from before the debit: the member, told their conversion was
in progress, saw the points it took still there. Now the marker moves in the transaction that
records a new step (the debit done, the row waiting at a step) or marks the row in doubt, so
the next view asks the partners again. A run that goes straight to its end records one step
(``DONE``) and moves the marker once, as before.

Revision ID: 0040
Revises: 0039
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0040"
down_revision = "0039"
branch_labels = None
depends_on = None

SAGA_TABLES = ("conversion", "redemption", "status_match")

#: Which updates move the marker, before this revision and after it.
FINISHED = ("step", "NEW.step = 'DONE' AND OLD.step <> 'DONE'")
WRITTEN = ("step, in_doubt", "NEW.step <> OLD.step OR (NEW.in_doubt AND NOT OLD.in_doubt)")


def _create(table: str, columns: str, when: str, postgresql: bool) -> str:
    trigger = f"CREATE TRIGGER {table}_moves_member_activity AFTER UPDATE OF {columns} ON {table} FOR EACH ROW "
    if postgresql:
        return trigger + f"WHEN ({when}) EXECUTE FUNCTION member_activity_moves()"
    return trigger + f"WHEN {when} BEGIN UPDATE member SET activity = activity + 1 WHERE id = NEW.member_id; END"


def _replace(columns: str, when: str) -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in SAGA_TABLES:
        op.execute(f"DROP TRIGGER {table}_moves_member_activity" + (f" ON {table}" if postgresql else ""))
        op.execute(_create(table, columns, when, postgresql))


def upgrade() -> None:
    _replace(*WRITTEN)


def downgrade() -> None:
    _replace(*FINISHED)
