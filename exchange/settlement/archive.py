"""Archiving a settled period: its ledger rows leave the ledger's tables (PostgreSQL).

A period can be archived once it is CLOSED and every partner has signed it off: nothing of it
changes any more. Archiving first issues every participant's statement not issued yet (a
closing cut while issuing, a period closed before statements were stored: ``issued``), in the
same unit of work: a statement is built from the period's legs, which leave the ledger here,
and is never issued by a download after. Then it gives the period its own partitions first if it has none (its
rows, posted before it had them, move out of the default partition: ``ledger.partitions``),
writes, if asked, the period's transactions and legs as CSV files, records what its legs moved
per account and shard (``ledger_archived_balance``, so the running balances still verify),
detaches its partitions and marks its close anchor archived. The detached tables stay in the
database, outside the ledger, for an operator to dump and drop; archiving the period again
with an export asked writes it from them while they are there.

What ``exchange ledger verify`` proves afterwards is in ``exchange.ledger.verify``: that the
period's chains ended at the heads its close anchor recorded, and that the anchor is in the
chain of closes. An export is proven by recomputing its chains to those heads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import String, and_, literal, or_, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.ledger.errors import PeriodNotClosed
from exchange.ledger.models import LedgerCloseAnchor, LedgerTransactionKey, SettlementPeriod
from exchange.ledger.partitions import (
    detach_period,
    detached_tables,
    ensure_partitions,
    export_period,
    partition_name,
    partitioned,
)
from exchange.ledger.periods import PeriodStatus
from exchange.rewards.models import Redemption, RedemptionStatus, RewardKind
from exchange.settlement import issued
from exchange.settlement.errors import ArchiveDropped, NotArchivable
from exchange.settlement.models import SettlementPosition
from exchange.settlement.participants import EXCHANGE

#: How many redemptions still reversible a refused archive names.
NAMED = 5


@dataclass(frozen=True, slots=True)
class Archive:
    period: str
    transactions: int
    anchor_hash: str
    archived_at: datetime
    exported: list[Path] = field(default_factory=list)


ARCHIVED_BALANCES = """
    INSERT INTO ledger_archived_balance AS archived (account_id, shard, balance)
    SELECT account_id, shard, sum(amount) FROM {entries} GROUP BY account_id, shard
    ON CONFLICT (account_id, shard) DO UPDATE SET balance = archived.balance + excluded.balance
"""


async def archive_period(
    session: AsyncSession, signer: issued.Signer, period: str, *, now: datetime, export: Path | None
) -> Archive:
    """Archive ``period`` (see the module's docstring), issuing with ``signer`` the statements
    not issued yet; an archived period is returned as it was."""
    if not partitioned(session):
        raise NotArchivable(period, "the ledger is partitioned on PostgreSQL only; on SQLite every period stays")
    anchor = await session.get(LedgerCloseAnchor, period, with_for_update=True)
    row = await session.get(SettlementPeriod, period)
    if anchor is None or row is None or row.status != PeriodStatus.CLOSED:
        raise PeriodNotClosed(f"period {period} is not closed: close it and have it signed off first", period=period)
    transactions = sum(int(head.split(":")[1]) for head in anchor.heads.split(";") if head)
    if anchor.archived_at is not None:
        # An export asked again (or first: PeriodArchived sends a reader here) is written from
        # the detached tables while an operator has not dropped them.
        exported = [] if export is None else await _export_detached(session, period, export)
        return Archive(period, transactions, anchor.hash, anchor.archived_at, exported)
    unsigned = (
        await session.exec(
            select(SettlementPosition.participant)
            .where(
                SettlementPosition.period == period,
                col(SettlementPosition.signed_off_at).is_(None),
                SettlementPosition.participant != EXCHANGE,
            )
            .order_by(col(SettlementPosition.participant))
        )
    ).all()
    if unsigned:
        raise NotArchivable(
            period,
            f"not signed off by {', '.join(unsigned)}: reconcile and sign off each "
            f"(exchange settle sign-off --partner P {period}), then archive it",
        )
    reversible = (
        await session.exec(
            select(Redemption.id)
            .join(
                LedgerTransactionKey,
                col(LedgerTransactionKey.id) == literal("redemption:", String) + col(Redemption.id),
            )
            .where(
                LedgerTransactionKey.period == period,
                or_(
                    col(Redemption.status) == RedemptionStatus.REVERSING,
                    and_(
                        col(Redemption.status) == RedemptionStatus.COMPLETED, col(Redemption.kind) == RewardKind.DIRECT
                    ),
                ),
            )
            .order_by(col(Redemption.id))
            .limit(NAMED + 1)
        )
    ).all()
    if reversible:
        more = ", …" if len(reversible) > NAMED else ""
        raise NotArchivable(
            period,
            f"redemptions paid in it may still be reversed, which needs their clearing in the ledger: "
            f"{', '.join(reversible[:NAMED])}{more} (each awaits its delivery, or is being reversed); "
            "archive it once each is delivered or reversed",
        )
    participants = await session.exec(select(SettlementPosition.participant).where(SettlementPosition.period == period))
    for participant in participants.all():
        await issued.issue(session, signer, participant, period, now)
    await ensure_partitions(session, [period])  # rows posted before it had partitions leave the default one
    exported = [] if export is None else await export_period(session, period, export)
    await session.exec(text(ARCHIVED_BALANCES.format(entries=partition_name("ledger_entry", period))))  # type: ignore[call-overload]
    await detach_period(session, period)
    anchor.archived_at = now
    session.add(anchor)
    await session.flush()
    return Archive(period, transactions, anchor.hash, now, exported)


async def _export_detached(session: AsyncSession, period: str, export: Path) -> list[Path]:
    tables, left = await detached_tables(session, period)
    if not left:
        raise ArchiveDropped(period, tables)
    return await export_period(session, period, export)
