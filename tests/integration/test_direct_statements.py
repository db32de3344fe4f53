"""Statements sent straight to the driver: inside a unit of work (``direct.execute``), and alone,
committed on their own (``Database.write``), on both dialects; on PostgreSQL past SQLAlchemy's
execution, with what it would do around them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import Table, bindparam, func, insert, select, text, update

from exchange.db import direct
from exchange.db.availability import DatabaseUnavailable
from exchange.db.database import Database
from exchange.members.models import Member
from tests.reads import statements_of

MEMBERS: Table = Member.__table__  # type: ignore[attr-defined]
MADE = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
#: A member written whole, as the sagas write their rows: built once, every column bound.
ADD_MEMBER = insert(MEMBERS)
#: The activity of two members named in the expression (an IN of literal values) moved by one.
MOVE_TWO = (
    update(MEMBERS)
    .where(MEMBERS.c.id.in_(("mbr_a", "mbr_b")), MEMBERS.c.activity == bindparam("was"))
    .values(activity=MEMBERS.c.activity + 1)
    .returning(MEMBERS.c.id, MEMBERS.c.activity)
)
MEMBER_IDS = select(MEMBERS.c.id).order_by(MEMBERS.c.id)


def member(ref: str, activity: int = 0) -> dict[str, object]:
    return {"id": ref, "created_at": MADE, "activity": activity, "tier_activity": 0}


async def member_ids(db: Database) -> list[str]:
    return [row[0] for row in await db.read(MEMBER_IDS, {})]


async def test_a_statement_sent_straight_is_part_of_the_unit_of_work(db: Database) -> None:
    async with db.transaction() as session:
        await direct.execute(session, ADD_MEMBER, member("mbr_a"))
        # The session's own statements see it: one transaction, one connection.
        assert (await session.exec(MEMBER_IDS)).all() == [("mbr_a",)]  # type: ignore[call-overload]
    with pytest.raises(RuntimeError, match="changed my mind"):
        async with db.transaction() as session:
            await direct.execute(session, ADD_MEMBER, member("mbr_b"))
            raise RuntimeError("changed my mind")
    assert await member_ids(db) == ["mbr_a"]  # rolled back with its unit of work


async def test_rows_read_by_name_and_by_position_and_the_rows_changed(db: Database) -> None:
    async with db.transaction() as session:
        for ref, activity in (("mbr_a", 4), ("mbr_b", 4), ("mbr_c", 4)):
            await direct.execute(session, ADD_MEMBER, member(ref, activity))
    async with db.transaction() as session:
        moved = await direct.execute(session, MOVE_TWO, {"was": 4})
        again = await direct.execute(session, MOVE_TWO, {"was": 4})
    assert sorted((row.id, row.activity) for row in moved) == [("mbr_a", 5), ("mbr_b", 5)]
    assert sorted(moved.scalars()) == ["mbr_a", "mbr_b"] and moved.rowcount == 2
    assert again.first() is None and again.rowcount == 0
    with pytest.raises(ValueError, match="expected one row, got 2"):
        moved.one()


async def test_a_write_commits_on_its_own(db: Database) -> None:
    await db.write(ADD_MEMBER, member("mbr_a"))
    assert await member_ids(db) == ["mbr_a"]


async def test_a_list_bound_at_each_execution_is_refused_naming_the_way_to_bind_it(pg_db: Database) -> None:
    """Its SQL would have to be rendered again for each length: the statement binds an array."""
    statement = select(MEMBERS.c.id).where(MEMBERS.c.id.in_(bindparam("ids", expanding=True)))
    async with pg_db.transaction() as session:
        with pytest.raises(ValueError, match=r"bind an array \(= ANY\) instead"):
            await direct.execute(session, statement, {"ids": ["mbr_a"]})


async def test_a_connection_broken_in_a_unit_of_work_is_service_unavailable_and_the_next_gets_another(
    pg_db: Database,
) -> None:
    async def backend() -> int:
        async with pg_db.transaction() as session:
            return int((await direct.execute(session, select(func.pg_backend_pid()))).one()[0])

    broken = await backend()

    async def terminate_soon() -> None:
        await asyncio.sleep(0.3)
        await pg_db.read(select(func.pg_terminate_backend(broken)), {})

    terminating = asyncio.ensure_future(terminate_soon())
    with pytest.raises(DatabaseUnavailable):
        async with pg_db.transaction() as session:
            assert int((await direct.execute(session, select(func.pg_backend_pid()))).one()[0]) == broken
            await direct.execute(session, text("SELECT pg_sleep(5)"))
    await terminating
    assert await backend() != broken


async def test_the_statements_a_test_counts_include_those_sent_straight(db: Database) -> None:
    with statements_of(db) as sent:
        async with db.transaction() as session:
            await direct.execute(session, ADD_MEMBER, member("mbr_a"))
        await db.write(ADD_MEMBER, member("mbr_b"))
    assert [statement.split(" (")[0] for statement, _ in sent] == ["INSERT INTO member"] * 2
    # By name on PostgreSQL, by position on SQLite (as SQLAlchemy sends them there).
    assert [("mbr_a" in str(values), "mbr_b" in str(values)) for _, values in sent] == [(True, False), (False, True)]
