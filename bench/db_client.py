"""What one statement costs the gateway's process in CPU, by the way it reaches PostgreSQL.

The conversion benchmark finds the database client to be the largest part of the gateway's
CPU per conversion. This measures the client alone, on one primary-key read of one row: as the
exchange sends it (a unit of work from ``Database``: a session, its pooled connection, the
ORM-enabled statement; or the same unit of work sending it straight to psycopg, as
``direct.execute`` sends the sagas' and the ledger's statements), as SQLAlchemy Core sends it on a pooled connection in autocommit mode, as
``Database.read`` sends it (compiled by SQLAlchemy once, sent by psycopg on a connection of its
small pool), and as psycopg sends it on an open connection. Only this process's CPU is counted (``time.process_time``),
not the server's; ``--concurrency`` tasks share the event loop, as a worker's requests do.
Rounds are interleaved; medians are printed, with the ratio to psycopg alone.

    .venv/bin/python bench/db_client.py [--statements 4000] [--concurrency 8] [--rounds 5]

Uses a throwaway PostgreSQL cluster from the local binaries.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import psycopg
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, select

from exchange.db import direct
from exchange.db.database import Database, create_engine
from exchange.testing.postgres import ThrowawayCluster

ROWS = 1000
METADATA = MetaData()
ITEM = Table("item", METADATA, Column("id", Integer, primary_key=True), Column("name", String(20)))
READ = select(ITEM.c.name).where(ITEM.c.id == bindparam("id"))
READ_SQL = "SELECT item.name FROM item WHERE item.id = %(id)s::INTEGER"

Way = Callable[[int], Awaitable[object]]


async def cpu_per_call(way: Way, calls: int, concurrency: int) -> float:
    """Microseconds of this process's CPU per call of ``way``, ``concurrency`` at a time."""
    per_task = calls // concurrency

    async def task(offset: int) -> None:
        for number in range(per_task):
            await way((offset + number) % ROWS)

    started = time.process_time()
    await asyncio.gather(*(task(index * per_task) for index in range(concurrency)))
    return (time.process_time() - started) * 1e6 / (per_task * concurrency)


async def main(arguments: argparse.Namespace) -> None:
    cluster = ThrowawayCluster.start()
    db = Database.from_url(cluster.url)
    autocommit_engine = create_engine(cluster.url, autocommit=True)
    connections: list[psycopg.AsyncConnection[object]] = []
    try:
        async with db.transaction() as session:
            await (await session.connection()).run_sync(METADATA.create_all)
            await session.exec(insert(ITEM), params=[{"id": n, "name": f"item {n}"} for n in range(ROWS)])
        connections = [
            await psycopg.AsyncConnection.connect(cluster.url, autocommit=True) for _ in range(arguments.concurrency)
        ]
        idle: asyncio.Queue[psycopg.AsyncConnection[object]] = asyncio.Queue()
        for connection in connections:
            idle.put_nowait(connection)

        async def autocommit_session(row: int) -> object:
            async with db.autocommit() as session:
                return (await session.exec(READ, params={"id": row})).one()  # type: ignore[call-overload]

        async def unit_of_work(row: int) -> object:
            async with db.transaction() as session:
                return (await session.exec(READ, params={"id": row})).one()  # type: ignore[call-overload]

        async def unit_of_work_direct(row: int) -> object:
            async with db.transaction() as session:
                return (await direct.execute(session, READ, {"id": row})).one()

        async def core_connection(row: int) -> object:
            async with autocommit_engine.connect() as connection:
                return (await connection.execute(READ, {"id": row})).one()

        async def direct_read(row: int) -> object:
            (read,) = await db.read(READ, {"id": row})
            return read

        async def psycopg_alone(row: int) -> object:
            connection = await idle.get()
            try:
                return await (await connection.execute(READ_SQL, {"id": row})).fetchone()
            finally:
                idle.put_nowait(connection)

        ways: dict[str, Way] = {
            "Database.transaction(), session.exec": unit_of_work,
            "Database.transaction(), direct.execute": unit_of_work_direct,
            "Database.autocommit(), session.exec": autocommit_session,
            "pooled autocommit connection, Core": core_connection,
            "Database.read (psycopg, own pool)": direct_read,
            "psycopg alone, open connection": psycopg_alone,
        }
        figures: dict[str, list[float]] = {label: [] for label in ways}
        for way in ways.values():  # warm: connections made, statements prepared
            await cpu_per_call(way, 400, arguments.concurrency)
        for _ in range(arguments.rounds):
            for label, way in ways.items():
                figures[label].append(await cpu_per_call(way, arguments.statements, arguments.concurrency))
    finally:
        for connection in connections:
            await connection.close()
        await db.dispose()
        await autocommit_engine.dispose()
        cluster.stop()

    print(
        f"database client benchmark: a one-row read by primary key, {arguments.statements} per round, "
        f"{arguments.concurrency} at a time, {arguments.rounds} rounds (medians of this process's CPU)"
    )
    floor = statistics.median(figures["psycopg alone, open connection"])
    for label, rounds in figures.items():
        median = statistics.median(rounds)
        print(
            f"  {label:40s} {median:7.0f} µs   x {median / floor:4.1f}   (rounds: {', '.join(f'{r:.0f}' for r in rounds)})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--statements", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
