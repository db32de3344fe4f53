"""A compromised statement key is withdrawn, and the statements it signed are signed again.

``statement_key.withdrawn_at``: from then the key is out of the published document
(``/.well-known/statement-keys.json``), whatever its retention, so a statement forged with it
no longer verifies. ``issued_statement.resigned_at``: when the statement's signature was
replaced by one of the key that replaced a withdrawn one. The guard on ``issued_statement``
now refuses an UPDATE of what was issued (period, participant, version, document, issued_at)
and lets the signature (``key_id``, ``jws``, ``resigned_at``) be replaced: the document stays
byte for byte what it was.

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None

REFUSAL = "an issued statement never changes: UPDATE on issued_statement is refused"
ISSUED_COLUMNS = ("period", "participant", "version", "document", "issued_at")


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _guard_postgresql(only_issued_columns: bool) -> None:
    changed = " OR ".join(f"NEW.{column} IS DISTINCT FROM OLD.{column}" for column in ISSUED_COLUMNS)
    condition = changed if only_issued_columns else "TRUE"
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION issued_statement_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF {condition} THEN
                RAISE EXCEPTION '{REFUSAL}' USING ERRCODE = 'restrict_violation';
            END IF;
            RETURN NEW;
        END $$
        """
    )


def _guard_sqlite(only_issued_columns: bool) -> None:
    columns = f"OF {', '.join(ISSUED_COLUMNS)} " if only_issued_columns else ""
    op.execute("DROP TRIGGER issued_statement_no_update")
    op.execute(
        f"CREATE TRIGGER issued_statement_no_update BEFORE UPDATE {columns}ON issued_statement "
        f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
    )


def upgrade() -> None:
    op.add_column("statement_key", sa.Column("withdrawn_at", UTCDateTime(), nullable=True))
    op.add_column("issued_statement", sa.Column("resigned_at", UTCDateTime(), nullable=True))
    (_guard_postgresql if _postgresql() else _guard_sqlite)(True)


def downgrade() -> None:
    (_guard_postgresql if _postgresql() else _guard_sqlite)(False)
    # In place, on SQLite too: a batch copy of the table would drop its trigger.
    op.drop_column("issued_statement", "resigned_at")
    op.drop_column("statement_key", "withdrawn_at")
