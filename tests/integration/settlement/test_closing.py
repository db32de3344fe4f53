"""Closing a period: its figures, its order, its idempotence, and what happens to late postings."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from exchange.errors import ErrorCode
from exchange.ledger.errors import NothingToClose, PeriodNotClosed, PeriodNotOver
from exchange.ledger.models import LedgerTransaction
from exchange.ledger.periods import PeriodStatus, start_closing
from exchange.ledger.posting import Leg, TransactionRequest
from exchange.services.settlement import SettlementService
from exchange.settlement import netting
from exchange.settlement.netting import NettingSaving, Obligation, Payments
from exchange.settlement.participants import EXCHANGE
from exchange.testing.clock import FrozenClock
from tests.integration.settlement.conftest import (
    CHART,
    NOVEMBER,
    close,
    conversion,
    post,
    redemption,
)

OCTOBER = datetime(2026, 10, 15, 4, 0, tzinfo=UTC)


async def test_closing_nets_who_owed_whom_into_one_position_each(
    settlement: SettlementService, clock: FrozenClock
) -> None:
    await post(
        settlement,
        [
            conversion("c1", "wallet-pay", "fresh-mart", 10_000, fee=200),
            conversion("c2", "fresh-mart", "wallet-pay", 4_000, fee=80),
            conversion("c3", "fresh-mart", "formosa-air", 3_000, fee=60),
            redemption("r1", "formosa-air", "wallet-pay", 2_500),
        ],
    )
    report = await close(settlement, clock, "2026-11")

    assert report.status is PeriodStatus.CLOSED
    assert list(report.obligations) == [
        Obligation("formosa-air", "wallet-pay", 2_500),
        Obligation("fresh-mart", EXCHANGE, 140),
        Obligation("fresh-mart", "formosa-air", 2_940),
        Obligation("fresh-mart", "wallet-pay", 3_920),
        Obligation("wallet-pay", EXCHANGE, 200),
        Obligation("wallet-pay", "fresh-mart", 9_800),
    ]
    figures = {p.participant: (p.opening, p.payable, p.receivable, p.net) for p in report.positions}
    assert figures == {
        EXCHANGE: (0, 0, 340, 340),
        "formosa-air": (0, 2_500, 2_940, 440),
        "fresh-mart": (0, 7_000, 9_800, 2_800),
        "wallet-pay": (0, 10_000, 6_420, -3_580),
    }
    assert sum(p.net for p in report.positions) == 0
    assert report.saving == NettingSaving(
        gross=Payments(6, 19_500),
        bilateral=Payments(5, 2_500 + 140 + 2_940 + 200 + 5_880),
        multilateral=Payments(4, 3_580),
    )


async def test_closing_attributes_each_spoke_leg_to_its_hub_whatever_the_shape(
    settlement: SettlementService, clock: FrozenClock
) -> None:
    wallet, mart, air, tune = (CHART.clearing(p) for p in ("wallet-pay", "fresh-mart", "formosa-air", "tune-stream"))
    shapes = [
        (Leg(wallet, -100), Leg(mart, 70), Leg(air, 30)),  # one debtor, two creditors
        (Leg(mart, -40), Leg(tune, -60), Leg(wallet, 100)),  # two debtors, one creditor
        (Leg(air, 25), Leg(tune, -25)),  # one leg on each side, the creditor first
        (Leg(wallet, -50), Leg(wallet, 20), Leg(mart, 30)),  # a spoke on the hub's own account
    ]
    await post(
        settlement,
        [TransactionRequest(f"t{n}", "adjustment", f"adjustment:{n}", NOVEMBER, legs) for n, legs in enumerate(shapes)],
    )
    report = await close(settlement, clock, "2026-11")
    assert list(report.obligations) == [
        Obligation("fresh-mart", "wallet-pay", 40),
        Obligation("tune-stream", "formosa-air", 25),
        Obligation("tune-stream", "wallet-pay", 60),
        Obligation("wallet-pay", "formosa-air", 30),
        Obligation("wallet-pay", "fresh-mart", 100),
    ]
    assert {p.participant: p.net for p in report.positions} == {
        "fresh-mart": 60,
        "formosa-air": 55,
        "tune-stream": -85,
        "wallet-pay": -30,
    }


async def test_closing_again_returns_the_same_figures_and_changes_nothing(
    settlement: SettlementService, clock: FrozenClock
) -> None:
    await post(settlement, [conversion("c1", "wallet-pay", "fresh-mart", 10_000, fee=200)])
    first = await close(settlement, clock, "2026-11")
    clock.advance(days=3)
    again = await settlement.close("2026-11", by="someone else")
    assert (again.positions, again.obligations, again.saving) == (first.positions, first.obligations, first.saving)
    assert again.row is not None and first.row is not None
    assert (again.row.closed_at, again.row.closed_by) == (first.row.closed_at, "staff")


async def test_netting_a_closed_period_again_gives_what_closing_stored(
    settlement: SettlementService, clock: FrozenClock
) -> None:
    await post(
        settlement,
        [
            conversion("c1", "wallet-pay", "fresh-mart", 10_000, fee=200),
            redemption("r1", "fresh-mart", "formosa-air", 700, fee=7),
        ],
    )
    stored = await close(settlement, clock, "2026-11")
    async with settlement.db.transaction() as session:
        assert await netting.obligations(session, "2026-11", "TWD") == list(stored.obligations)


async def test_nothing_posts_into_a_closed_period_late_items_go_to_the_next_keeping_their_date(
    settlement: SettlementService, clock: FrozenClock
) -> None:
    await post(settlement, [conversion("c1", "wallet-pay", "fresh-mart", 10_000)])
    await close(settlement, clock, "2026-11")
    await post(settlement, [conversion("late", "wallet-pay", "fresh-mart", 500, at=NOVEMBER)])
    async with settlement.db.transaction() as session:
        late = (await session.exec(select(LedgerTransaction).where(LedgerTransaction.id == "t-late"))).one()
    assert (late.period, late.effective_at) == ("2026-12", NOVEMBER)
    december = await close(settlement, clock, "2026-12")
    assert {p.participant: p.net for p in december.positions}["fresh-mart"] == 500
    assert {p.participant: p.opening for p in december.positions}["fresh-mart"] == 10_000


async def test_a_period_closes_only_once_it_is_over(settlement: SettlementService, clock: FrozenClock) -> None:
    clock.current = datetime(2026, 11, 30, 15, 59, tzinfo=UTC)  # 23:59 on 30 November in Taipei
    with pytest.raises(PeriodNotOver) as caught:
        await settlement.close("2026-11", by="staff")
    assert caught.value.extensions()["endsAt"] == "2026-11-30T16:00:00+00:00"
    assert (await settlement.period("2026-11")).status is PeriodStatus.OPEN
    clock.advance(minutes=1)
    assert (await settlement.close("2026-11", by="staff")).status is PeriodStatus.CLOSED


async def test_a_period_closes_only_after_every_earlier_period_with_postings(
    settlement: SettlementService, clock: FrozenClock
) -> None:
    await post(
        settlement,
        [
            conversion("october", "wallet-pay", "fresh-mart", 1_000, at=OCTOBER),
            conversion("c1", "wallet-pay", "fresh-mart", 2_000),
        ],
    )
    with pytest.raises(PeriodNotClosed) as caught:
        await close(settlement, clock, "2026-11")
    assert caught.value.code is ErrorCode.PERIOD_NOT_CLOSED and caught.value.details["period"] == "2026-10"
    october = await close(settlement, clock, "2026-10")
    november = await close(settlement, clock, "2026-11")
    assert {p.participant: p.net for p in october.positions}["fresh-mart"] == 1_000
    assert {p.participant: (p.opening, p.net) for p in november.positions}["fresh-mart"] == (1_000, 2_000)


async def test_earlier_periods_without_postings_need_no_closing_and_count_as_closed(
    settlement: SettlementService, clock: FrozenClock
) -> None:
    await post(settlement, [conversion("c1", "wallet-pay", "fresh-mart", 2_000)])
    await close(settlement, clock, "2026-11")
    empty = await settlement.period("2026-09")
    assert (empty.status, list(empty.positions)) == (PeriodStatus.CLOSED, [])
    assert (await settlement.period("2027-01")).status is PeriodStatus.OPEN
    # Closing it anyway is refused: it has nothing to net, state or settle.
    with pytest.raises(NothingToClose) as refused:
        await settlement.close("2026-09", by="staff")
    assert (refused.value.field, refused.value.message) == (
        "period",
        "period 2026-09 counts as closed already: nothing was posted into it, and 2026-11, after it, has closed; "
        "there is nothing to close or settle",
    )
    assert (await settlement.period("2026-09")).row is None, "no period row, no statements"


async def test_a_period_left_closing_is_finished_by_closing_it_again(
    settlement: SettlementService, clock: FrozenClock
) -> None:
    """As after a crash between the two steps: the period is CLOSING, with no figures yet."""
    await post(settlement, [conversion("c1", "wallet-pay", "fresh-mart", 2_000, fee=20)])
    clock.advance(days=20)
    async with settlement.db.transaction() as session:
        await start_closing(session, settlement.calendar, "2026-11", by="crashed", now=clock.now())
    assert (await settlement.period("2026-11")).status is PeriodStatus.CLOSING
    await post(settlement, [conversion("meanwhile", "wallet-pay", "fresh-mart", 300, at=NOVEMBER)])
    report = await settlement.close("2026-11", by="staff")
    assert report.status is PeriodStatus.CLOSED
    assert {p.participant: p.net for p in report.positions} == {EXCHANGE: 20, "fresh-mart": 1_980, "wallet-pay": -2_000}


@pytest.mark.postgres_only
async def test_a_posting_holding_the_chain_head_commits_into_the_period_before_it_closes(
    pg_settlement: SettlementService, clock: FrozenClock
) -> None:
    """Deterministic interleaving: a posting has taken the chain head and not committed when
    closing starts; closing waits for it, so the posting is in the period's figures."""
    posted, commit = asyncio.Event(), asyncio.Event()

    async def slow_posting() -> None:
        async with pg_settlement.db.transaction() as session:
            await pg_settlement.ledger.post(session, conversion("slow", "wallet-pay", "fresh-mart", 700))
            posted.set()
            await commit.wait()

    posting = asyncio.create_task(slow_posting())
    await posted.wait()
    clock.current = datetime(2026, 12, 2, tzinfo=UTC)
    closing = asyncio.create_task(pg_settlement.close("2026-11", by="staff"))
    await asyncio.sleep(0.3)
    assert not closing.done()  # waiting for the chain head
    commit.set()
    await posting
    report = await closing
    assert {p.participant: p.net for p in report.positions}["fresh-mart"] == 700


@pytest.mark.postgres_only
async def test_a_posting_after_closing_started_waits_and_lands_in_the_next_period(
    pg_settlement: SettlementService, clock: FrozenClock
) -> None:
    """The other order: closing holds the chain head (CLOSING not committed yet) when a
    posting dated in the period arrives; the posting waits, then goes to December."""
    clock.current = datetime(2026, 12, 2, tzinfo=UTC)
    switched, commit = asyncio.Event(), asyncio.Event()

    async def closing_step() -> None:
        async with pg_settlement.db.transaction() as session:
            await start_closing(session, pg_settlement.calendar, "2026-11", by="staff", now=clock.now())
            switched.set()
            await commit.wait()

    closing = asyncio.create_task(closing_step())
    await switched.wait()
    posting = asyncio.create_task(post(pg_settlement, [conversion("racing", "wallet-pay", "fresh-mart", 700)]))
    await asyncio.sleep(0.3)
    assert not posting.done()
    commit.set()
    await closing
    await posting
    async with pg_settlement.db.transaction() as session:
        racing = (await session.exec(select(LedgerTransaction).where(LedgerTransaction.id == "t-racing"))).one()
    assert (racing.period, racing.effective_at) == ("2026-12", NOVEMBER)
    assert list((await pg_settlement.close("2026-11", by="staff")).positions) == []
