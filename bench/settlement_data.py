"""A month of clearing transactions for the settlement benchmarks, posted through the ledger.

Every transaction goes through ``Ledger.post_many`` (balance and shape checks, idempotency
lookup, hash chain, account balances, PostgreSQL's deferred balance trigger), so the rows are
exactly what the exchange writes. The mix, by transaction number ``n``:

* 16 in 20: a conversion's money legs: payer −value, payee +(value − 2% fee), exchange +fee;
* 3 in 20: a redemption without fee: payer −price, payee +price;
* 1 in 20: a conversion's reversal: payee and exchange pay back, payer is owed (two debtors).

Amounts are 10.00 to 19.96 TWD. The payer and payee are drawn from ``partners``; with
``focus`` set, every transaction is between ``focus`` and one other partner, in either
direction (what a partner's records of a month cover).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from exchange.db.database import Database
from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.partitions import ensure_partitions
from exchange.ledger.posting import Ledger, Leg, TransactionRequest
from exchange.services.container import load_partners_directory
from exchange.settings import Settings
from exchange.testing.clock import FrozenClock

CHART = ChartOfAccounts("TWD")
MONTH = "2026-10"
MONTH_STARTS = datetime(2026, 9, 30, 16, 0, tzinfo=UTC)  # 1 October, midnight in Taipei
AFTER_MONTH = datetime(2026, 11, 2, tzinfo=UTC)
PARTNERS_DIR = Path(__file__).resolve().parent.parent / "partners"


def declare(directory: Path, partners: Sequence[str]) -> None:
    """The sample coalition's declarations in ``directory``, and one program for each of
    ``partners`` (a partner's records name them as counterparties, which must be programs)."""
    shutil.copy(PARTNERS_DIR / "coalition.toml", directory)
    for partner in partners:
        (directory / f"{partner}.toml").write_text(
            f'''id = "{partner}"
name = "Bench {partner}"
category = "supermarket"
point_name = "Point"
point_value = "0.1"

[[tiers]]
name = "Member"
level = 0

[connector]
kind = "rest"
base_url = "http://127.0.0.1:9"

[connector.oauth]
token_url = "http://127.0.0.1:9/oauth/token"
client_id = "exchange"
client_secret = "bench"
'''
        )


def amount_of(n: int) -> int:
    return 1000 + n * 7919 % 997


def parties(n: int, partners: Sequence[str], focus: str | None) -> tuple[str, str]:
    """(payer, payee) of transaction ``n``: distinct, and one of them ``focus`` if given."""
    if focus is not None:
        others = [partner for partner in partners if partner != focus]
        other = others[n * 31 % len(others)]
        return (focus, other) if n % 2 else (other, focus)
    payer = partners[n % len(partners)]
    payee = partners[(n * 7 + 3) % len(partners)]
    return (payer, payee) if payer != payee else (payer, partners[(n + 1) % len(partners)])


def reference(n: int) -> str:
    return f"{'redemption' if n % 20 in (16, 17, 18) else 'conversion'}:bench-{n:08d}"


def legs(n: int, payer: str, payee: str) -> tuple[Leg, ...]:
    """The money legs of transaction ``n``, from the mix in the module's docstring."""
    value = amount_of(n)
    fee = value // 50
    if n % 20 in (16, 17, 18):
        return (Leg(CHART.clearing(payer), -value), Leg(CHART.clearing(payee), value))
    if n % 20 == 19:
        return (Leg(CHART.clearing(payee), -(value - fee)), Leg(CHART.fees(), -fee), Leg(CHART.clearing(payer), value))
    return (Leg(CHART.clearing(payer), -value), Leg(CHART.clearing(payee), value - fee), Leg(CHART.fees(), fee))


def transactions(count: int, partners: Sequence[str], focus: str | None = None) -> Iterator[TransactionRequest]:
    step = timedelta(days=30) / max(count, 1)
    for n in range(count):
        payer, payee = parties(n, partners, focus)
        yield TransactionRequest(
            id=f"bench-{n:08d}",
            kind="redemption" if n % 20 in (16, 17, 18) else "reversal" if n % 20 == 19 else "conversion",
            reference=reference(n),
            effective_at=MONTH_STARTS + step * n,
            legs=legs(n, payer, payee),
        )


def partner_amount(n: int, partner: str, partners: Sequence[str], focus: str) -> int:
    """What ``partner`` (= ``focus``) is owed (+) or owes (−) in transaction ``n``."""
    return sum(leg.amount for leg in legs(n, *parties(n, partners, focus)) if leg.account == CHART.clearing(partner))


async def post_month(
    url: str, count: int, partners: Sequence[str], focus: str | None = None, batch: int = 5000
) -> float:
    """Load the coalition with ``partners`` among its programs, then post ``count`` transactions
    into October; returns the seconds posting took. October gets its partitions first, as a
    running exchange's current period has them (it makes them when it starts): posted into the
    default partition, the month's rows would be scanned again by every partition attached
    after them, the closing's for the next periods included."""
    with tempfile.TemporaryDirectory() as directory:
        declare(Path(directory), partners)
        await load_partners_directory(Settings(database_url=url, partners_dir=Path(directory)))
    db = Database.from_url(url)
    async with db.transaction() as session:
        await ensure_partitions(session, [MONTH])
    ledger = Ledger(timezone=Settings().timezone, clock=FrozenClock(AFTER_MONTH))
    started = asyncio.get_running_loop().time()
    try:
        pending: list[TransactionRequest] = []
        for request in transactions(count, partners, focus):
            pending.append(request)
            if len(pending) == batch:
                async with db.transaction() as session:
                    await ledger.post_many(session, pending)
                pending = []
        if pending:
            async with db.transaction() as session:
                await ledger.post_many(session, pending)
        return asyncio.get_running_loop().time() - started
    finally:
        await db.dispose()
