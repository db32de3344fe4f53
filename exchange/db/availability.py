"""When PostgreSQL cannot take the exchange's work: an outage, or a failover under way.

While a primary dies and its standby is promoted (see ``deploy/postgresql-failover.md``),
connections break and new ones find no server that accepts writes. Those failures are not
bugs: :func:`is_unavailable` tells them apart from every other database error by the state
of the connection (broken, or never made: :func:`mark_connect_failures`), not by the error
alone, so that a statement the driver refuses to send (too many parameters, say) on a sound
connection stays the bug it is. The unit of work turns outages into :class:`DatabaseUnavailable` (``SERVICE_UNAVAILABLE`` for the client,
503 over plain HTTP), and the client asks again once a primary accepts writes.

A server that answers but refuses the exchange's credentials, or has no database by the name
configured (:func:`refused_by_configuration`), is no outage: waiting does not help, an operator
must correct ``EXCHANGE_DATABASE_URL``. The unit of work raises :class:`DatabaseRefused` for it
(still 503 for a client, but saying so), the gateway refuses to start on it, and the jobs log it
as the error it is.

Pooled connections the failover broke are dropped as they are taken from the pool
(:func:`drop_if_closed_by_server`), so the first requests after a failover do not fail on
connections to the dead server.
"""

from __future__ import annotations

import asyncio
import re
import select
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import psycopg
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry

from exchange.errors import ErrorCode, ExchangeError

#: Server answers that mean "not now" rather than "wrong": admin shutdown, crash shutdown,
#: starting up or shutting down, and a write sent to a server that is (now) a standby.
_NOT_NOW_STATES = frozenset({"57P01", "57P02", "57P03", "25006"})
#: Server answers that mean "this configuration is wrong": a password refused (28P01), a role or
#: client address the server does not let in (28000), a database that does not exist (3D000).
_REFUSED_STATES = frozenset({"28P01", "28000", "3D000"})
#: The same refusals as the server words them when a connection is being made, where psycopg
#: gives no SQLSTATE (see :func:`refused_by_configuration`).
_REFUSED_MESSAGE = re.compile(
    r"password authentication failed|no pg_hba\.conf entry|role \".*\" does not exist"
    r"|database \".*\" does not exist|no password supplied"
)
T = TypeVar("T")

#: Marks, in a pooled connection's ``info``, that it has been handed out before.
_USED = "exchange.used"


class DatabaseUnavailable(ExchangeError):
    """The database cannot be reached, or accepts no writes, for now."""

    code = ErrorCode.SERVICE_UNAVAILABLE
    reason = (
        "the exchange's database is not accepting work right now (a failover may be under way): "
        "try again in a few seconds; a write sent again with the same idempotency key is applied "
        "at most once"
    )

    def __init__(self) -> None:
        super().__init__(self.reason)


class DatabaseRefused(DatabaseUnavailable):
    """The database server answers but refuses the exchange's credentials, or has no database by
    the configured name: an operator must correct ``EXCHANGE_DATABASE_URL``; asking again will
    not help until then."""

    reason = (
        "the database refused the credentials in EXCHANGE_DATABASE_URL (or has no database by the "
        "name it gives): an operator must correct the setting; asking again will not help until then"
    )


def refused_by_configuration(error: DBAPIError) -> bool:
    """Whether the server refused the credentials or the database name ``error`` was met with
    (:class:`DatabaseRefused`), as opposed to being unreachable or failing a statement.

    By the error's SQLSTATE (28P01, 28000, 3D000) wherever psycopg gives one. Only where it
    cannot, the server's message is read (:data:`_REFUSED_MESSAGE`): a connection that fails
    while it is being made (the server refuses it during authentication or start-up) is a
    ``psycopg.OperationalError`` with ``sqlstate`` ``None``, since libpq keeps no error result
    of a connection it could not make, only its message (checked with psycopg 3.3 and libpq
    18: a wrong password, an unknown role and an unknown database all arrive so). That message
    is in the server's ``lc_messages``, English by default; a server set to another language
    makes such a refusal read as an outage."""
    return driver_refused_configuration(error.orig)


def driver_refused_configuration(cause: BaseException | None) -> bool:
    """:func:`refused_by_configuration` for psycopg's own error ``cause``."""
    if not isinstance(cause, psycopg.Error):
        return False
    if cause.sqlstate is not None:
        return cause.sqlstate in _REFUSED_STATES
    return isinstance(cause, psycopg.OperationalError) and _REFUSED_MESSAGE.search(str(cause)) is not None


def is_unavailable(error: DBAPIError) -> bool:
    """Whether ``error`` says the server is gone or refuses writes, as opposed to a fault of
    the statement (a constraint, a deadlock, a bug, one the driver would not send), which
    stays an unexpected error."""
    # The connection broke (psycopg found it closed or broken), or none could be made.
    return error.connection_invalidated or server_not_now(error.orig)


def server_not_now(cause: BaseException | None) -> bool:
    """Whether psycopg's error ``cause``, met on a connection still sound, is the server's "not
    now" (a connection exception, a shutdown, a standby refusing a write), not the statement's
    fault."""
    if not isinstance(cause, psycopg.Error) or cause.sqlstate is None:
        # Raised by libpq on a connection still sound: the statement's fault, not the server's.
        return False
    return cause.sqlstate.startswith("08") or cause.sqlstate in _NOT_NOW_STATES  # 08: connection exception


def mark_connect_failures(context: ExceptionContext) -> None:
    """Engine ``handle_error`` hook: an ``OperationalError`` met while connecting (refused,
    timed out, no host accepts writes, a name that does not resolve) invalidates as a broken
    connection does, so that :func:`is_unavailable` reads both as an outage. SQLAlchemy asks
    psycopg about the connection's state, and with no connection yet it has none to ask."""
    if context.connection is None and isinstance(context.original_exception, psycopg.OperationalError):
        context.is_disconnect = True


def drop_if_closed_by_server(_dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
    """Pool ``checkout`` hook: refuse a pooled connection whose server has closed it.

    An idle connection has nothing to read; if its socket is readable, the server has hung
    up (killed, shut down, failed over) or sent its last words before doing so. Raising
    :class:`DisconnectionError` makes the pool discard it and connect anew, so a request
    after a failover does not fail on a connection to the old primary. This costs one
    ``poll`` system call, where a pre-ping would cost a round trip to the server on every
    unit of work. A connection on its first checkout is not looked at: it was just made,
    and the pool gives up if the connection that replaces a dropped one is dropped too.
    """
    if not record.info.get(_USED):
        record.info[_USED] = True  # the pool clears ``info`` when it connects anew
        return
    if closed_by_server(record.driver_connection):  # type: ignore[arg-type]  # checked out: connected
        raise DisconnectionError("the server closed this idle connection")


def closed_by_server(connection: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the server has closed idle ``connection`` (or it is closed already): its socket
    is readable with nothing asked. One ``poll`` system call, no round trip."""
    try:
        socket = connection.pgconn.socket
    except psycopg.OperationalError:
        return True
    poller = select.poll()
    poller.register(socket, select.POLLIN)
    return bool(poller.poll(0))


class SharedQuery(Generic[T]):
    """A read of the database that callers wait for at most so long (a readiness probe, a
    scrape's figures), one at a time.

    When a caller's time is up the read is left running rather than cancelled: cancelling a
    query the server does not answer (a hang that keeps connections open) blocks psycopg for
    ten seconds while it tries to cancel it on the server. Callers that come meanwhile wait for
    that same read instead of starting one each, so a hang holds one connection, not one per
    caller."""

    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self._read = read
        self._running: asyncio.Future[T] | None = None

    async def within(self, seconds: float) -> T:
        """The read's result; :class:`TimeoutError` after ``seconds``; the read's own error."""
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._read())
            self._running.add_done_callback(_retrieve)
        async with asyncio.timeout(seconds):
            return await asyncio.shield(self._running)

    def cancel(self) -> None:
        """Stop a read still running (when its engine is disposed of)."""
        if self._running is not None:
            self._running.cancel()


def _retrieve(read: asyncio.Future[Any]) -> None:
    """Mark a read's failure as seen: the callers that waited for it may have given up."""
    if not read.cancelled():
        read.exception()
