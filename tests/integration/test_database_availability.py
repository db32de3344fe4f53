"""A unit of work that meets a database outage says so (``DatabaseUnavailable``), and the
connections the outage broke are replaced before anyone uses them again."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
import pytest
from sqlalchemy import bindparam, literal_column, select, text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import create_async_engine

from exchange.app import create_app
from exchange.cli import CommandFailed, load_settings
from exchange.db import direct, migrate
from exchange.db.availability import DatabaseRefused, DatabaseUnavailable
from exchange.db.database import Database, NestedUnitOfWork
from exchange.errors import ConfigurationError, ErrorCode
from exchange.jobs import PeriodicJob
from exchange.serving import free_port
from exchange.settings import Settings, normalize_database_url
from exchange.testing.databases import SqliteDatabases
from exchange.testing.postgres import ThrowawayCluster
from tests.integration.test_cli import run


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
    """On the connections of units of work through a session and of lean ones alike."""
    db = Database.from_url(f"{pg_database_url}?options=-c%20statement_timeout%3D5000", idle_in_transaction_seconds=2)
    settings = text(
        "SELECT current_setting('idle_in_transaction_session_timeout'), current_setting('statement_timeout')"
    )
    try:
        async with db.transaction() as session:
            shown = (await session.exec(settings)).one()  # type: ignore[call-overload]
        lean = (await db.run(lambda unit: direct.execute(unit, settings))).one()
    finally:
        await db.dispose()
    assert (tuple(shown), tuple(lean)) == (("2s", "5s"), ("2s", "5s"))


async def idle_in_transaction_limit(url: str, seconds: float) -> str:
    """The idle-in-transaction limit a session of an engine made with ``seconds`` runs under."""
    db = Database.from_url(url, idle_in_transaction_seconds=seconds)
    try:
        async with db.transaction() as session:
            query = text("SELECT current_setting('idle_in_transaction_session_timeout')")
            return str((await session.exec(query)).one()[0])  # type: ignore[call-overload]
    finally:
        await db.dispose()


async def test_every_idle_in_transaction_limit_the_setting_takes_is_one_postgresql_takes(
    pg_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A limit past PostgreSQL's (2**31 - 1 ms) was taken, and then every connection was refused,
    reported as an outage."""
    monkeypatch.setenv("EXCHANGE_DATABASE_IDLE_IN_TRANSACTION_SECONDS", "2147484")
    with pytest.raises(
        CommandFailed,
        match=r"^EXCHANGE_DATABASE_IDLE_IN_TRANSACTION_SECONDS: Input should be less than or equal to 2147483$",
    ):
        load_settings()
    monkeypatch.setenv("EXCHANGE_DATABASE_IDLE_IN_TRANSACTION_SECONDS", "2147483")
    seconds = load_settings().database_idle_in_transaction_seconds
    assert await idle_in_transaction_limit(pg_database_url, seconds) == "2147483s"


@pytest.fixture
def password_url(own_postgres_cluster: ThrowawayCluster) -> str:
    """The own cluster's database for a role that signs in with the password ``right``."""
    return own_postgres_cluster.add_password_role("guarded", "right")


def refused_urls(password_url: str) -> list[str]:
    """The URL with a wrong password, with a role the server does not know, and naming a database
    that does not exist."""
    return [
        password_url.replace(":right@", ":wrong-password@"),
        password_url.replace("guarded:right@", "stranger:wrong-password@"),
        password_url.removesuffix("/postgres") + "/no_such_database",
    ]


async def test_credentials_the_database_refuses_are_a_configuration_error_not_an_outage(password_url: str) -> None:
    right = Database.from_url(password_url)
    try:
        await right.ping(within=10)  # the right password works
    finally:
        await right.dispose()
    for url in refused_urls(password_url):
        db = Database.from_url(url)
        try:
            with pytest.raises(DatabaseRefused) as refused:
                async with db.transaction() as session:
                    await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
            with pytest.raises(DatabaseRefused):
                await db.ping(within=10)
            with pytest.raises(DatabaseRefused):  # a read straight through psycopg (Database.read) too
                await db.read(select(literal_column("1")), {})
        finally:
            await db.dispose()
        assert refused.value.code is ErrorCode.SERVICE_UNAVAILABLE
        assert refused.value.message.startswith("the database refused the credentials in EXCHANGE_DATABASE_URL")
        assert "try again" not in refused.value.message and "wrong-password" not in refused.value.message


def jobs_log(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "exchange.jobs"]


async def test_a_background_job_logs_refused_credentials_as_an_error(
    password_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database.from_url(password_url.replace(":right@", ":wrong-password@"))
    job = PeriodicJob("probe", 3600, lambda: db.ping(within=10))
    task = asyncio.create_task(job.run_forever())
    try:
        while not jobs_log(caplog):
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await db.dispose()
    [record] = jobs_log(caplog)
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("background job probe: the database refused the credentials")


def test_the_gateway_and_the_cli_refuse_to_start_on_credentials_the_database_refuses(password_url: str) -> None:
    for url in refused_urls(password_url):
        with pytest.raises(ConfigurationError) as refused:
            migrate.ensure_migrated(url)  # the gateway's start-up check
        assert "the database refused the credentials (or the database name) in EXCHANGE_DATABASE_URL" in str(
            refused.value
        )
        assert "wrong-password" not in str(refused.value) and "server is up" not in str(refused.value)
        for command in (("ledger", "verify"), ("db", "upgrade")):  # a command on the database, and the one making it
            result = run(*command, env={"EXCHANGE_DATABASE_URL": url})
            assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
            assert "refused the credentials (or the database name) in EXCHANGE_DATABASE_URL" in result.stderr
            assert "wrong-password" not in result.stderr


async def test_readiness_says_the_database_refused_the_credentials_and_logs_an_error(
    password_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(database_url=password_url.replace(":right@", ":wrong-password@")))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            ready = await client.get("/readyz")
    finally:
        await app.state.services.aclose()
    assert ready.status_code == 503 and "retry-after" not in ready.headers
    [error] = ready.json()["errors"]
    assert error["message"] == DatabaseRefused.reason and "wrong-password" not in ready.text
    assert any(
        record.levelno == logging.ERROR and "the database refused the credentials" in record.getMessage()
        for record in caplog.records
    )


async def test_a_unit_of_work_opened_inside_another_on_sqlite_fails_at_once_and_another_task_waits_its_turn(
    sqlite_databases: SqliteDatabases,
) -> None:
    """SQLite's units of work share one connection: a task that opens one while its outer one
    holds the connection used to wait for itself a minute and be refused as an outage."""
    db = Database.from_url(sqlite_databases.create())
    order: list[str] = []

    async def other_task() -> None:
        async with db.autocommit() as session:
            await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        order.append("other task")

    try:
        async with db.transaction() as outer:
            async with db.autocommit() as before_the_outer_one_reads:  # no connection taken yet: allowed
                await before_the_outer_one_reads.exec(text("SELECT 1"))  # type: ignore[call-overload]
            await outer.exec(text("SELECT 1"))  # type: ignore[call-overload]
            waiting = asyncio.create_task(other_task())
            await asyncio.sleep(0.05)
            assert not waiting.done()  # it waits for the connection the outer unit of work holds
            with pytest.raises(NestedUnitOfWork, match="would wait for itself"):
                async with asyncio.timeout(5), db.transaction():
                    pass
            order.append("outer")
        await waiting
    finally:
        await db.dispose()
    assert order == ["outer", "other task"]
