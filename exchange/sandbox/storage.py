"""The sandbox's own durable store: one SQLite file per sandbox, used through aiosqlite.

aiosqlite runs SQLite on a thread of its own, so the event loop never waits on the disk.
One connection serves the sandbox; :meth:`Storage.transaction` serialises units of work on
it with a lock and ``BEGIN IMMEDIATE``, so a unit of work sees no one else's half-done
changes and a committed one survives a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from exchange.errors import ConfigurationError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS member (
    member_ref TEXT PRIMARY KEY,
    balance INTEGER NOT NULL CHECK (balance >= 0),
    opening_balance INTEGER NOT NULL CHECK (opening_balance >= 0),
    tier TEXT NOT NULL,
    verification TEXT NOT NULL,
    name TEXT,
    eligibility TEXT NOT NULL DEFAULT 'eligible',
    matched_tier TEXT,
    matched_until TEXT,
    matched_by TEXT
);
CREATE TABLE IF NOT EXISTS expiring_lot (
    member_ref TEXT NOT NULL REFERENCES member (member_ref),
    points INTEGER NOT NULL CHECK (points > 0),
    expires_on TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS operation (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    operation_id TEXT NOT NULL UNIQUE,
    kind TEXT,
    status TEXT NOT NULL,
    member_ref TEXT,
    points INTEGER,
    reversed_points INTEGER NOT NULL DEFAULT 0,
    balance_after INTEGER,
    reverses TEXT,
    tier TEXT,
    expires_at TEXT,
    request TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_line (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL,
    operation_id TEXT NOT NULL,
    status TEXT NOT NULL,
    points INTEGER
);
CREATE INDEX IF NOT EXISTS batch_line_batch ON batch_line (batch_id);
"""


#: Columns added since the first stores were made, by table, for files made before them. A
#: batch line of such a file has no ``points``: its batch's result file is written without them.
_LATER_COLUMNS = {
    "member": {"name": "TEXT", "eligibility": "TEXT NOT NULL DEFAULT 'eligible'"},
    "batch_line": {"points": "INTEGER"},
}


async def _add_missing_columns(connection: aiosqlite.Connection) -> None:
    """Bring a store made by an older sandbox up to :data:`SCHEMA` (a data dir survives upgrades)."""
    for table, columns in _LATER_COLUMNS.items():
        present = {row[1] for row in await (await connection.execute(f"PRAGMA table_info({table})")).fetchall()}
        for name, definition in columns.items():
            if name not in present:
                await connection.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")


class Storage:
    def __init__(self, connection: aiosqlite.Connection, path: Path) -> None:
        self.path = path
        self._connection = connection
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, program_id: str) -> tuple[Storage, bool]:
        """Open (or create) the file; returns the storage and whether it is new.

        A file made for another program is refused: mixing two programs' members would make
        every later comparison with the exchange's ledger meaningless.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path, isolation_level=None)
        connection.row_factory = aiosqlite.Row
        storage = cls(connection, path)
        try:
            await connection.execute("PRAGMA journal_mode=WAL")
            await connection.execute("PRAGMA synchronous=FULL")
            await connection.execute("PRAGMA foreign_keys=ON")
            await connection.executescript(SCHEMA)
            await _add_missing_columns(connection)
            async with storage.transaction() as db:
                row = await (await db.execute("SELECT value FROM meta WHERE key = 'program'")).fetchone()
                if row is None:
                    await db.execute("INSERT INTO meta (key, value) VALUES ('program', ?)", (program_id,))
                    return storage, True
                if row["value"] != program_id:
                    raise ConfigurationError(f"{path} holds the sandbox of {row['value']}, not of {program_id}")
                return storage, False
        except BaseException:
            await connection.close()
            raise

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One unit of work: commits when the block ends, rolls back if it raises."""
        async with self._lock:
            await self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                await self._connection.execute("ROLLBACK")
                raise
            await self._connection.execute("COMMIT")

    async def close(self) -> None:
        await self._connection.close()
