"""Database connections killed mid-unit-of-work, as an operator's ``pg_terminate_backend`` or a
failover kills them (PostgreSQL only): the unit of work fails at its next statement; and the
coalition point's own writes losing the database."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import Clock
from exchange.coalition.connector import CoalitionConnector
from exchange.connectors.connector import Call
from exchange.connectors.contract import Operation
from exchange.db import direct
from exchange.db.availability import DatabaseUnavailable
from exchange.db.commits import after_commit
from exchange.db.database import Database
from exchange.ledger.posting import Ledger, PostedTransaction, TransactionRequest

#: The server process behind a unit of work's connection.
_BACKEND = text("SELECT pg_backend_pid()")


async def kill_connection_of(session: AsyncSession, db: Database) -> None:
    """Terminate the server process behind ``session`` (a lean unit of work's too) from another
    connection of ``db``."""
    pid = (await direct.execute(session, _BACKEND)).one()[0]
    async with db.autocommit() as other:
        await other.exec(text("SELECT pg_terminate_backend(:pid)"), params={"pid": pid})  # type: ignore[call-overload]


class KilledPosting(Ledger):
    """A ledger whose postings' connections are killed while they hold the posting's unit of
    work (the rows it locked, the chain head). A unit of work that can be lean is
    (:meth:`Database.run`); ``in_session``: the posting asks it for a session first, as a
    posting that opens an account does, so that the one killed is a session's."""

    def __init__(
        self,
        killer: Database,
        clock: Clock,
        timezone: ZoneInfo,
        *,
        kills: int,
        after: int = 0,
        in_session: bool = False,
    ) -> None:
        """Kill the connections of ``kills`` postings, after ``after`` postings that go through."""
        super().__init__(timezone=timezone, clock=clock)
        self.killer = killer
        self.kills = kills
        self.after = after
        self.in_session = in_session

    async def post_many(self, session: AsyncSession, requests: Sequence[TransactionRequest]) -> list[PostedTransaction]:
        if self.in_session:
            session.in_transaction()  # a lean unit of work has none to ask: it is begun again in a session
        if self.after:
            # Counted once it commits: a lean unit of work begun again in a session posts twice.
            after_commit(session, self._went_through)
        elif self.kills:
            self.kills -= 1
            await kill_connection_of(session, self.killer)
        return await super().post_many(session, requests)

    def _went_through(self) -> None:
        self.after -= 1


class FrozenPosting(Ledger):
    """A ledger whose first posting freezes once it has posted (a process paused, a network cut
    with no FIN), holding its unit of work's locks until ``wake`` is set."""

    def __init__(self, clock: Clock, timezone: ZoneInfo) -> None:
        super().__init__(timezone=timezone, clock=clock)
        self.frozen = asyncio.Event()
        self.wake = asyncio.Event()

    async def post_many(self, session: AsyncSession, requests: Sequence[TransactionRequest]) -> list[PostedTransaction]:
        posted = await super().post_many(session, requests)
        if not self.frozen.is_set():
            self.frozen.set()
            await self.wake.wait()
        return posted


def cut_next_point_write(
    monkeypatch: pytest.MonkeyPatch, point: CoalitionConnector, db: Database, *, committed: bool
) -> None:
    """Make the coalition point's next write lose the database: its connection killed before
    the lots' unit of work commits (nothing applied), or, if ``committed``, the lots committed
    and the answer lost with the database (``DatabaseUnavailable`` after the commit)."""
    write = point._write

    async def loses_the_database(call: Call, operation_id: str, change: Any) -> Operation:
        monkeypatch.setattr(point, "_write", write)  # once
        if committed:
            await write(call, operation_id, change)
            raise DatabaseUnavailable

        async def then_cut(session: AsyncSession) -> Any:
            recorded = await change(session)
            await kill_connection_of(session, db)
            return recorded

        return await write(call, operation_id, then_cut)

    monkeypatch.setattr(point, "_write", loses_the_database)
