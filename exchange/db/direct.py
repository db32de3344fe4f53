"""Statements sent straight to psycopg (PostgreSQL), past SQLAlchemy's execution.

Through SQLAlchemy's async engine, a statement committed on its own costs about 0.3 ms of CPU
more than psycopg's own execution of it: the session, the pool's checkout and return, the
execution context, the result and, for ORM entities, the instances are built in Python, with
greenlet switches between. Inside a unit of work a statement costs about 50 µs more (bench/
db_client.py). For the statements every request or every conversion sends, that adds up.

A statement is still a SQLAlchemy expression: it is compiled once for PostgreSQL, and its
parameters and columns go through their types' processing as SQLAlchemy's execution would put
them through it, so a statement gives here the values it gives there. It is sent two ways:

- :class:`DirectStatements` runs statements that need no other's company (a read of one
  statement, a lone insert) on psycopg connections of its own, in autocommit mode, pooled here:
  each commits on its own (no BEGIN, no COMMIT), as
  :meth:`~exchange.db.database.Database.autocommit` does. The pool connects when a statement
  needs a connection and none is idle, so an outage is met at once, as the engine's pool meets it
  (:class:`~exchange.db.availability.DatabaseUnavailable`), rather than waited out while a pool
  refills in the background (``psycopg_pool``'s way); an idle connection the server closed is
  dropped as it is taken (:func:`~exchange.db.availability.closed_by_server`), as the engine's
  pool drops it, so reads after a failover do not fail on connections to the old primary.
- :func:`execute` runs a statement inside a unit of work, on the psycopg connection under its
  session: in the session's transaction, beside whatever the session itself sends (on SQLite,
  through the session's connection as SQLAlchemy executes it). The hot statements of the
  sagas and the ledger go this way.
- :meth:`DirectStatements.unit` runs a whole unit of work as one psycopg transaction on a
  connection of its pool, with no session: a :class:`LeanUnit`, which sends what
  :func:`execute` is given and nothing else. Work that asks it for anything a session does
  (the ORM, ``session.exec``) raises :class:`NeedsSession`: the transaction is rolled back, and
  the work is begun again in a session (:meth:`~exchange.db.database.Database.run`). A unit of
  work through a session costs about 0.25 ms of CPU more than the same statements so (the
  session, the engine's connection and transaction, greenlet switches).
"""

from __future__ import annotations

import asyncio
import time
from collections import namedtuple
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar, cast

import psycopg
from psycopg import pq
from sqlalchemy import URL, Engine, Executable, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import SessionTransaction
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.types import TypeEngine
from sqlmodel import Session, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db.availability import (
    DatabaseRefused,
    DatabaseUnavailable,
    closed_by_server,
    driver_refused_configuration,
    server_not_now,
)
from exchange.db.commits import run_pending

Processor = Callable[[Any], Any]
#: How many compiled statements are kept: those sent this way are some dozens (each saga's moves
#: and their outbox events, the ledger's, the reads every request sends), built once each.
_COMPILED_KEPT = 256
M = TypeVar("M", bound=SQLModel)
T = TypeVar("T")


def loaded(model: type[M], values: Sequence[Any]) -> M:
    """An instance of table model ``model`` holding ``values``, its columns in the table's order
    (as a select of the entity reads them), set as the ORM's loading sets them: no validation
    (the database's values are what they are), no history of changes. It belongs to no session;
    for reading, not for adding to one (that would insert it). A tenth of what the constructor
    costs, which validates."""
    instance: M = model._sa_class_manager.new_instance()  # type: ignore[attr-defined]  # SQLAlchemy's mapped class
    instance.__dict__.update(zip(_table(model).columns.keys(), values, strict=True))
    return instance


def width(model: type[SQLModel]) -> int:
    """How many columns a select of table model ``model``'s entity reads."""
    return len(_table(model).columns)


def _table(model: type[SQLModel]) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]  # a table model's
    return table


@dataclass(slots=True)
class CompiledStatement:
    """A statement compiled for a dialect, with what SQLAlchemy's execution would do around it."""

    sql: str
    dialect: Dialect
    #: Values the statement binds itself (literals in the expression), by parameter name.
    literals: Mapping[str, Any]
    #: The processing of each parameter's type (``process_bind_param``), where it has one.
    binds: Mapping[str, Processor]
    #: Each column's type, in column order (none known for a text statement).
    types: tuple[TypeEngine[Any], ...]
    #: The processing of each column's type (``process_result_value``), once a first result has
    #: said which type the server sends for each (SQLAlchemy's processing of some depends on it).
    readers: tuple[Processor | None, ...] | None = None
    #: The rows' class: a named tuple of the result's column names, made at the first result.
    row: type[tuple[Any, ...]] | None = None

    @classmethod
    def of(cls, statement: ClauseElement, dialect: Dialect) -> CompiledStatement:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        required = {name for name, parameter in compiled.binds.items() if parameter.required}
        sql, values = str(compiled), {name: parameter.effective_value for name, parameter in compiled.binds.items()}
        if compiled.post_compile_params:
            # An IN of values given in the expression: rendered once, as each execution would render it.
            if any(parameter.required for parameter in compiled.post_compile_params):
                raise ValueError(f"{sql!r} expands a list bound at each execution: bind an array (= ANY) instead")
            expanded = compiled.construct_expanded_state(dict.fromkeys(required), escape_names=False)
            sql, values = expanded.statement, dict(expanded.parameters)
        binds = {
            name: processor
            for name, parameter in compiled.binds.items()
            if (processor := parameter.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }
        literals = {name: value for name, value in values.items() if name not in required}
        types = tuple(column.type for column in getattr(statement, "exported_columns", ()))
        return cls(sql, dialect, literals, binds, types)

    def parameters(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The statement's parameters with ``values`` bound, each processed by its type."""
        bound = {**self.literals, **values}
        return {name: self.binds[name](value) if name in self.binds else value for name, value in bound.items()}

    def rows(self, fetched: Sequence[Sequence[Any]], cursor: psycopg.AsyncCursor[Any]) -> list[tuple[Any, ...]]:
        """The rows as the driver returned them (on ``cursor``), each column processed by its
        type, as named tuples of the columns' names. The result's description is read at the
        statement's first result only: psycopg builds it anew at every reading."""
        if self.readers is None or self.row is None:
            description = cursor.description or []
            kinds: Sequence[TypeEngine[Any] | None] = (
                self.types if len(self.types) == len(description) else (None,) * len(description)
            )
            self.readers = tuple(
                None
                if kind is None
                else kind.dialect_impl(self.dialect).result_processor(self.dialect, column.type_code)
                for kind, column in zip(kinds, description, strict=True)
            )
            self.row = namedtuple("Row", [column.name for column in description], rename=True)  # type: ignore[misc]  # made per statement
        readers, row = self.readers, self.row
        return [
            row(*(value if read is None else read(value) for read, value in zip(readers, fetched_row, strict=True)))
            for fetched_row in fetched
        ]


_compiled: dict[tuple[ClauseElement, str], CompiledStatement] = {}


def compiled_for(statement: ClauseElement, dialect: Dialect) -> CompiledStatement:
    """``statement`` compiled for ``dialect``, at its first use, and kept: pass statements built
    once (module constants, cached builders), not one per execution."""
    key = (statement, dialect.name)
    compiled = _compiled.get(key)
    if compiled is None:
        if len(_compiled) >= _COMPILED_KEPT:  # statements built per execution: they are not kept
            _compiled.clear()
        compiled = _compiled[key] = CompiledStatement.of(statement, dialect)
    return compiled


@dataclass(frozen=True, slots=True)
class Rows:
    """What a statement sent by :func:`execute` returned: its rows (each a tuple whose columns
    also read by name) and how many rows it changed."""

    rows: Sequence[Any]
    rowcount: int

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def one(self) -> Any:
        if len(self.rows) != 1:
            raise ValueError(f"expected one row, got {len(self.rows)}")
        return self.rows[0]

    def all(self) -> Sequence[Any]:
        return self.rows

    def scalars(self) -> list[Any]:
        """The first column of every row."""
        return [row[0] for row in self.rows]


async def execute(session: AsyncSession, statement: ClauseElement, values: Mapping[str, Any] | None = None) -> Rows:
    """Run ``statement`` (built once: see :func:`compiled_for`) with ``values`` in ``session``'s
    unit of work (a :class:`LeanUnit`'s too). On PostgreSQL it goes straight to the psycopg
    connection under the session, in its transaction; one the error broke (or the server
    refusing it now: a failover, a shutdown) raises :class:`DatabaseUnavailable` and is not used
    again. On SQLite, through the session's connection as SQLAlchemy executes it."""
    if isinstance(session, LeanUnit):
        return await session.send(statement, values or {})
    # The unit of work's transaction holds one connection to its end: found once (a greenlet's
    # round of SQLAlchemy's), kept in the session's ``info`` with the transaction it is for.
    transaction = session.sync_session.get_transaction()
    held: _Held | None = session.info.get(_HELD)
    if transaction is None or held is None or held.transaction is not transaction or not transaction.is_active:
        connection = await session.connection()  # begins the session's transaction if none had begun
        if connection.dialect.name != "postgresql":
            result = await connection.execute(cast(Executable, statement), values)
            return Rows(result.all() if result.returns_rows else (), result.rowcount)
        begun = session.sync_session.get_transaction()
        assert begun is not None, "a session that gave a connection is in a transaction"
        held = session.info[_HELD] = _Held(begun, connection, await _cursor(connection))
    try:
        return await _sent(held.cursor, compiled_for(statement, held.connection.dialect), values or {})
    except DatabaseUnavailable:
        await held.connection.invalidate()
        raise


@dataclass(frozen=True, slots=True)
class _Held:
    """A unit of work's PostgreSQL connection and its cursor, for the session's ``transaction``."""

    transaction: SessionTransaction
    connection: AsyncConnection
    cursor: psycopg.AsyncCursor[Any]


#: Where a session keeps its :class:`_Held`.
_HELD = "exchange.direct.held"
#: Where a pooled connection's record keeps its cursor.
_CURSOR = "exchange.direct.cursor"


async def _cursor(connection: AsyncConnection) -> psycopg.AsyncCursor[Any]:
    """The cursor ``connection``'s statements are sent with (see :func:`_sent`): kept by the
    pool's record of the connection, whose ``info`` is emptied when the connection is closed or
    invalidated."""
    driver = (await connection.get_raw_connection()).driver_connection
    assert isinstance(driver, psycopg.AsyncConnection)
    cursor: psycopg.AsyncCursor[Any] | None = connection.info.get(_CURSOR)
    if cursor is None or cursor.connection is not driver or cursor.closed:
        cursor = connection.info[_CURSOR] = driver.cursor()
    return cursor


async def _sent(cursor: psycopg.AsyncCursor[Any], compiled: CompiledStatement, values: Mapping[str, Any]) -> Rows:
    """``compiled`` with ``values``, sent with ``cursor``; a connection the error broke, or the
    server refusing the statement now, raises :class:`DatabaseUnavailable`.

    Each connection sends its statements with one cursor of its own, kept: a cursor keeps the
    adapters it found for each type of parameter and result, which a cursor made per statement
    would look up again (a statement costs a third less so)."""
    try:
        await cursor.execute(compiled.sql, compiled.parameters(values))
        result = cursor.pgresult
        returned = result is not None and result.status == pq.ExecStatus.TUPLES_OK
        fetched = await cursor.fetchall() if returned else []
    except psycopg.Error as error:
        _raise_outage(error, cursor.connection)
    return Rows(compiled.rows(fetched, cursor) if returned else (), cursor.rowcount)


def _raise_outage(error: psycopg.Error, connection: psycopg.AsyncConnection[Any]) -> NoReturn:
    """Raise ``error``, as :class:`DatabaseUnavailable` if it broke ``connection`` or is the
    server refusing statements now (a failover, a shutdown)."""
    if connection.closed or server_not_now(error):  # closed: broken by the error
        raise DatabaseUnavailable() from error
    raise error


class NeedsSession(BaseException):
    """A :class:`LeanUnit` was asked for what only a session does. A ``BaseException``, as
    :class:`asyncio.CancelledError` is: no ``except Exception`` in the work may take it for a
    failure of its own and carry on in a unit of work that is being given up."""


class LeanUnit(AsyncSession):
    """A unit of work that is one psycopg transaction, with no session: what :func:`execute` is
    given goes straight to the connection, as it goes under a session's; the unit's ``info`` and
    :meth:`get_bind` are its own (the engine of units of work, whose dialect is this one's), and
    it runs the actions :func:`~exchange.db.commits.after_commit` leaves it once it commits.

    Anything else a session does (``exec``, ``get``, ``add``, the ORM) reaches for the session
    under it, which it has not: :class:`NeedsSession` is raised, before any statement of the
    session's is sent (:meth:`~exchange.db.database.Database.run` begins the work again in a
    session). It is an ``AsyncSession`` for its callers' signatures, which take either."""

    def __init__(self, cursor: psycopg.AsyncCursor[Any], bind: Engine) -> None:  # no session is made
        self._cursor = cursor
        self._bind = bind
        self._info: dict[Any, Any] = {}

    # A session's attributes (the one under it, as its proxy methods read it too): none here.
    @property
    def sync_session(self) -> Session:  # type: ignore[override]
        raise NeedsSession()

    @property
    def _proxied(self) -> Session:  # type: ignore[override]
        raise NeedsSession()

    @property
    def info(self) -> dict[Any, Any]:
        return self._info

    def get_bind(self, *args: Any, **kwargs: Any) -> Engine:
        return self._bind

    async def send(self, statement: ClauseElement, values: Mapping[str, Any]) -> Rows:
        """``statement`` with ``values``, in the unit's transaction."""
        return await _sent(self._cursor, compiled_for(statement, self._bind.dialect), values)


class DirectStatements:
    """Statements that each commit on their own, and lean units of work (:meth:`unit`), on
    psycopg connections of their own, at most ``size`` at once.

    A statement that waits ``timeout`` seconds for a connection (all in use), that cannot connect,
    or whose connection breaks, raises :class:`DatabaseUnavailable` (:class:`DatabaseRefused`
    when the server refuses the credentials or the database name), as a unit of work does.
    A connection older than ``recycle`` seconds is closed instead of used, as the engine's pool
    recycles its own. ``connect_args``: what the engine's connections are opened with besides
    the URL (the server's options for the exchange's sessions), for the units of work here.
    """

    def __init__(
        self,
        url: URL,
        dialect: Dialect,
        *,
        size: int,
        timeout: float = 30,
        recycle: float = 300,
        connect_args: Mapping[str, Any] | None = None,
    ) -> None:
        arguments, options = dialect.create_connect_args(url)
        self._connect_options = {**options, **(connect_args or {})}
        self._connect_arguments = tuple(arguments)
        self._dialect = dialect
        self._size = size
        self._timeout = timeout
        self._recycle = recycle
        self._free = asyncio.Semaphore(size)
        #: Idle connections, each with its cursor (see :func:`_sent`) and the moment it was
        #: made; the last returned is taken first.
        self._idle: list[tuple[psycopg.AsyncCursor[Any], float]] = []
        self._open = True

    @property
    def size(self) -> int:
        """How many connections it may hold open at once."""
        return self._size

    async def run(self, statement: ClauseElement, values: Mapping[str, Any]) -> Rows:
        """``statement`` with ``values`` bound, committed on its own. ``statement`` is compiled
        at its first use and kept: pass statements built once (module constants), not one per
        use."""
        compiled = compiled_for(statement, self._dialect)
        async with self._held() as cursor:
            return await _sent(cursor, compiled, values)

    async def unit(self, work: Callable[[LeanUnit], Awaitable[T]], bind: Engine) -> T:
        """``work`` in one unit of work of its own, a :class:`LeanUnit` on a connection of this
        pool (``bind``: the engine of units of work, which it names as its own), committed when
        ``work`` returns, rolled back if it raises (:class:`NeedsSession` too). Raises
        :class:`DatabaseUnavailable` as a unit of work through a session does; if that happens
        at the commit, the outcome is unknown."""
        async with self._held() as cursor:
            lean = LeanUnit(cursor, bind)
            try:
                try:
                    async with cursor.connection.transaction():
                        done = await work(lean)
                except psycopg.Error as error:  # at BEGIN or COMMIT (a statement's comes mapped)
                    _raise_outage(error, cursor.connection)
            except DatabaseUnavailable:
                await cursor.connection.close()  # it may be a server's that no longer takes writes
                raise
        run_pending(lean.info)
        return done

    @asynccontextmanager
    async def _held(self) -> AsyncIterator[psycopg.AsyncCursor[Any]]:
        """A connection of the pool's (its cursor), held while the block runs."""
        if self._free.locked():  # all in use: wait, for so long (else it is taken at once)
            try:
                async with asyncio.timeout(self._timeout):
                    await self._free.acquire()
            except TimeoutError:
                raise DatabaseUnavailable() from None
        else:
            await self._free.acquire()
        try:
            cursor, made = await self._connection()
            try:
                yield cursor
            finally:
                await self._give_back(cursor, made)
        finally:
            self._free.release()

    async def _connection(self) -> tuple[psycopg.AsyncCursor[Any], float]:
        """An idle connection's cursor (or a new connection's), and when the connection was made."""
        while self._idle:
            cursor, made = self._idle.pop()
            if not closed_by_server(cursor.connection) and time.monotonic() - made < self._recycle:
                return cursor, made
            await cursor.connection.close()
        try:
            connection = await psycopg.AsyncConnection.connect(
                *self._connect_arguments, **self._connect_options, autocommit=True
            )
        except psycopg.OperationalError as error:
            raise (DatabaseRefused() if driver_refused_configuration(error) else DatabaseUnavailable()) from error
        return connection.cursor(), time.monotonic()

    async def _give_back(self, cursor: psycopg.AsyncCursor[Any], made: float) -> None:
        """Keep ``cursor``'s connection for the next read unless it broke, it is still in a
        transaction (a unit of work cancelled while it ended) or the pool is closed. (A read
        cancelled while the server answers leaves it idle: psycopg cancels the query.)"""
        connection = cursor.connection
        if self._open and not connection.closed and connection.pgconn.transaction_status == pq.TransactionStatus.IDLE:
            self._idle.append((cursor, made))
        else:
            await cursor.connection.close()

    async def close(self) -> None:
        """Close every idle connection; a read under way closes its own as it ends."""
        self._open = False
        idle, self._idle = self._idle, []
        for cursor, _ in idle:
            await cursor.connection.close()
