"""Where settlement's SQL differs between PostgreSQL and SQLite, and only here.

A partner's records are staged in a temporary table of the unit of work. On PostgreSQL the
validated CSV text goes to ``COPY`` as it is (the server parses it, numbers the lines with an
identity column and turns amounts into minor units in a generated column); on SQLite, which
has neither, the same rows are built in Python and inserted in batches. A record whose quoted
field holds line breaks spans several lines: COPY gets a placeholder row for each line after
its first (deleted once copied), so that the identity still names the line each record starts
on. The ledger's side is
staged too, and on PostgreSQL both get statistics and the memory to join in one pass.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

from sqlalchemy import BigInteger, Column, MetaData, String, Table, insert, text
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db.bulk import copy_csv
from exchange.errors import ConfigurationError
from exchange.settlement.records import Batch, RecordReader, split_records

#: The first SQLite with FULL JOIN, which classifying records uses (Python 3.11's usual builds have it).
SQLITE_FULL_JOIN = (3, 39)
STAGING = "partner_record_staging"
LEDGER_STAGING = "ledger_amount_staging"
#: The file's column names, as the staging table calls them; any other column of the file is
#: staged as text (``unread_<n>``, its place in the line) and not read.
STAGED_AS = {"reference": "reference", "amount": "amount_text", "counterparty": "counterparty", "date": "partner_date"}
#: The staged columns an empty field leaves unknown, quoted (``""``) or not.
NULLABLE = ("counterparty", "partner_date")

T = TypeVar("T")

#: The reference of a placeholder row (no record's reference is empty).
PLACEHOLDER = ""

_SQLITE_STAGING = Table(
    STAGING,
    MetaData(),
    Column("line", BigInteger, nullable=False),
    Column("reference", String(200), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("counterparty", String(64)),
    Column("partner_date", String(10)),
    prefixes=["TEMPORARY"],
)


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def _in_thread(batches: Iterator[T]) -> AsyncIterator[T]:
    """The batches, each read and checked in a worker thread: reading a file and checking a
    batch of lines never blocks the event loop."""
    while (batch := await asyncio.to_thread(next, batches, None)) is not None:
        yield batch


async def stage_records(session: AsyncSession, reader: RecordReader) -> None:
    """Load every record ``reader`` validates into the staging table, created here.

    The table holds ``line``, ``reference``, ``amount`` (minor units), ``counterparty`` and
    ``partner_date``; it lasts until :func:`drop_staging` or the end of the unit of work.
    """
    batches: AsyncIterator[Batch] = _in_thread(reader.batches())
    if _is_postgres(session):
        scale = 10**reader.format.currency.minor_units
        columns = [STAGED_AS.get(name, f"unread_{at}") for at, name in enumerate(reader.format.columns)]
        unread = "".join(f", {column} text" for column in columns if column.startswith("unread_"))
        await session.exec(  # type: ignore[call-overload]
            text(
                f"""
                CREATE TEMPORARY TABLE {STAGING} (
                    line bigint GENERATED ALWAYS AS IDENTITY (START WITH 2),
                    reference varchar(200) NOT NULL,
                    amount_text numeric NOT NULL,
                    amount bigint GENERATED ALWAYS AS ((amount_text * {scale})::bigint) STORED,
                    counterparty varchar(64),
                    partner_date date{unread}
                ) ON COMMIT DROP
                """
            )
        )
        placeholder = ",".join({"reference": '""', "amount_text": "0"}.get(column, "") for column in columns) + "\n"
        await copy_csv(
            session,
            STAGING,
            columns,
            (_copied(batch, placeholder) async for batch in batches),
            null_when_empty=[column for column in columns if column in NULLABLE],
        )
        await session.exec(text(f"DELETE FROM {STAGING} WHERE reference = '{PLACEHOLDER}'"))  # type: ignore[call-overload]
        await session.exec(text(f"ANALYZE {STAGING}"))  # type: ignore[call-overload]
        return
    if sqlite3.sqlite_version_info < SQLITE_FULL_JOIN:
        raise ConfigurationError(
            f"reconciling on SQLite needs SQLite {'.'.join(map(str, SQLITE_FULL_JOIN))} or later (FULL JOIN); "
            f"this Python has {sqlite3.sqlite_version}"
        )
    await session.exec(text(f"DROP TABLE IF EXISTS {STAGING}"))  # type: ignore[call-overload]
    connection = await session.connection()
    await connection.run_sync(_SQLITE_STAGING.create)
    async for batch in batches:
        await session.exec(
            insert(_SQLITE_STAGING),
            params=[
                dict(zip(("line", "reference", "amount", "counterparty", "partner_date"), row, strict=True))
                for row in batch.rows(reader.format)
            ],
        )


def _copied(batch: Batch, placeholder: str) -> str:
    """``batch``'s text for COPY: as it is, or with a ``placeholder`` row after each record
    for each line break its quoted fields hold, so that the rows number the file's lines."""
    if batch.records == batch.lines:
        return batch.text
    rows = []
    for _, record in split_records(batch.text):
        rows += [record, "\n", placeholder * record.count("\n")]
    return "".join(rows)


async def stage_ledger_amounts(session: AsyncSession, query: str, params: dict[str, object]) -> None:
    """Keep the rows of ``query`` in the temporary table ``ledger_amount_staging`` for the rest
    of the unit of work (or until :func:`drop_staging`); on PostgreSQL with its statistics, so
    that what joins it is planned for its real size."""
    if _is_postgres(session):
        await session.exec(text(f"CREATE TEMPORARY TABLE {LEDGER_STAGING} ON COMMIT DROP AS {query}"), params=params)  # type: ignore[call-overload]
        await session.exec(text(f"ANALYZE {LEDGER_STAGING}"))  # type: ignore[call-overload]
        return
    await session.exec(text(f"DROP TABLE IF EXISTS {LEDGER_STAGING}"))  # type: ignore[call-overload]
    await session.exec(text(f"CREATE TEMPORARY TABLE {LEDGER_STAGING} AS {query}"), params=params)  # type: ignore[call-overload]


async def prefer_hashing_in_memory(session: AsyncSession) -> None:
    """For the rest of the unit of work, give hash joins and aggregates of a million rows the
    memory to stay off disk, and skip compiling the plan (which costs more than it saves here)."""
    if _is_postgres(session):
        for setting in ("work_mem = '64MB'", "jit = off"):
            await session.exec(text(f"SET LOCAL {setting}"))  # type: ignore[call-overload]


async def drop_staging(session: AsyncSession) -> None:
    """Drop the staging tables now (PostgreSQL drops them at commit in any case)."""
    for table in (STAGING, LEDGER_STAGING):
        await session.exec(text(f"DROP TABLE IF EXISTS {table}"))  # type: ignore[call-overload]
