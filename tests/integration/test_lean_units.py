"""Units of work run by ``Database.run``: on PostgreSQL lean (one psycopg transaction, no
session) while the work sends only what ``direct.execute`` sends, begun again in a session when
it asks for more; on SQLite in a session. What commits, what is undone, and what a fault leaves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import Table, func, insert, select, text
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db import direct
from exchange.db.availability import DatabaseUnavailable
from exchange.db.commits import after_commit
from exchange.db.database import Database
from exchange.members.models import Member

MEMBERS: Table = Member.__table__  # type: ignore[attr-defined]
MADE = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
ADD_MEMBER = insert(MEMBERS)
MEMBER_IDS = select(MEMBERS.c.id).order_by(MEMBERS.c.id)
BACKEND = select(func.pg_backend_pid())
#: Sessions of the database's that are inside a transaction, other than the asker's.
IN_TRANSACTION = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND state LIKE 'idle in transaction%'"
)


def member(ref: str) -> dict[str, object]:
    return {"id": ref, "created_at": MADE, "activity": 0, "tier_activity": 0}


async def member_ids(db: Database) -> list[str]:
    return [row[0] for row in await db.read(MEMBER_IDS, {})]


async def backend(session: AsyncSession) -> int:
    """The server process behind the unit of work's connection."""
    return int((await direct.execute(session, BACKEND)).one()[0])


async def test_a_unit_commits_what_it_sent_then_runs_its_after_commit_actions_once(db: Database) -> None:
    given: list[AsyncSession] = []
    done: list[str] = []

    async def work(session: AsyncSession) -> str:
        given.append(session)
        await direct.execute(session, ADD_MEMBER, member("mbr_a"))
        after_commit(session, lambda: done.append("committed"))
        assert done == []  # not before the commit
        return "mbr_a"

    assert await db.run(work) == "mbr_a"
    assert await member_ids(db) == ["mbr_a"] and done == ["committed"]
    # Lean on PostgreSQL; on SQLite, whose units of work share one connection, a session's.
    assert [type(session) for session in given] == [direct.LeanUnit if db.dialect == "postgresql" else AsyncSession]


async def test_a_unit_that_raises_is_undone_and_its_after_commit_actions_dropped(db: Database) -> None:
    done: list[str] = []

    async def work(session: AsyncSession) -> None:
        await direct.execute(session, ADD_MEMBER, member("mbr_a"))
        after_commit(session, lambda: done.append("committed"))
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        await db.run(work)
    assert await member_ids(db) == [] and done == []
    await db.run(lambda session: direct.execute(session, ADD_MEMBER, member("mbr_a")))  # the key is free
    assert await member_ids(db) == ["mbr_a"]


async def test_work_that_asks_for_a_session_is_begun_again_in_one_with_what_it_sent_lean_undone(
    pg_db: Database,
) -> None:
    """The lean attempt's insert is rolled back before the session's, or the key would be taken
    twice; its after-commit action goes with it. The request for a session is no error the
    work can take for its own (an ``except Exception`` lets it through)."""
    given: list[type[AsyncSession]] = []
    done: list[str] = []

    async def work(session: AsyncSession) -> list[str]:
        given.append(type(session))
        await direct.execute(session, ADD_MEMBER, member("mbr_a"))
        after_commit(session, lambda: done.append(type(session).__name__))
        try:
            return list((await session.exec(MEMBER_IDS)).all())  # type: ignore[call-overload]
        except Exception:  # what a careless caller writes
            return ["taken for the work's own error"]

    assert await pg_db.run(work) == [("mbr_a",)]
    assert given == [direct.LeanUnit, AsyncSession]
    assert done == ["AsyncSession"]
    assert await member_ids(pg_db) == ["mbr_a"]


async def fails_undone_and_its_connection_replaced(
    db: Database, steps: Callable[[AsyncSession, int], Awaitable[None]]
) -> None:
    """A lean unit of ``steps`` (given the unit's server process) raises ``DatabaseUnavailable``,
    commits nothing, and the next unit runs on another server process: its connection was not
    kept."""
    backends: list[int] = []

    async def work(session: AsyncSession) -> None:
        backends.append(await backend(session))
        await steps(session, backends[0])

    with pytest.raises(DatabaseUnavailable):
        await db.run(work)
    assert await member_ids(db) == []
    assert await db.run(backend) != backends[0]


async def test_a_lean_unit_whose_connection_breaks_is_service_unavailable_undone_and_its_connection_not_used_again(
    pg_db: Database,
) -> None:
    async def steps(session: AsyncSession, server: int) -> None:
        async def terminate_soon() -> None:
            await asyncio.sleep(0.3)
            await pg_db.read(select(func.pg_terminate_backend(server)), {})

        terminating = asyncio.ensure_future(terminate_soon())
        try:
            await direct.execute(session, ADD_MEMBER, member("mbr_a"))
            await direct.execute(session, text("SELECT pg_sleep(5)"))
        finally:
            await terminating

    await fails_undone_and_its_connection_replaced(pg_db, steps)


async def test_a_lean_unit_whose_connection_is_lost_before_its_commit_is_service_unavailable_and_undone(
    pg_db: Database,
) -> None:
    """The connection goes after the work's last statement: COMMIT is what fails (the outcome
    unknown to the caller, as any unit's lost at its commit), nothing was committed, and the
    connection is not used again."""

    async def steps(session: AsyncSession, server: int) -> None:
        await direct.execute(session, ADD_MEMBER, member("mbr_a"))
        await pg_db.read(select(func.pg_terminate_backend(server)), {})  # from another connection

    await fails_undone_and_its_connection_replaced(pg_db, steps)


async def test_a_lean_unit_refused_by_a_server_that_takes_no_writes_now_is_service_unavailable_and_its_connection_closed(
    pg_db: Database,
) -> None:
    """As after a failover, a connection to a server that became a standby: it is not kept."""

    async def steps(session: AsyncSession, _server: int) -> None:
        await direct.execute(session, text("SET TRANSACTION READ ONLY"))
        await direct.execute(session, ADD_MEMBER, member("mbr_a"))

    await fails_undone_and_its_connection_replaced(pg_db, steps)


async def test_a_lean_unit_cancelled_while_the_server_answers_is_undone_and_leaves_no_connection_in_a_transaction(
    pg_db: Database,
) -> None:
    async def work(session: AsyncSession) -> None:
        await direct.execute(session, ADD_MEMBER, member("mbr_a"))
        await direct.execute(session, text("SELECT pg_sleep(2)"))

    running = asyncio.ensure_future(pg_db.run(work))
    await asyncio.sleep(0.3)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert await member_ids(pg_db) == []
    assert (await pg_db.read(IN_TRANSACTION, {}))[0][0] == 0
    await asyncio.wait_for(pg_db.run(lambda session: direct.execute(session, ADD_MEMBER, member("mbr_a"))), 2)
    assert await member_ids(pg_db) == ["mbr_a"]


async def test_a_lean_unit_holds_its_row_locks_until_it_commits(pg_db: Database) -> None:
    """Two units updating one row take turns: the second sees the first's change, not its own
    snapshot's value."""
    await pg_db.write(ADD_MEMBER, member("mbr_a"))
    bump = text("UPDATE member SET activity = activity + 1 WHERE id = 'mbr_a' RETURNING activity")
    first_holds = asyncio.Event()

    async def first(session: AsyncSession) -> int:
        moved = int((await direct.execute(session, bump)).one()[0])
        first_holds.set()
        await asyncio.sleep(0.3)
        return moved

    async def second(session: AsyncSession) -> int:
        return int((await direct.execute(session, bump)).one()[0])

    running = asyncio.ensure_future(pg_db.run(first))
    await first_holds.wait()
    assert (await pg_db.run(second), await running) == (2, 1)
