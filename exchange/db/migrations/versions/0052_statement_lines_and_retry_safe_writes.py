"""An issued statement's lines, a page at a time; a promotion ended early keeps the end it was
made with; a status match's progress report sent again is counted once.

* ``issued_statement_line``: each issued statement's ``lines``, one row per line numbered from 1
  in the document's order, holding the line's JSON as the document does, so that a page of a
  statement's lines (GraphQL's ``Statement.linePage``, the consoles' statement pages) reads its
  own rows by number where it read and parsed the whole document. The database writes them, in
  the unit of work that stores the statement: a trigger after each insert into
  ``issued_statement`` takes the new document's lines apart (so a statement stored by a gateway
  of the release before, during a rolling update, has its lines too). Filled likewise from the
  statements issued already (the documents are neither changed nor signed again).
* ``issued_statement.head``: the document but its ``lines`` (a JSON object), written by the
  same trigger and filled likewise: what a page shows of a statement is read from it. The guard
  that refuses changes to an issued statement watches its document, not this column.
* ``promotion.planned_ends_at``: the ``ends_at`` a promotion was made with, kept when
  ``endPromotion`` ends it before then, so that the request that made it, sent again (a retry
  after a lost answer), is known as the same request and answers the promotion as it is, not
  ``IDEMPOTENCY_CONFLICT``. Null for the promotions ended before it was kept: their end as made
  is not known.
* ``status_match_report``: each challenge progress report a partner sent with an idempotency
  key (``recordStatusMatchActivity(idempotencyKey)``), by match and key, with its figures: the
  same key again answers the match without counting the report twice.

Revision ID: 0052
Revises: 0051
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import UTCDateTime
from exchange.idempotency import IDEMPOTENCY_KEY_LENGTH

revision = "0052"
down_revision = "0051"
branch_labels = None
depends_on = None


#: A statement's lines taken from its document, ``{row}.document`` (a row of ``issued_statement``),
#: numbered from 1 in its order, each as the document holds it: the columns, and the function
#: that yields them. json, not jsonb, keeps each element's text as it is and has no jsonb's 256 MB
#: limit.
POSTGRES_LINES = (
    "{row}.period, {row}.participant, l.number, l.line::text",
    "json_array_elements({row}.document::json -> 'lines') WITH ORDINALITY AS l(line, number)",
)
SQLITE_LINES = ("{row}.period, {row}.participant, l.key + 1, l.value", "json_each({row}.document, '$.lines') AS l")
INSERT_LINES = "INSERT INTO issued_statement_line (period, participant, number, line) SELECT {} FROM {}{}"
#: The document ``{row}.document`` but its lines, as a JSON object.
POSTGRES_HEAD = (
    "(SELECT json_object_agg(d.key, d.value) FROM json_each({row}.document::json) AS d WHERE d.key <> 'lines')::text"
)
SQLITE_HEAD = "json_remove({row}.document, '$.lines')"


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _head(row: str) -> str:
    """The UPDATE that writes the head of the document of ``row`` (``NEW``, or every row)."""
    head = (POSTGRES_HEAD if _postgresql() else SQLITE_HEAD).format(row=row)
    where = " WHERE period = NEW.period AND participant = NEW.participant" if row == "NEW" else ""
    return f"UPDATE issued_statement SET head = {head}{where}"


def _lines(row: str, source: str) -> str:
    """The INSERT of the lines of the documents of ``row`` (``NEW``, or ``s`` of ``source``)."""
    columns, function = POSTGRES_LINES if _postgresql() else SQLITE_LINES
    return INSERT_LINES.format(columns.format(row=row), source, function.format(row=row))


def upgrade() -> None:
    op.add_column("promotion", sa.Column("planned_ends_at", UTCDateTime(), nullable=True))
    op.create_table(
        "issued_statement_line",
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("participant", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["period", "participant"],
            ["issued_statement.period", "issued_statement.participant"],
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("period", "participant", "number"),
    )
    op.add_column("issued_statement", sa.Column("head", sa.Text(), nullable=True))
    op.execute(_lines("s", "issued_statement s, "))
    op.execute(_head("issued_statement"))
    if _postgresql():
        op.execute(
            f"""
            CREATE FUNCTION issued_statement_lines() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                {_lines("NEW", "")};
                {_head("NEW")};
                RETURN NULL;
            END $$
            """
        )
        op.execute(
            "CREATE TRIGGER issued_statement_lines AFTER INSERT ON issued_statement "
            "FOR EACH ROW EXECUTE FUNCTION issued_statement_lines()"
        )
    else:
        op.execute(
            "CREATE TRIGGER issued_statement_lines AFTER INSERT ON issued_statement "
            f"BEGIN {_lines('NEW', '')}; {_head('NEW')}; END"
        )
    op.create_table(
        "status_match_report",
        sa.Column("match_id", sa.String(36), sa.ForeignKey("status_match.id"), nullable=False),
        sa.Column("idempotency_key", sa.String(IDEMPOTENCY_KEY_LENGTH), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("activities", sa.Integer(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("match_id", "idempotency_key"),
    )


def downgrade() -> None:
    op.drop_table("status_match_report")
    if _postgresql():
        op.execute("DROP TRIGGER issued_statement_lines ON issued_statement")
        op.execute("DROP FUNCTION issued_statement_lines()")
    else:
        op.execute("DROP TRIGGER issued_statement_lines")
    op.drop_table("issued_statement_line")
    # In place, on SQLite too: a batch copy of the table would drop its guard.
    op.drop_column("issued_statement", "head")
    with op.batch_alter_table("promotion") as batch:
        batch.drop_column("planned_ends_at")
