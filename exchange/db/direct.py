"""Reads of one statement sent straight to psycopg (PostgreSQL), past SQLAlchemy's execution.

Through SQLAlchemy's async engine a statement costs about half a millisecond of CPU more than
psycopg's own execution of it: the pool's checkout and return and the execution each switch
greenlets, and the execution context, the result and, for ORM entities, the instances are built
in Python. For the statement every request sends (a token's standing) that was the largest part
of the request's own work. :class:`DirectReads` runs such reads for a third of that.

A statement is still a SQLAlchemy expression: it is compiled once for PostgreSQL, and its
parameters and columns go through their types' processing as SQLAlchemy's execution would put
them through it, so a read gives here the values it gives there. Each read commits on its own
(no BEGIN, no COMMIT), as :meth:`~exchange.db.database.Database.autocommit` does: a read of one
statement needs no transaction around it.

The connections are psycopg's own, in autocommit mode, pooled here. The pool connects when a
read needs a connection and none is idle, so an outage is met at once, as the engine's pool
meets it (:class:`~exchange.db.availability.DatabaseUnavailable`), rather than waited out while
a pool refills in the background (``psycopg_pool``'s way); an idle connection the server closed
is dropped as it is taken (:func:`~exchange.db.availability.closed_by_server`), as the engine's
pool drops it, so reads after a failover do not fail on connections to the old primary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from sqlalchemy import URL, Select, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine
from sqlmodel import SQLModel

from exchange.db.availability import (
    DatabaseRefused,
    DatabaseUnavailable,
    closed_by_server,
    driver_refused_configuration,
    server_not_now,
)

Processor = Callable[[Any], Any]
#: How many compiled statements a pool keeps; the statements read this way are a handful.
_COMPILED_KEPT = 64
M = TypeVar("M", bound=SQLModel)


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
class CompiledRead:
    """A select compiled for a dialect, with what SQLAlchemy's execution would do around it."""

    sql: str
    dialect: Dialect
    #: Values the statement binds itself (literals in the expression), by parameter name.
    literals: Mapping[str, Any]
    #: The processing of each parameter's type (``process_bind_param``), where it has one.
    binds: Mapping[str, Processor]
    #: Each column's type, in column order.
    types: tuple[TypeEngine[Any], ...]
    #: The processing of each column's type (``process_result_value``), once a first result has
    #: said which type the server sends for each (SQLAlchemy's processing of some depends on it).
    readers: tuple[Processor | None, ...] | None = None

    @classmethod
    def of(cls, statement: Select[Any], dialect: Dialect) -> CompiledRead:
        compiled = statement.compile(dialect=dialect)
        binds = {
            name: processor
            for name, parameter in compiled.binds.items()
            if (processor := parameter.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }
        literals = {
            name: parameter.effective_value for name, parameter in compiled.binds.items() if not parameter.required
        }
        types = tuple(column.type for column in statement.selected_columns)
        return cls(str(compiled), dialect, literals, binds, types)

    def parameters(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The statement's parameters with ``values`` bound, each processed by its type."""
        bound = {**self.literals, **values}
        return {name: self.binds[name](value) if name in self.binds else value for name, value in bound.items()}

    def rows(self, fetched: Sequence[Sequence[Any]], description: Sequence[psycopg.Column]) -> list[tuple[Any, ...]]:
        """The rows as the driver returned them (with the result's ``description``), each
        column processed by its type."""
        if self.readers is None:
            self.readers = tuple(
                kind.dialect_impl(self.dialect).result_processor(self.dialect, column.type_code)
                for kind, column in zip(self.types, description, strict=True)
            )
        readers = self.readers
        return [
            tuple(value if read is None else read(value) for read, value in zip(readers, row, strict=True))
            for row in fetched
        ]


class DirectReads:
    """Reads of one statement each on psycopg connections of their own, at most ``size`` at once.

    A read that waits ``timeout`` seconds for a connection (all in use), that cannot connect,
    or whose connection breaks, raises :class:`DatabaseUnavailable` (:class:`DatabaseRefused`
    when the server refuses the credentials or the database name), as a unit of work does.
    A connection older than ``recycle`` seconds is closed instead of used, as the engine's pool
    recycles its own.
    """

    def __init__(self, url: URL, dialect: Dialect, *, size: int, timeout: float = 30, recycle: float = 300) -> None:
        arguments, self._connect_options = dialect.create_connect_args(url)
        self._connect_arguments = tuple(arguments)
        self._dialect = dialect
        self._size = size
        self._timeout = timeout
        self._recycle = recycle
        self._free = asyncio.Semaphore(size)
        #: Idle connections, each with the moment it was made; the last returned is taken first.
        self._idle: list[tuple[psycopg.AsyncConnection[Any], float]] = []
        self._compiled: dict[Select[Any], CompiledRead] = {}
        self._open = True

    @property
    def size(self) -> int:
        """How many connections it may hold open at once."""
        return self._size

    async def rows(self, statement: Select[Any], values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Every row ``statement`` reads with ``values`` bound. ``statement`` is compiled at its
        first read and kept: pass statements built once (module constants), not one per read."""
        compiled = self._compiled.get(statement)
        if compiled is None:
            if len(self._compiled) >= _COMPILED_KEPT:  # statements built per read: they are not kept
                self._compiled.clear()
            compiled = self._compiled[statement] = CompiledRead.of(statement, self._dialect)
        parameters = compiled.parameters(values)
        try:
            async with asyncio.timeout(self._timeout):
                await self._free.acquire()
        except TimeoutError:
            raise DatabaseUnavailable() from None
        try:
            connection, made = await self._connection()
            try:
                cursor = await connection.execute(compiled.sql, parameters)
                fetched = await cursor.fetchall()
                description = cursor.description or []
            except psycopg.Error as error:
                if connection.closed or server_not_now(error):  # closed: broken by the error
                    raise DatabaseUnavailable() from error
                raise
            finally:
                await self._give_back(connection, made)
        finally:
            self._free.release()
        return compiled.rows(fetched, description)

    async def _connection(self) -> tuple[psycopg.AsyncConnection[Any], float]:
        while self._idle:
            connection, made = self._idle.pop()
            if not closed_by_server(connection) and time.monotonic() - made < self._recycle:
                return connection, made
            await connection.close()
        try:
            connection = await psycopg.AsyncConnection.connect(
                *self._connect_arguments, **self._connect_options, autocommit=True
            )
        except psycopg.OperationalError as error:
            raise (DatabaseRefused() if driver_refused_configuration(error) else DatabaseUnavailable()) from error
        return connection, time.monotonic()

    async def _give_back(self, connection: psycopg.AsyncConnection[Any], made: float) -> None:
        """Keep ``connection`` for the next read unless it broke or the pool is closed. (A read
        cancelled while the server answers leaves it idle: psycopg cancels the query.)"""
        if self._open and not connection.closed:
            self._idle.append((connection, made))
        else:
            await connection.close()

    async def close(self) -> None:
        """Close every idle connection; a read under way closes its own as it ends."""
        self._open = False
        idle, self._idle = self._idle, []
        for connection, _ in idle:
            await connection.close()
