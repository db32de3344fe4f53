"""Postings spread over shards, closes anchor them, periods migrate and detach: verify still
proves every chain, and names whatever was changed behind the ledger's back."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from joserfc.jwk import RSAKey
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db import migrate
from exchange.db.database import Database
from exchange.errors import IdempotencyConflict
from exchange.ledger.errors import AlreadyReversed
from exchange.ledger.partitions import ensure_partitions
from exchange.ledger.periods import start_closing
from exchange.ledger.posting import ENTRY_COLUMNS, TRANSACTION_COLUMNS, Ledger, PostedTransaction, _post_one
from exchange.ledger.verify import verify_ledger
from exchange.money import Currency
from exchange.settlement.archive import archive_period
from exchange.settlement.closing import close_period
from exchange.settlement.errors import ArchiveDropped, NotArchivable, PeriodArchived
from exchange.settlement.issued import Signer
from exchange.settlement.statements import statement_lines
from exchange.testing.clock import FrozenClock
from exchange.testing.databases import SqliteDatabases
from tests.integration.test_ledger import NOON, balances, payment

TAIPEI = ZoneInfo("Asia/Taipei")
DECEMBER = datetime(2026, 12, 10, 4, 0, tzinfo=UTC)
AFTER_NOVEMBER = datetime(2026, 12, 2, tzinfo=UTC)
TWD = Currency("TWD", 2)
LOCK_WAITERS = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
T = TypeVar("T")


@pytest.fixture
def signer() -> Signer:
    """What archiving signs the statements not issued yet with."""
    return Signer("http://exchange.test", sharded().calendar, TWD, RSAKey.generate_key(2048, parameters={"kid": "k1"}))


def sharded(shards: int = 4, at: datetime = NOON) -> Ledger:
    return Ledger(timezone=TAIPEI, clock=FrozenClock(at), shards=shards)


async def post(db: Database, ledger: Ledger, ids: list[str], *, at: datetime = NOON) -> None:
    for index, transaction_id in enumerate(ids):
        async with db.transaction() as session:
            await ledger.post(session, payment(transaction_id, 1000 + index, at=at))


async def chains(db: Database) -> dict[int, list[int]]:
    """Each shard's seqs in November, in chain order."""
    async with db.transaction() as session:
        rows = (await session.exec(text("SELECT shard, seq FROM ledger_transaction ORDER BY shard, seq"))).all()  # type: ignore[call-overload]
    found: dict[int, list[int]] = {}
    for shard, seq in rows:
        found.setdefault(shard, []).append(seq)
    return found


async def problem_of(db: Database) -> str:
    async with db.transaction() as session:
        verification = await verify_ledger(session)
    assert verification.problem is not None
    return str(verification.problem)


async def behind_the_ledgers_back(db: Database, *statements: str) -> None:
    """Run ``statements`` in one unit of work with the ledger's triggers out of the way: its
    guards, and what moves heads and balances (someone rewriting rows would not want them)."""
    async with db.transaction() as session:
        if db.dialect == "postgresql":
            for table in ("ledger_entry", "ledger_transaction"):
                await session.exec(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))  # type: ignore[call-overload]
        else:
            for table in ("ledger_entry", "ledger_transaction"):
                for trigger in ("no_update", "no_delete", "moves_head", "moves_balances"):
                    await session.exec(text(f"DROP TRIGGER IF EXISTS {table}_{trigger}"))  # type: ignore[call-overload]
        for statement in statements:
            await session.exec(text(statement))  # type: ignore[call-overload]


def deleting(seq: int) -> list[str]:
    return [
        f"DELETE FROM ledger_entry WHERE transaction_seq = {seq}",
        f"DELETE FROM ledger_transaction WHERE seq = {seq}",
    ]


def renumbering(from_seq: int, to_seq: int) -> list[str]:
    """Give transaction ``from_seq`` the number ``to_seq``: a copy, its legs moved, the original gone."""
    columns = "period, shard, id, kind, reference, effective_at, posted_at, reverses, request_hash, prev_hash, hash"
    return [
        f"INSERT INTO ledger_transaction (seq, {columns}) SELECT {to_seq}, {columns} FROM ledger_transaction"
        f" WHERE seq = {from_seq}",
        f"UPDATE ledger_entry SET transaction_seq = {to_seq} WHERE transaction_seq = {from_seq}",
        f"DELETE FROM ledger_transaction WHERE seq = {from_seq}",
    ]


@pytest.fixture
async def spread(db: Database) -> dict[int, list[int]]:
    """Twelve payments over four shards; the test picks the busiest shard's chain."""
    await post(db, sharded(), [f"t{index}" for index in range(12)])
    found = await chains(db)
    assert len(found) >= 2 and max(len(seqs) for seqs in found.values()) >= 3
    return found


def busiest(found: dict[int, list[int]]) -> tuple[int, list[int]]:
    return max(found.items(), key=lambda item: len(item[1]))


async def test_postings_spread_over_shards_and_verify(db: Database, spread: dict[int, list[int]]) -> None:
    async with db.transaction() as session:
        verification = await verify_ledger(session)
    assert verification.ok, verification.problem
    assert (verification.transactions, verification.chains) == (12, len(spread))
    assert (await balances(db))["exchange-fees"] == sum((1000 + index) // 50 for index in range(12))


@pytest.mark.parametrize("change", ["deleted", "altered", "moved", "last deleted", "reordered"])
async def test_verify_catches_tampering_in_any_shard(db: Database, spread: dict[int, list[int]], change: str) -> None:
    shard, seqs = busiest(spread)
    other = next(s for s in spread if s != shard)
    first, second, last = seqs[0], seqs[1], seqs[-1]
    statements, reason, seq = {
        "deleted": (deleting(first), "does not link to the transaction before it", second),
        "altered": (
            [f"UPDATE ledger_entry SET amount = -amount WHERE transaction_seq = {second}"],
            "its content does not match its hash",
            second,
        ),
        "moved": (
            [
                f"UPDATE ledger_transaction SET shard = {other} WHERE seq = {second}",
                f"UPDATE ledger_entry SET shard = {other} WHERE transaction_seq = {second}",
            ],
            "does not link to the transaction before it",
            None,
        ),
        "last deleted": (deleting(last), f"the chain of shard {shard} in 2026-11 ends at seq", None),
        # The first two change places: their numbers are swapped, through a free one.
        "reordered": (
            [*renumbering(first, 0), *renumbering(second, first), *renumbering(0, second)],
            "does not link to the transaction before it",
            first,
        ),
    }[change]
    await behind_the_ledgers_back(db, *statements)
    problem = await problem_of(db)
    assert reason in problem
    if seq is not None:
        assert f"(seq {seq})" in problem


async def test_a_closed_periods_anchor_catches_a_chain_cut_back_with_its_head(db: Database) -> None:
    """Delete a chain's last transaction and move its head back to the one before: the chain
    is consistent again, but the period's close anchor recorded the head as it was."""
    ledger = sharded(1)
    await post(db, ledger, ["a", "b", "c"])
    async with db.transaction() as session:
        await start_closing(session, ledger.calendar, "2026-11", by="staff", now=AFTER_NOVEMBER)
    [seqs] = (await chains(db)).values()
    await behind_the_ledgers_back(db, *deleting(seqs[-1]))
    async with db.transaction() as session:
        await session.exec(
            text(  # type: ignore[call-overload]
                "UPDATE ledger_chain_head SET seq = t.seq, hash = t.hash, transactions = 2"
                " FROM (SELECT seq, hash FROM ledger_transaction WHERE seq = :seq) t"
            ),
            params={"seq": seqs[1]},
        )
    assert "the close anchor of 2026-11 records heads" in await problem_of(db)


async def test_the_migration_keeps_a_populated_ledger_and_its_chain(database_url: str) -> None:
    """Posted, one period closed, taken back to the single-chain tables of 0013 and up again:
    every row, balance and hash survives, the closed period is anchored, posting goes on."""
    db = Database.from_url(database_url)
    ledger = sharded(1)
    try:
        await post(db, ledger, ["n1", "n2", "n3"])
        async with db.transaction() as session:
            await start_closing(session, ledger.calendar, "2026-11", by="staff", now=AFTER_NOVEMBER)
        await post(db, sharded(1, DECEMBER), ["d1", "d2"], at=DECEMBER)
        before = await balances(db)
        config = migrate.alembic_config(database_url)
        await asyncio.to_thread(command.downgrade, config, "0013")
        async with db.transaction() as session:
            single = (await session.exec(text("SELECT seq, last_closed FROM ledger_chain_head"))).one()  # type: ignore[call-overload]
        assert tuple(single) == (5, "2026-11")
        await asyncio.to_thread(command.upgrade, config, "head")
        assert await balances(db) == before
        await post(db, sharded(4, DECEMBER), ["d3", "d4", "d5"], at=DECEMBER)
        async with db.transaction() as session:
            verification = await verify_ledger(session)
            anchored = (await session.exec(text("SELECT period FROM ledger_close_anchor"))).scalars().all()  # type: ignore[call-overload]
            if db.dialect == "postgresql":
                own = await session.exec(text("SELECT to_regclass('ledger_transaction_2026_11') IS NOT NULL"))  # type: ignore[call-overload]
                assert own.scalar_one()
        assert verification.ok, verification.problem
        assert verification.transactions == 8 and anchored == ["2026-11"]
    finally:
        await db.dispose()


@pytest.mark.postgres_only
async def test_writers_posting_at_once_keep_balances_and_every_chain(pg_db: Database) -> None:
    """Eight writers, each its own connection, post at once over four shards."""
    ledger = sharded(4)

    async def writer(name: str) -> None:
        await post(pg_db, ledger, [f"{name}-{index}" for index in range(15)])

    await asyncio.gather(*(writer(f"w{number}") for number in range(8)))
    async with pg_db.transaction() as session:
        verification = await verify_ledger(session)
        per_shard = Counter(
            dict((await session.exec(text("SELECT shard, count(*) FROM ledger_transaction GROUP BY shard"))).all())  # type: ignore[call-overload]
        )
    assert verification.ok, verification.problem
    assert verification.transactions == 120 and len(per_shard) > 1
    fees = 8 * sum((1000 + index) // 50 for index in range(15))
    assert await balances(pg_db) == {
        "partner-clearing:wallet-pay": -8 * sum(1000 + index for index in range(15)),
        "partner-clearing:fresh-mart": 8 * sum(1000 + index for index in range(15)) - fees,
        "exchange-fees": fees,
    }


@pytest.mark.postgres_only
async def test_a_lone_posting_in_one_statement_moves_head_and_balances_and_is_checked(pg_db: Database) -> None:
    """On PostgreSQL a lone posting claims its id and inserts the transaction and its legs in one
    statement: the triggers still move the chain's head and the shard's balances, verify passes,
    and the database still refuses legs that do not balance (at commit)."""
    async with pg_db.transaction() as session:
        posted = await sharded().post(session, payment("one", 1000))
    async with pg_db.transaction() as session:
        head = (await session.exec(text("SELECT shard, seq, hash, transactions FROM ledger_chain_head"))).one()  # type: ignore[call-overload]
        shard = head.shard
        shard_balances = dict(
            (
                await session.exec(
                    text("SELECT code, balance FROM ledger_balance JOIN ledger_account ON id = account_id")
                )
            ).all()  # type: ignore[call-overload]
        )
        verification = await verify_ledger(session)
    assert (head.seq, head.hash, head.transactions) == (posted.seq, posted.hash, 1)
    assert shard_balances == {
        "partner-clearing:wallet-pay": -1000,
        "partner-clearing:fresh-mart": 980,
        "exchange-fees": 20,
    }
    assert verification.ok, verification.problem
    with pytest.raises(IntegrityError, match="does not balance"):
        async with pg_db.transaction() as session:
            row = (await session.exec(text(f"SELECT {', '.join(TRANSACTION_COLUMNS)} FROM ledger_transaction"))).one()  # type: ignore[call-overload]
            legs = (
                await session.exec(text(f"SELECT {', '.join(ENTRY_COLUMNS)} FROM ledger_entry ORDER BY position"))
            ).all()  # type: ignore[call-overload]
            seq = row.seq + 1
            transaction = (seq, shard, "lopsided", *row[3:])
            # The first leg doubled: the legs no longer sum to zero.
            entries = [(seq, *leg[1:4], leg.amount * (2 if leg.position == 0 else 1), *leg[5:]) for leg in legs]
            assert await _post_one(session, ("lopsided", None, seq, row.period), transaction, entries)
    assert await balances(pg_db) == shard_balances


async def second_waits_for_first(
    db: Database, first: Callable[[AsyncSession], Awaitable[object]], second: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    """Run ``first`` in a unit of work and, before it commits, ``second`` in another (another
    connection, so another shard); commit ``first`` once ``second`` waits on one of its locks,
    and return what ``second`` returns (or raise what it raises)."""

    async def in_unit_of_work() -> T:
        async with db.transaction() as session:
            return await second(session)

    async with db.transaction() as session:
        await first(session)
        task = asyncio.create_task(in_unit_of_work())
        waiting = 0
        while not waiting and not task.done():
            await asyncio.sleep(0.01)
            async with db.transaction() as look:  # pg_stat_activity is a snapshot per transaction
                waiting = (await look.exec(text(LOCK_WAITERS))).scalar_one()  # type: ignore[call-overload]
        assert waiting == 1, "the second posting should wait for the first's lock"
    return await task


async def batch_racing(db: Database, raced_amount: int) -> list[PostedTransaction]:
    """A batch of three posted while another unit of work (in another shard) posts its id
    ``raced``, with ``raced_amount``, and commits once the batch waits for it (on the id: the
    accounts are open already)."""
    ledger = sharded()
    await post(db, ledger, ["opening"])

    async def post_raced(session: AsyncSession) -> PostedTransaction:
        return await ledger.post(session, payment("raced", raced_amount))

    async def post_batch(session: AsyncSession) -> list[PostedTransaction]:
        return await ledger.post_many(session, [payment("before"), payment("raced"), payment("after")])

    return await second_waits_for_first(db, post_raced, post_batch)


@pytest.mark.postgres_only
async def test_a_batch_racing_a_posting_of_one_of_its_ids_gets_that_posting_back(pg_db: Database) -> None:
    results = await batch_racing(pg_db, 1000)
    assert [(result.id, result.replayed) for result in results] == [
        ("before", False),
        ("raced", True),
        ("after", False),
    ]
    async with pg_db.transaction() as session:
        verification = await verify_ledger(session)
    assert verification.ok, verification.problem
    assert verification.transactions == 4 and (await balances(pg_db))["exchange-fees"] == 4 * 20


@pytest.mark.postgres_only
async def test_a_batch_racing_a_posting_of_one_of_its_ids_with_other_content_is_a_conflict(pg_db: Database) -> None:
    with pytest.raises(IdempotencyConflict, match="'raced' was posted before with different content"):
        await batch_racing(pg_db, 2000)
    assert (await balances(pg_db))["exchange-fees"] == 20 + 40  # the opening's and the racing posting's


@pytest.mark.postgres_only
async def test_of_two_reversals_of_a_transaction_posted_at_once_the_second_is_refused(pg_db: Database) -> None:
    ledger = sharded()
    await post(pg_db, ledger, ["t"])

    def reversal(transaction_id: str) -> Callable[[AsyncSession], Awaitable[object]]:
        return lambda session: ledger.reverse(session, "t", transaction_id=transaction_id, effective_at=NOON)

    with pytest.raises(AlreadyReversed, match="'t' was already reversed by 'first'"):
        await second_waits_for_first(pg_db, reversal("first"), reversal("second"))
    assert (await balances(pg_db))["exchange-fees"] == 0


@pytest.mark.postgres_only
async def test_a_signed_off_period_detaches_and_still_verifies(pg_db: Database, signer: Signer, tmp_path: Path) -> None:
    ledger = sharded(4)
    async with pg_db.transaction() as session:
        assert await ensure_partitions(session, ["2026-11"]) == ["2026-11"]
    await post(pg_db, ledger, [f"n{index}" for index in range(6)])
    await close_period(pg_db, ledger.calendar, FrozenClock(AFTER_NOVEMBER), TWD, "2026-11", by="staff")
    await post(pg_db, sharded(4, DECEMBER), ["d1", "d2"], at=DECEMBER)
    before = await balances(pg_db)
    with pytest.raises(
        NotArchivable,
        match=r"not signed off by fresh-mart, wallet-pay: reconcile and sign off each \(exchange settle sign-off",
    ):
        async with pg_db.transaction() as session:
            await archive_period(session, signer, "2026-11", now=DECEMBER, export=None)
    async with pg_db.transaction() as session:
        await session.exec(text("UPDATE settlement_position SET signed_off_at = now()"))  # type: ignore[call-overload]
        archive = await archive_period(session, signer, "2026-11", now=DECEMBER, export=tmp_path)
    assert archive.transactions == 6
    exported = (tmp_path / "ledger_transaction_2026_11.csv").read_text().splitlines()
    assert len(exported) == 1 + 6 and exported[0].startswith("seq,period,shard,id")
    async with pg_db.transaction() as session:
        verification = await verify_ledger(session)
        left = (await session.exec(text("SELECT count(*) FROM ledger_transaction"))).scalar_one()  # type: ignore[call-overload]
    assert verification.ok, verification.problem
    assert (verification.transactions, left) == (2, 2)
    assert await balances(pg_db) == before
    with pytest.raises(PeriodArchived, match=r"read them in the archive.s export"):  # its lines are there now
        async with pg_db.transaction() as session:
            await statement_lines(session, currency=TWD, participant="fresh-mart", period="2026-11")
    async with pg_db.transaction() as session:  # archiving again changes nothing
        assert (
            await archive_period(session, signer, "2026-11", now=AFTER_NOVEMBER, export=None)
        ).archived_at == DECEMBER
    async with pg_db.transaction() as session:
        await session.exec(
            text("UPDATE ledger_chain_head SET transactions = transactions + 1 WHERE period = '2026-11'")
        )  # type: ignore[call-overload]
    assert "the close anchor of 2026-11 records heads" in await problem_of(pg_db)


@pytest.mark.postgres_only
async def test_an_archived_periods_export_is_written_from_its_detached_tables_until_they_are_dropped(
    pg_db: Database, signer: Signer, tmp_path: Path
) -> None:
    """Archived without --export, then asked for it (PeriodArchived's advice): the export is
    written from the detached tables, the rows as they were; once an operator dropped them,
    the export is refused saying so, instead of printing the archive with nothing exported."""
    ledger = sharded(4)
    await post(pg_db, ledger, [f"n{index}" for index in range(3)])
    await close_period(pg_db, ledger.calendar, FrozenClock(AFTER_NOVEMBER), TWD, "2026-11", by="staff")
    async with pg_db.transaction() as session:
        await session.exec(text("UPDATE settlement_position SET signed_off_at = now()"))  # type: ignore[call-overload]
        assert (await archive_period(session, signer, "2026-11", now=DECEMBER, export=None)).exported == []
    async with pg_db.transaction() as session:
        again = await archive_period(session, signer, "2026-11", now=AFTER_NOVEMBER, export=tmp_path)
    assert (again.archived_at, [path.name for path in again.exported]) == (
        DECEMBER,
        ["ledger_transaction_2026_11.csv", "ledger_entry_2026_11.csv"],
    )
    exported = (tmp_path / "ledger_transaction_2026_11.csv").read_text().splitlines()
    assert len(exported) == 1 + 3 and exported[0].startswith("seq,period,shard,id")
    async with pg_db.transaction() as session:  # as README says to, once dumped
        await session.exec(text("DROP TABLE ledger_entry_2026_11, ledger_transaction_2026_11"))  # type: ignore[call-overload]
    with pytest.raises(ArchiveDropped) as refused:
        async with pg_db.transaction() as session:
            await archive_period(session, signer, "2026-11", now=AFTER_NOVEMBER, export=tmp_path / "later")
    assert str(refused.value) == (
        "period 2026-11 is archived and its detached tables (ledger_transaction_2026_11, ledger_entry_2026_11) are"
        " no longer in the database: nothing can be exported now; its rows are in the export or dump made before"
        " they were dropped"
    )
    assert not (tmp_path / "later").exists()


async def in_default_partitions(db: Database) -> dict[str, tuple[int, int]]:
    """Transactions and legs per period in the default partitions."""
    async with db.transaction() as session:
        rows = await session.exec(
            text(  # type: ignore[call-overload]
                "SELECT period, count(DISTINCT seq), count(*) FROM ledger_transaction_default"
                " JOIN ledger_entry_default e USING (period) WHERE e.transaction_seq = seq GROUP BY period"
            )
        )
        return {period: (transactions, legs) for period, transactions, legs in rows}


@pytest.mark.postgres_only
async def test_periods_posted_into_the_default_partition_get_their_own_and_archive(
    pg_db: Database, signer: Signer, tmp_path: Path
) -> None:
    """November and December are posted before either has partitions of its own: closing
    November makes December's, moving its rows; archiving November makes and detaches its own."""
    ledger = sharded(4)
    await post(pg_db, ledger, ["n1", "n2", "n3"])
    await post(pg_db, sharded(4, DECEMBER), ["d1"], at=DECEMBER)
    before = await balances(pg_db)
    assert await in_default_partitions(pg_db) == {"2026-11": (3, 9), "2026-12": (1, 3)}
    await close_period(pg_db, ledger.calendar, FrozenClock(AFTER_NOVEMBER), TWD, "2026-11", by="staff")
    assert await in_default_partitions(pg_db) == {"2026-11": (3, 9)}
    async with pg_db.transaction() as session:
        await session.exec(text("UPDATE settlement_position SET signed_off_at = now()"))  # type: ignore[call-overload]
        archive = await archive_period(session, signer, "2026-11", now=DECEMBER, export=tmp_path)
    assert archive.transactions == 3 and await in_default_partitions(pg_db) == {}
    assert len((tmp_path / "ledger_entry_2026_11.csv").read_text().splitlines()) == 1 + 9
    async with pg_db.transaction() as session:
        verification = await verify_ledger(session)
    assert verification.ok, verification.problem
    assert verification.transactions == 1 and await balances(pg_db) == before
    await post(pg_db, sharded(4, DECEMBER), ["d2"], at=DECEMBER)  # into December's own partition
    assert await in_default_partitions(pg_db) == {}


async def test_sqlite_keeps_every_period(sqlite_databases: SqliteDatabases, signer: Signer) -> None:
    db = Database.from_url(sqlite_databases.create())
    try:
        with pytest.raises(NotArchivable, match="partitioned on PostgreSQL only"):
            async with db.transaction() as session:
                await archive_period(session, signer, "2026-11", now=DECEMBER, export=None)
    finally:
        await db.dispose()
