"""How many rows of tables a piece of work reads, on PostgreSQL, which statements it sends and
which units of work it begins in a session: what a test of a page checks to show it reads its
page, not the whole table, and a test of a hot path that it stays lean (a count, never a
timing)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db import direct
from exchange.db.database import Database

T = TypeVar("T")

#: Rows of each table the session's transaction has read so far, by sequential and index scans.
#: The server keeps these counts across transactions until it reports them, at an idle moment,
#: so only a difference taken inside one transaction is the work's own.
ROWS_READ = text(
    "SELECT relname, seq_tup_read + idx_tup_fetch FROM pg_stat_xact_user_tables WHERE relname = ANY(:tables)"
)


async def rows_read(
    session: AsyncSession, tables: Sequence[str], work: Callable[[], Awaitable[T]]
) -> tuple[T, dict[str, int]]:
    """What ``work`` (run in ``session``'s transaction) gives, and how many rows of each of
    ``tables`` it read (PostgreSQL only)."""

    async def counts() -> dict[str, int]:
        rows = await session.exec(ROWS_READ, params={"tables": list(tables)})  # type: ignore[call-overload]
        return dict.fromkeys(tables, 0) | {table: int(read) for table, read in rows}

    before = await counts()
    done = await work()
    after = await counts()
    return done, {table: after[table] - before[table] for table in tables}


@contextmanager
def statements_sent(*engines: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    """Every statement ``engines`` send while the block runs, with its parameters, in order."""
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    for engine in engines:
        event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        for engine in engines:
            event.remove(engine.sync_engine, "before_cursor_execute", record)


@contextmanager
def statements_of(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """Every statement ``db`` sends while the block runs, through its engines and straight
    through psycopg (:meth:`Database.read` and :meth:`Database.write`, and
    :func:`direct.execute` in its units of work), with its parameters, in order."""
    with statements_sent(*db.engines) as sent:
        if db.direct is None:  # SQLite: every statement goes through the engine
            yield sent
            return
        statements, run, execute = db.direct, db.direct.run, direct.execute
        engines = {engine.sync_engine for engine in db.engines}

        async def recorded(statement: Any, values: Any) -> Any:
            sent.append((str(statement), values))
            return await run(statement, values)

        async def executed(session: AsyncSession, statement: Any, values: Any = None) -> Any:
            if session.get_bind() in engines:
                sent.append((str(statement), values))
            return await execute(session, statement, values)

        statements.run = recorded  # type: ignore[method-assign]
        direct.execute = executed
        try:
            yield sent
        finally:
            del statements.run
            direct.execute = execute


@contextmanager
def sessions_begun(db: Database) -> Iterator[list[str]]:
    """The units of work ``db`` begins in a session while the block runs (each named by the
    function that began it); lean ones (:meth:`Database.run`) are not among them."""
    begun: list[str] = []
    transaction = db.transaction

    @asynccontextmanager
    async def counted() -> AsyncIterator[AsyncSession]:
        begun.append(inspect.stack(0)[2].function)
        async with transaction() as session:
            yield session

    db.transaction = counted  # type: ignore[method-assign]
    try:
        yield begun
    finally:
        del db.transaction
