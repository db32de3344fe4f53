"""The database handle: one async engine and its unit-of-work sessions.

PostgreSQL runs through psycopg 3's async driver; SQLite through aiosqlite. On SQLite every
unit of work shares one connection, in turn: SQLite has one writer at a time, and queueing
for the connection is what keeps two writers from failing each other with "database is
locked".

A unit of work that meets a PostgreSQL outage or failover raises
:class:`~exchange.db.availability.DatabaseUnavailable`; connections the outage broke are
replaced (:mod:`exchange.db.availability`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

from sqlalchemy import Select, event, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.sql.elements import ClauseElement
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db import direct
from exchange.db.availability import (
    DatabaseRefused,
    DatabaseUnavailable,
    SharedQuery,
    drop_if_closed_by_server,
    is_unavailable,
    mark_connect_failures,
    refused_by_configuration,
)
from exchange.db.direct import DirectStatements
from exchange.settings import normalize_database_url

T = TypeVar("T")

#: Connections each pool keeps (and as many again it may open besides, under load).
DEFAULT_POOL_SIZE = 10


def _enable_sqlite_rules(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_engine(
    url: str,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    echo: bool = False,
    autocommit: bool = False,
    idle_in_transaction_seconds: float = 0,
) -> AsyncEngine:
    """An async engine for ``url`` with the exchange's connection rules applied; ``autocommit``:
    its connections run every statement in a transaction of its own (PostgreSQL only).

    ``idle_in_transaction_seconds`` (PostgreSQL; 0: never): the server ends a session of this
    engine that has been idle inside a transaction that long. A process that froze in the
    middle of a unit of work (paused, or cut off with no FIN) keeps its connection open and its
    locks held, and every posting queued behind the ledger's locks would wait with it, for as
    long as TCP keepalive takes to notice (hours); ended, its locks go, the others go on, and
    the frozen process, if it wakes, meets :class:`DatabaseUnavailable` (its client's
    idempotency key makes asking again safe)."""
    url = normalize_database_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=echo, pool_size=1, max_overflow=0, pool_timeout=60)
        event.listen(engine.sync_engine, "connect", _enable_sqlite_rules)
        return engine
    # No pre-ping: it costs a round trip on every checkout, and a unit of work is a handful of
    # statements. A connection the server closed while it was idle is dropped at checkout
    # instead (a poll, no round trip); one that breaks during a unit of work fails it and
    # invalidates the pool. Recycling keeps connections from outliving server-side idle limits.
    engine = create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=300,
        connect_args=_server_options(url, idle_in_transaction_seconds),
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
    )
    event.listen(engine.sync_engine.pool, "checkout", drop_if_closed_by_server)
    event.listen(engine.sync_engine, "handle_error", mark_connect_failures)
    return engine


def _server_options(url: str, idle_in_transaction_seconds: float) -> dict[str, str]:
    """libpq's ``options`` for the exchange's sessions, after any the URL gives."""
    if not idle_in_transaction_seconds:
        return {}
    given = make_url(url).query.get("options")
    ours = f"-c idle_in_transaction_session_timeout={round(idle_in_transaction_seconds * 1000)}"
    return {"options": f"{given} {ours}" if isinstance(given, str) else ours}


@contextmanager
def _unavailable_on_outage() -> Iterator[None]:
    """Turns an outage met inside the block (the server gone or refusing writes, or no pooled
    connection free in time) into :class:`DatabaseUnavailable`, and credentials or a database
    name the server refuses into :class:`DatabaseRefused`; other errors pass unchanged."""
    try:
        yield
    except DBAPIError as error:
        if refused_by_configuration(error):
            raise DatabaseRefused() from error
        if is_unavailable(error):
            raise DatabaseUnavailable() from error
        raise
    except PoolTimeout as error:
        raise DatabaseUnavailable() from error


class NestedUnitOfWork(RuntimeError):
    """A unit of work opened inside another by the same task, on SQLite's one connection: a
    programming error (it would wait for itself)."""

    def __init__(self) -> None:
        super().__init__(
            "a unit of work was opened inside another one by the same task; on SQLite they share one "
            "connection, so it would wait for itself: read what it needs before the outer one, or inside it"
        )


class Database:
    """Owns the engine; hands out one session per unit of work.

    Statements that commit on their own (:meth:`autocommit`) run on connections kept in that
    mode: on PostgreSQL a pool of their own (switching a connection's mode on every checkout
    costs about what BEGIN and COMMIT do); on SQLite the one connection, switched, since a
    second one would write beside it. On PostgreSQL, reads of one statement and lone writes
    (:meth:`read`, :meth:`write`) have psycopg connections of their own besides (:attr:`direct`).
    """

    def __init__(
        self, engine: AsyncEngine, autocommit_engine: AsyncEngine | None = None, direct: DirectStatements | None = None
    ) -> None:
        self.engine = engine
        self._autocommit_engine = autocommit_engine
        #: Where :meth:`read` and :meth:`write` send their statements on PostgreSQL.
        self.direct = direct
        self._ping = SharedQuery(self._select_one)
        self._connection_holder: asyncio.Task[Any] | None = None
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine.pool, "checkout", self._taken)
            event.listen(engine.sync_engine.pool, "checkin", self._given_back)
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False, autoflush=False)
        self._autocommit_sessions = async_sessionmaker(
            autocommit_engine or engine.execution_options(isolation_level="AUTOCOMMIT"),
            class_=AsyncSession,
            expire_on_commit=False,
            autoflush=False,
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Database:
        engine = create_engine(url, **options)
        if engine.dialect.name != "postgresql":
            return cls(engine)
        size = options.get("pool_size", DEFAULT_POOL_SIZE)
        server = _server_options(normalize_database_url(url), options.get("idle_in_transaction_seconds", 0))
        return cls(
            engine,
            create_engine(url, **options, autocommit=True),
            DirectStatements(engine.url, engine.dialect, size=size, connect_args=server),
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def most_connections(self) -> int:
        """How many connections this process's pools may hold open at once, both of them on
        PostgreSQL: what the server's ``max_connections`` must allow for each gateway worker
        (deploy/k8s/README.md, "Database connections")."""
        pools = [engine.sync_engine.pool for engine in self.engines]
        pooled = sum(pool.size() + pool._max_overflow for pool in pools)  # type: ignore[attr-defined]  # QueuePool's
        return pooled + (self.direct.size if self.direct is not None else 0)

    @property
    def engines(self) -> list[AsyncEngine]:
        """The engines this handle sends statements through: the one of units of work, and on
        PostgreSQL the one of statements that commit on their own (:meth:`autocommit`)."""
        return [engine for engine in (self.engine, self._autocommit_engine) if engine is not None]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits when the block ends, rolls back if it raises.

        Raises :class:`DatabaseUnavailable` when the server is gone or refuses writes, or
        when no pooled connection came free in time (while a failover makes connecting slow,
        requests queue for the pool). If that happens at the commit, the outcome is unknown
        (it may have committed): the client's idempotency key is what makes asking again safe.
        """
        self._refuse_nesting()
        with _unavailable_on_outage():
            async with self._sessions() as session, session.begin():
                yield session

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """``work`` in one unit of work, as in :meth:`transaction`: committed when it returns,
        rolled back if it raises; what it returns.

        On PostgreSQL the work runs first as a lean unit, with no session: one psycopg
        transaction on a connection of :attr:`direct`'s (:meth:`DirectStatements.unit`), for
        work whose statements all go through :func:`direct.execute` (the hot paths of the sagas
        and the ledger: a unit costs about half the CPU so). If the work asks for anything else
        of a session (:class:`direct.NeedsSession`), that transaction is rolled back and the work
        is begun again in a session. So ``work`` must be safe to begin again: nothing it does
        outside the database may happen before it commits (:func:`~exchange.db.commits.after_commit`
        is for that), and what it changes of the objects it is given it sets again."""
        if self.direct is not None:
            try:
                return await self.direct.unit(work, self.engine.sync_engine)
            except direct.NeedsSession:
                pass  # begun again below, in a session
        async with self.transaction() as session:
            return await work(session)

    async def ping(self, *, within: float) -> None:
        """Raises unless the database answers a trivial query within ``within`` seconds
        (readiness probes): :class:`DatabaseUnavailable` during an outage, a failover, or a hang
        that keeps connections open but answers nothing (one query at a time: :class:`SharedQuery`)."""
        try:
            await self._ping.within(within)
        except TimeoutError:
            raise DatabaseUnavailable() from None

    async def _select_one(self) -> None:
        async with self.transaction() as session:
            await session.exec(text("SELECT 1"))  # type: ignore[call-overload]

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncSession]:
        """A session whose every statement commits on its own, without BEGIN and COMMIT (two
        round trips fewer): for a read of one statement, or one write that needs no other
        statement's company (nothing before it must be read in the same snapshot). Raises
        :class:`DatabaseUnavailable` as :meth:`transaction` does."""
        self._refuse_nesting()
        with _unavailable_on_outage():
            async with self._autocommit_sessions() as session:
                yield session

    async def read(
        self, statement: Select[*tuple[Any, ...]], values: Mapping[str, Any], session: AsyncSession | None = None
    ) -> Sequence[Sequence[Any]]:
        """The rows of ``statement`` with ``values`` bound; an ORM entity selected comes as its
        columns, in the table's order. Inside a unit of work, through its ``session``
        (:func:`direct.execute`); else one statement committed on its own as in
        :meth:`autocommit`, on PostgreSQL straight through psycopg (:mod:`exchange.db.direct`):
        for the reads every request sends, at a third of the CPU a session costs."""
        if session is not None:
            return (await direct.execute(session, statement, values)).rows
        if self.direct is not None:
            return (await self.direct.run(statement, values)).rows
        async with self.autocommit() as own:
            return (await direct.execute(own, statement, values)).rows

    async def write(self, statement: ClauseElement, values: Mapping[str, Any]) -> None:
        """One write committed on its own, as in :meth:`autocommit` (it needs no other
        statement's company), with ``values`` bound: on PostgreSQL straight through psycopg, as
        :meth:`read` sends its reads. ``statement`` is built once and names every column it
        writes (no default is filled in for it)."""
        if self.direct is not None:
            await self.direct.run(statement, values)
            return
        async with self.autocommit() as own:
            await direct.execute(own, statement, values)

    def _refuse_nesting(self) -> None:
        """On SQLite, whose units of work take the one connection in turn, a task that opens a
        unit of work while the connection is its own (an outer unit of work has sent a
        statement) would wait for itself until the pool gives up (a minute), and be refused as
        the database unavailable: that mistake fails at once instead, naming itself. Another
        task waits its turn, as it should."""
        if self._connection_holder is not None and self._connection_holder is asyncio.current_task():
            raise NestedUnitOfWork()

    def _taken(self, *_: Any) -> None:
        self._connection_holder = asyncio.current_task()

    def _given_back(self, *_: Any) -> None:
        self._connection_holder = None

    async def dispose(self) -> None:
        self._ping.cancel()
        if self.direct is not None:
            await self.direct.close()
        await self.engine.dispose()
        if self._autocommit_engine is not None:
            await self._autocommit_engine.dispose()
