"""A unit of work that meets a database outage says so (``DatabaseUnavailable``), and the
connections the outage broke are replaced before anyone uses them again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import bindparam, text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import create_async_engine

from exchange.db.availability import DatabaseUnavailable
from exchange.db.database import Database
from exchange.errors import ErrorCode
from exchange.serving import free_port
from exchange.settings import normalize_database_url
from exchange.testing.postgres import ThrowawayCluster


@pytest.fixture
async def outage_db(own_postgres_cluster: ThrowawayCluster) -> AsyncIterator[Database]:
    database = Database.from_url(own_postgres_cluster.url)
    try:
        yield database
    finally:
        await database.dispose()


async def backend_pids(db: Database, units: int = 4) -> set[int]:
    """Run ``units`` units of work at once (so the pool holds that many connections); the
    server processes that served them."""

    async def one() -> int:
        async with db.transaction() as session:
            pid = (await session.exec(text("SELECT pg_backend_pid()"))).one()[0]  # type: ignore[call-overload]
            await asyncio.sleep(0.05)
            return int(pid)

    return set(await asyncio.gather(*(one() for _ in range(units))))


async def test_no_server_to_reach_is_service_unavailable() -> None:
    db = Database.from_url(f"postgresql://postgres@127.0.0.1:{free_port()},127.0.0.1:{free_port()}/exchange")
    try:
        with pytest.raises(DatabaseUnavailable) as refused:
            async with db.transaction() as session:
                await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    finally:
        await db.dispose()
    assert refused.value.code is ErrorCode.SERVICE_UNAVAILABLE
    assert "idempotency key" in refused.value.message


async def test_an_outage_is_service_unavailable_and_no_unit_of_work_fails_once_the_server_is_back(
    own_postgres_cluster: ThrowawayCluster, outage_db: Database
) -> None:
    before = await backend_pids(outage_db)
    own_postgres_cluster.halt()
    own_postgres_cluster.resume()
    # Nobody asked during that outage: the pool still holds connections to the halted server,
    # and none of them fails a unit of work.
    after = await backend_pids(outage_db)
    assert not before & after

    own_postgres_cluster.halt()
    with pytest.raises(DatabaseUnavailable):
        await backend_pids(outage_db, units=1)
    own_postgres_cluster.resume()
    assert await backend_pids(outage_db)


async def test_connections_the_server_closed_while_idle_are_replaced(outage_db: Database) -> None:
    before = await backend_pids(outage_db)
    async with Database.from_url(
        str(outage_db.engine.url.render_as_string(hide_password=False))
    ).transaction() as admin:
        await admin.exec(
            text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid").bindparams(
                pids=sorted(before)
            )
        )  # type: ignore[call-overload]
    await asyncio.sleep(0.2)
    after = await backend_pids(outage_db)
    assert not before & after


async def test_waiting_too_long_for_a_pooled_connection_is_service_unavailable(pg_database_url: str) -> None:
    url = normalize_database_url(pg_database_url)
    db = Database(create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.1))
    try:
        async with db.transaction() as holding:
            await holding.exec(text("SELECT 1"))  # type: ignore[call-overload]
            with pytest.raises(DatabaseUnavailable):
                async with db.transaction() as waiting:
                    await waiting.exec(text("SELECT 1"))  # type: ignore[call-overload]
    finally:
        await db.dispose()


async def test_a_write_a_standby_refuses_is_service_unavailable(pg_db: Database) -> None:
    with pytest.raises(DatabaseUnavailable):
        async with pg_db.transaction() as session:
            await session.exec(text("SET TRANSACTION READ ONLY"))  # type: ignore[call-overload]
            await session.exec(text("UPDATE alembic_version SET version_num = version_num"))  # type: ignore[call-overload]


async def test_a_statement_that_is_wrong_stays_an_unexpected_error(pg_db: Database) -> None:
    with pytest.raises(ProgrammingError):
        async with pg_db.transaction() as session:
            await session.exec(text("SELECT no_such_column FROM alembic_version"))  # type: ignore[call-overload]


async def test_a_statement_the_driver_refuses_to_send_stays_an_unexpected_error(pg_db: Database) -> None:
    """More parameters than one statement may carry: libpq refuses it before sending, with no
    SQLSTATE, on a connection that stays sound. A fault of the statement, not an outage."""
    too_many = text("SELECT 1 WHERE 0 IN :ids").bindparams(bindparam("ids", expanding=True))
    with pytest.raises(OperationalError) as refused:
        async with pg_db.transaction() as session:
            await session.exec(too_many, params={"ids": list(range(70_000))})  # type: ignore[call-overload]
    assert refused.value.orig.sqlstate is None  # type: ignore[union-attr]  # the case an outage has too
    async with pg_db.transaction() as session:  # and the database serves the next unit of work
        assert (await session.exec(text("SELECT 1"))).one()[0] == 1  # type: ignore[call-overload]


async def test_the_idle_in_transaction_limit_is_set_beside_the_server_options_the_url_gives(
    pg_database_url: str,
) -> None:
    db = Database.from_url(f"{pg_database_url}?options=-c%20statement_timeout%3D5000", idle_in_transaction_seconds=2)
    try:
        async with db.transaction() as session:
            shown = (
                await session.exec(  # type: ignore[call-overload]
                    text(
                        "SELECT current_setting('idle_in_transaction_session_timeout'), current_setting('statement_timeout')"
                    )
                )
            ).one()
    finally:
        await db.dispose()
    assert tuple(shown) == ("2s", "5s")
