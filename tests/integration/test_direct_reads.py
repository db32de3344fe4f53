"""Reads of one statement (``Database.read``): what a session would read, straight through psycopg
on PostgreSQL, with outages met as a unit of work meets them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy import Numeric, bindparam, cast, func, literal_column, select, text
from sqlmodel import col

from exchange.db.availability import DatabaseUnavailable
from exchange.db.database import Database
from exchange.db.direct import DirectStatements, loaded
from exchange.members.models import Member
from exchange.testing.postgres import ThrowawayCluster

TAIPEI = timezone(timedelta(hours=8))
#: Members made at or after ``since``, but one: bound values, literals, and a column of each type.
MEMBERS_SINCE = (
    select(Member, literal_column("'made'"), cast(bindparam("price", type_=Numeric(12, 2)), Numeric(12, 2)))
    .where(col(Member.created_at) >= bindparam("since"), col(Member.id) != "mbr_left_out")
    .order_by(col(Member.id))
)


async def backend_pid(db: Database) -> int:
    (row,) = await db.read(select(func.pg_backend_pid()), {})
    return int(row[0])


async def test_a_read_gives_the_rows_a_session_reads(db: Database) -> None:
    made = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    async with db.transaction() as session:
        for number, ref in enumerate(("mbr_a", "mbr_b", "mbr_left_out")):
            session.add(Member(id=ref, created_at=made + timedelta(minutes=number), activity=number, tier_activity=7))
    async with db.transaction() as session:
        expected = [
            (member.id, member.created_at, member.activity, member.tier_activity)
            for member, *_ in (
                await session.exec(MEMBERS_SINCE, params={"since": made, "price": Decimal("12.5")})  # type: ignore[call-overload]
            ).all()
        ]

    # The time bound is processed as the column's type processes it: any zone, compared in UTC.
    rows = await db.read(MEMBERS_SINCE, {"since": made.astimezone(TAIPEI), "price": Decimal("12.5")})

    assert [tuple(row) for row in rows] == [(*member, "made", Decimal("12.50")) for member in expected]
    assert all(isinstance(row[-1], Decimal) for row in rows)  # money stays exact
    members = [loaded(Member, row[:-2]) for row in rows]
    assert [(m.id, m.created_at, m.activity, m.tier_activity) for m in members] == expected
    assert all(member.created_at.tzinfo is UTC for member in members)  # read back as aware UTC
    assert members[0].markers.balances == 0 and members[1].markers.tiers == 7


async def test_a_connection_is_used_again_and_one_the_server_closed_is_replaced(pg_db: Database) -> None:
    first = await backend_pid(pg_db)
    assert await backend_pid(pg_db) == first  # pooled, not made anew per read
    async with pg_db.transaction() as admin:
        await admin.exec(text("SELECT pg_terminate_backend(:pid)").bindparams(pid=first))  # type: ignore[call-overload]
    await asyncio.sleep(0.2)
    assert await backend_pid(pg_db) != first  # no read fails on the closed connection


async def test_an_outage_is_service_unavailable_and_reads_go_on_once_the_server_is_back(
    own_postgres_cluster: ThrowawayCluster, outage_db: Database
) -> None:
    before = await backend_pid(outage_db)
    own_postgres_cluster.halt()
    try:
        with pytest.raises(DatabaseUnavailable):
            await backend_pid(outage_db)
    finally:
        own_postgres_cluster.resume()
    assert await backend_pid(outage_db) != before


async def test_waiting_too_long_for_a_connection_is_service_unavailable(pg_db: Database) -> None:
    reads = DirectStatements(pg_db.engine.url, pg_db.engine.dialect, size=1, timeout=0.2)
    try:
        holding = asyncio.ensure_future(reads.run(select(func.pg_sleep(1)), {}))
        await asyncio.sleep(0.1)
        with pytest.raises(DatabaseUnavailable):
            await reads.run(select(func.pg_backend_pid()), {})
        await holding
        assert (await reads.run(select(literal_column("1")), {})).rows == [(1,)]
    finally:
        await reads.close()


async def test_a_read_cancelled_while_the_server_answers_leaves_no_busy_connection(pg_db: Database) -> None:
    assert pg_db.direct is not None
    slow = asyncio.ensure_future(pg_db.read(select(func.pg_sleep(2), literal_column("'slow'")), {}))
    await asyncio.sleep(0.2)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    # The next read answers at once, with its own row, not the cancelled one's.
    assert [tuple(row) for row in await asyncio.wait_for(pg_db.read(select(literal_column("'next'")), {}), 1)] == [
        ("next",)
    ]


async def test_a_statement_that_is_wrong_stays_an_unexpected_error_and_the_connection_serves_on(
    pg_db: Database,
) -> None:
    pid = await backend_pid(pg_db)
    with pytest.raises(psycopg.errors.DivisionByZero):
        await pg_db.read(select(literal_column("1 / 0")), {})
    assert await backend_pid(pg_db) == pid


async def test_a_connection_that_breaks_during_a_read_is_service_unavailable_and_replaced(pg_db: Database) -> None:
    reading = asyncio.ensure_future(pg_db.read(select(func.pg_backend_pid(), func.pg_sleep(5)), {}))
    await asyncio.sleep(0.3)
    async with pg_db.transaction() as admin:
        terminated = await admin.exec(  # type: ignore[call-overload]
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()"
            )
        )
        assert terminated.all() == [(True,)]
    with pytest.raises(DatabaseUnavailable):
        await asyncio.wait_for(reading, 5)
    assert await backend_pid(pg_db) > 0  # the next read gets a connection of its own
