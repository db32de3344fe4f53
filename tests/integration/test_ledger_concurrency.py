"""Concurrent postings on PostgreSQL: no interleaving, no double post, no broken chain."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import text

from exchange.db.database import Database
from exchange.ledger.posting import Ledger
from exchange.ledger.verify import verify_ledger
from exchange.testing.clock import FrozenClock
from tests.integration.test_ledger import payment

TAIPEI = ZoneInfo("Asia/Taipei")

POSTER = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo
    from exchange.db.database import Database
    from exchange.ledger.posting import Ledger
    from exchange.testing.clock import FrozenClock
    from tests.integration.test_ledger import payment

    async def main(url: str, prefix: str, count: int) -> None:
        db = Database.from_url(url)
        ledger = Ledger(timezone=ZoneInfo("Asia/Taipei"), clock=FrozenClock(datetime.now(UTC)))
        for index in range(count):
            async with db.transaction() as session:
                await ledger.post(session, payment(f"{prefix}-{index}", 1000 + index))
        await db.dispose()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


def ledger() -> Ledger:
    return Ledger(timezone=TAIPEI, clock=FrozenClock(datetime(2026, 11, 20, tzinfo=UTC)))


async def test_the_same_id_posted_twenty_times_at_once_lands_once(pg_db: Database) -> None:
    async def post_once() -> tuple[int, bool]:
        async with pg_db.transaction() as session:
            result = await ledger().post(session, payment("same"))
        return result.seq, result.replayed

    results = await asyncio.gather(*(post_once() for _ in range(20)))
    assert {seq for seq, _ in results} == {1}
    assert sorted(replayed for _, replayed in results) == [False] + [True] * 19
    async with pg_db.transaction() as session:
        assert (await session.exec(text("SELECT count(*) FROM ledger_transaction"))).scalar_one() == 1


async def test_a_second_posting_of_an_id_waits_for_the_first_and_replays_it(pg_db: Database) -> None:
    """Deterministic interleaving: B arrives while A holds the chain head, uncommitted."""
    a_posted = asyncio.Event()
    commit_a = asyncio.Event()

    async def posting_a() -> None:
        async with pg_db.transaction() as session:
            await ledger().post(session, payment("raced"))
            a_posted.set()
            await commit_a.wait()

    async def posting_b() -> bool:
        await a_posted.wait()
        async with pg_db.transaction() as session:
            return (await ledger().post(session, payment("raced"))).replayed

    task_a, task_b = asyncio.create_task(posting_a()), asyncio.create_task(posting_b())
    await a_posted.wait()
    for _ in range(1000):
        # One transaction a look: pg_stat_activity is a snapshot kept for the transaction.
        async with pg_db.transaction() as session:
            waiting = (
                await session.exec(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )
                )
            ).scalar_one()
        if waiting:
            break
        await asyncio.sleep(0.01)
    assert waiting == 1, "B should be queued behind A's lock on the chain head"
    assert not task_b.done()
    commit_a.set()
    await task_a
    assert await task_b is True


async def test_parallel_processes_and_connections_keep_one_unbroken_chain(
    pg_db: Database, pg_database_url: str
) -> None:
    processes = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", POSTER, pg_database_url, f"process{n}", "60")
        for n in range(2)
    ]

    async def connection(n: int) -> None:
        for index in range(30):
            async with pg_db.transaction() as session:
                await ledger().post(session, payment(f"conn{n}-{index}", 1000 + index))

    await asyncio.gather(*(connection(n) for n in range(4)))
    assert [await process.wait() for process in processes] == [0, 0]
    async with pg_db.transaction() as session:
        report = await verify_ledger(session)
        legs = (await session.exec(text("SELECT count(DISTINCT transaction_seq), count(*) FROM ledger_entry"))).one()
    assert report.ok, report.problem
    assert report.transactions == 2 * 60 + 4 * 30
    assert tuple(legs) == (240, 720)
