"""Statements are stored as issued: ``issued_statement`` holds each participant's signed
document of a closed period, and every download serves it as it is.

Periods closed before this revision have no stored statement. The migration does not issue
them: issuing signs with the active statement key, which only the gateway can decrypt (with
``EXCHANGE_KEY_ENCRYPTION_SECRET``), and builds the document with the application's code, which
a migration must not import. The first download of such a statement issues it instead, once
(:mod:`exchange.settlement.issued`); from then on it never changes: the database refuses an
UPDATE of a stored statement, on PostgreSQL and SQLite alike.

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None

REFUSAL = "an issued statement never changes: UPDATE on issued_statement is refused"
POSTGRES_GUARDS = [
    f"""
    CREATE FUNCTION issued_statement_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{REFUSAL}' USING ERRCODE = 'restrict_violation';
    END $$
    """,
    "CREATE TRIGGER issued_statement_no_update BEFORE UPDATE ON issued_statement "
    "FOR EACH ROW EXECUTE FUNCTION issued_statement_refuse_update()",
]
SQLITE_GUARDS = [
    "CREATE TRIGGER issued_statement_no_update BEFORE UPDATE ON issued_statement "
    f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
]


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.create_table(
        "issued_statement",
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("participant", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("jws", sa.Text(), nullable=False),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
    )
    for guard in POSTGRES_GUARDS if _postgresql() else SQLITE_GUARDS:
        op.execute(guard)


def downgrade() -> None:
    op.drop_table("issued_statement")  # its trigger goes with it
    if _postgresql():
        op.execute("DROP FUNCTION issued_statement_refuse_update()")
