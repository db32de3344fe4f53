"""Reading and writing many rows at once: COPY on PostgreSQL, one multi-row INSERT for a few.

COPY streams rows into the table in one round trip and skips per-statement planning, which
is what lets the ledger post thousands of transactions a second. Rows must already hold
the values the columns store (aware datetimes, ints, strings): they bypass SQLAlchemy's
type processing on PostgreSQL. A few rows go in one ``INSERT … VALUES (…), (…)``: one
statement, where an executemany would send one per row. SQLAlchemy compiles a multi-row
insert anew every time, so it is written here once per table, columns and row count, as
text with typed parameters, which its cache keeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Collection, Sequence
from functools import lru_cache
from typing import Any, BinaryIO, TypeVar

from psycopg import AsyncConnection
from sqlalchemy import ARRAY, ColumnElement, String, Table, TextClause, any_, bindparam, insert, text
from sqlalchemy.sql.elements import SQLCoreOperations
from sqlalchemy.types import TypeEngine
from sqlmodel.ext.asyncio.session import AsyncSession

T = TypeVar("T")


def one_of(
    column: SQLCoreOperations[T],
    values: Collection[T],
    session: AsyncSession,
    of: type[TypeEngine[Any]] | TypeEngine[Any] = String,
) -> ColumnElement[bool]:
    """``column IN values`` (of the SQL type ``of``); on PostgreSQL as ``= ANY(array)``, one
    parameter however many values: one statement text for any number of them, so one prepared
    statement and one ``pg_stat_statements`` entry, where ``IN ($1, $2, …)`` makes one per
    length of the list."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        return column == any_(bindparam("values", list(values), type_=ARRAY(of), unique=True))
    return column.in_(values)


#: Below this many rows one multi-row INSERT beats setting up a COPY (and stays far below
#: any driver's limit on parameters).
COPY_FROM_ROWS = 64


async def bulk_insert(
    session: AsyncSession, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) in the session's transaction: a few in
    one statement; many by COPY on PostgreSQL, by executemany on SQLite (in process)."""
    if not rows:
        return
    if len(rows) < COPY_FROM_ROWS:
        params = {
            f"{column}_{index}": value
            for index, row in enumerate(rows)
            for column, value in zip(columns, row, strict=True)
        }
        await session.exec(_values(table, tuple(columns), len(rows)), params=params)  # type: ignore[call-overload]
        return
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        await session.exec(insert(table), params=[dict(zip(columns, row, strict=True)) for row in rows])
        return
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    async with (await _driver(session)).cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            await copy.write_row(row)


@lru_cache(maxsize=256)
def _values(table: Table, columns: tuple[str, ...], count: int) -> TextClause:
    """``INSERT INTO table (columns) VALUES`` ``count`` rows of parameters ``<column>_<row>``."""
    rows = ", ".join("(" + ", ".join(f":{column}_{index}" for column in columns) + ")" for index in range(count))
    return text(f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES {rows}").bindparams(
        *(bindparam(f"{column}_{index}", type_=table.c[column].type) for index in range(count) for column in columns)
    )


async def copy_csv(
    session: AsyncSession,
    table: str,
    columns: Sequence[str],
    chunks: AsyncIterable[str] | AsyncIterable[bytes],
    *,
    null_when_empty: Sequence[str] = (),
) -> None:
    """PostgreSQL only: stream CSV (no header; text, or its UTF-8 bytes) into ``table``; the
    server parses it.

    Lets a caller that has already checked every line hand the text on as it is, without
    building a Python row per line. An empty field is NULL when bare; in the columns
    ``null_when_empty`` a quoted one (``""``) is NULL too, where COPY would otherwise take it
    as an empty string (which a date column refuses).
    """
    options = "FORMAT csv" + (f", FORCE_NULL ({', '.join(null_when_empty)})" if null_when_empty else "")
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN ({options})"
    async with (await _driver(session)).cursor() as cursor, cursor.copy(statement) as copy:
        async for chunk in chunks:
            await copy.write(chunk)


async def copy_out_csv(session: AsyncSession, query: str, sink: BinaryIO) -> None:
    """PostgreSQL only: stream ``query``'s rows into ``sink`` as CSV with a header."""
    statement = f"COPY ({query}) TO STDOUT (FORMAT csv, HEADER)"
    async with (await _driver(session)).cursor() as cursor, cursor.copy(statement) as copy:
        async for chunk in copy:
            sink.write(chunk)


async def _driver(session: AsyncSession) -> AsyncConnection[Any]:
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert isinstance(driver, AsyncConnection)
    return driver
