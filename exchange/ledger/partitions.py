"""The ledger's partitions on PostgreSQL: one per settlement period, and a default one.

``ledger_transaction`` and ``ledger_entry`` are partitioned by period (``LIST (period)``). A
period gets its own partitions ahead of its first posting (:func:`ensure_partitions`: the
gateway at start for the current and next period, closing for the two after the one it
closes, archiving for the period it archives); a row of a period that has none lands in the
default partition, so a posting never fails for want of one. Making a period's partitions moves
any rows of it out of the default partition into them, in the same unit of work (PostgreSQL
refuses to attach a partition while the default holds rows for it). A closed period's
partitions can be detached (:func:`detach_period`): its rows leave the ledger's tables, as a
table of their own to dump and drop.

Partitions are made as plain tables and then attached, which locks the parent only against
other schema changes (``SHARE UPDATE EXCLUSIVE``), not against postings; one transaction-level
advisory lock keeps two processes from making the same partition. SQLite has no partitions:
all of this does nothing there.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import ForeignKeyConstraint, text
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db.bulk import copy_out_csv
from exchange.ledger.models import LedgerEntry, LedgerTransaction

TABLES = ("ledger_transaction", "ledger_entry")
_COLUMNS = {
    table.name: [column.name for column in table.columns]
    for table in (LedgerTransaction.__table__, LedgerEntry.__table__)  # type: ignore[attr-defined]
}
#: pg_advisory_xact_lock key of partition changes ("ledger partitions").
_ADVISORY_KEY = 0x4C454447_50415254


#: Drops a detached legs table's foreign keys to the transactions, whatever PostgreSQL named them.
_DROP_TRANSACTION_KEYS = """
    DO $$
    DECLARE constraint_name text;
    BEGIN
        FOR constraint_name IN
            SELECT conname FROM pg_constraint
             WHERE conrelid = '{table}'::regclass AND contype = 'f' AND confrelid = 'ledger_transaction'::regclass
        LOOP
            EXECUTE format('ALTER TABLE {table} DROP CONSTRAINT %I', constraint_name);
        END LOOP;
    END $$
"""


def partition_name(table: str, period: str) -> str:
    return f"{table}_{period.replace('-', '_')}"


_PARTITION_NAME = re.compile(rf"^(?:{'|'.join(TABLES)})_(?:\d{{4}}_\d{{2}}|default)$")


def compared(item: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's ``include_object`` hook: whether a schema comparison looks at ``item``. The
    ledger's partitions (attached or detached) are made per period at run time and no model
    describes them, so they, their indexes and the foreign keys PostgreSQL adds towards each
    of them are skipped; their parents are compared."""
    if type_ == "table":
        return not _is_partition(name)
    if isinstance(item, ForeignKeyConstraint):
        return not _is_partition(item.referred_table.name)
    return True


def _is_partition(table: str | None) -> bool:
    return table is not None and _PARTITION_NAME.match(table) is not None


def partitioned(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def has_partition(session: AsyncSession, period: str) -> bool:
    name = partition_name(TABLES[0], period)
    found = (await session.exec(text("SELECT to_regclass(:name) IS NOT NULL"), params={"name": name})).scalar_one()  # type: ignore[call-overload]
    return bool(found)


async def ensure_partitions(session: AsyncSession, periods: Iterable[str]) -> list[str]:
    """Give each of ``periods`` its own partitions unless it has them, moving its rows out of the
    default partition; the periods given partitions. Run it in a unit of work of its own (or as
    the start of archiving): the attach waits for postings under way, and holds the advisory
    lock until it commits."""
    if not partitioned(session):
        return []
    await session.exec(text("SELECT pg_advisory_xact_lock(:key)"), params={"key": _ADVISORY_KEY})  # type: ignore[call-overload]
    made = []
    for period in sorted(set(periods)):
        if await has_partition(session, period):
            continue
        for table in TABLES:
            name = partition_name(table, period)
            await session.exec(text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))  # type: ignore[call-overload]
        await _move_out_of_default(session, period)
        for table in TABLES:  # the transactions first: the legs' foreign key finds them there
            name = partition_name(table, period)
            await session.exec(text(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES IN ('{period}')"))  # type: ignore[call-overload]
        made.append(period)
    return made


async def _move_out_of_default(session: AsyncSession, period: str) -> None:
    """Move ``period``'s rows from the default partitions into its own, not yet attached.

    The default partitions are locked first, until the commit, so no posting adds rows of the
    period meanwhile (attaching would lock them anyway). The rows are the same rows:
    copied column for column into plain tables, which fire no trigger, so heads and balances
    stay as they are; the default partitions' append-only guards step aside for the delete
    alone, in this unit of work (the legs first: they refer to the transactions)."""
    defaults = [partition_name(table, "default") for table in TABLES]
    await session.exec(text(f"LOCK TABLE {', '.join(defaults)} IN EXCLUSIVE MODE"))  # type: ignore[call-overload]
    in_default = (
        await session.exec(
            text("SELECT EXISTS (SELECT 1 FROM ledger_transaction_default WHERE period = :period)"),  # type: ignore[call-overload]
            params={"period": period},
        )
    ).scalar_one()
    if not in_default:
        return
    for table in TABLES:
        columns = ", ".join(_COLUMNS[table])
        await session.exec(
            text(  # type: ignore[call-overload]
                f"INSERT INTO {partition_name(table, period)} ({columns})"
                f" SELECT {columns} FROM {partition_name(table, 'default')} WHERE period = :period"
            ),
            params={"period": period},
        )
    for table in reversed(TABLES):
        default, guard = partition_name(table, "default"), f"{table}_append_only"
        await session.exec(text(f"ALTER TABLE {default} DISABLE TRIGGER {guard}"))  # type: ignore[call-overload]
        await session.exec(text(f"DELETE FROM {default} WHERE period = :period"), params={"period": period})  # type: ignore[call-overload]
        await session.exec(text(f"ALTER TABLE {default} ENABLE TRIGGER {guard}"))  # type: ignore[call-overload]


async def export_period(session: AsyncSession, period: str, directory: Path) -> list[Path]:
    """Write the period's transactions and legs as CSV files (with a header) in ``directory``."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    written = []
    for table in TABLES:
        path = directory / f"{partition_name(table, period)}.csv"
        sink = await asyncio.to_thread(path.open, "wb")
        with sink:
            await copy_out_csv(session, f"SELECT * FROM {partition_name(table, period)} ORDER BY 1, 2", sink)
        written.append(path)
    return written


async def detached_tables(session: AsyncSession, period: str) -> tuple[list[str], bool]:
    """The names of the tables archiving ``period`` detached, and whether all are still in the
    database (an operator drops them once dumped)."""
    names = [partition_name(table, period) for table in TABLES]
    left = await session.exec(
        text("SELECT count(*) FROM unnest(CAST(:names AS text[])) AS name WHERE to_regclass(name) IS NOT NULL"),  # type: ignore[call-overload]
        params={"names": names},
    )
    return names, left.scalar_one() == len(names)


async def detach_period(session: AsyncSession, period: str) -> None:
    """Detach the period's partitions: legs first, and their table's foreign key to the
    transactions with them (it would otherwise hold the detached transactions in place)."""
    await session.exec(text("SELECT pg_advisory_xact_lock(:key)"), params={"key": _ADVISORY_KEY})  # type: ignore[call-overload]
    entries, transactions = partition_name("ledger_entry", period), partition_name("ledger_transaction", period)
    await session.exec(text(f"ALTER TABLE ledger_entry DETACH PARTITION {entries}"))  # type: ignore[call-overload]
    await session.exec(text(_DROP_TRANSACTION_KEYS.format(table=entries)))  # type: ignore[call-overload]
    await session.exec(text(f"ALTER TABLE ledger_transaction DETACH PARTITION {transactions}"))  # type: ignore[call-overload]
