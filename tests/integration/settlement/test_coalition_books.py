"""The partners' books of the coalition point: what a partner funded and what was spent with it
tie out to the point's own ledger accounts; what it funded that is outstanding or expired ties
out to the lots; the breakage estimate applies expired ÷ matured over the trailing twelve months
to the lots maturing in the period, with lots expiring exactly at a period's first instant (in
the settlement time zone) counted in that period (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlmodel import func, select

from exchange.coalition import lots
from exchange.coalition.connector import CoalitionConnector
from exchange.coalition.expiry import KIND as EXPIRY_KIND
from exchange.coalition.expiry import expire_batch
from exchange.coalition.models import CoalitionDraw, CoalitionExpiry, CoalitionLot, CoalitionOperation
from exchange.coalition.rules import point_rules
from exchange.coalition.verify import check_point
from exchange.ledger.posting import Leg, TransactionRequest
from exchange.ledger.verify import verify_ledger
from exchange.members.models import Member
from exchange.programs.catalog import CatalogCache
from exchange.rewards.clearing import REVERSAL_KIND
from exchange.services.books import BooksService
from exchange.services.coalition import CoalitionService
from exchange.services.settlement import SettlementService
from exchange.settlement.participants import EXCHANGE
from exchange.testing.clock import FrozenClock
from tests.integration.settlement.conftest import (
    CHART,
    NOVEMBER,
    TAIPEI,
    close,
    conversion,
    points_redemption,
    post,
    served,
)

POINT = "coalition"
#: Lots earned in 2024 lapse at the first instant of 2026 in Taipei; lots of 2025, of 2027.
LAPSED_2026 = datetime(2026, 1, 1, tzinfo=TAIPEI)
LAPSES_2027 = datetime(2027, 1, 1, tzinfo=TAIPEI)


def expired(name: str, points: int, at: datetime) -> TransactionRequest:
    """What the expiry job posts when the operator keeps breakage (docs/COALITION.md)."""
    legs = (
        Leg(CHART.member_points(POINT), -points),
        Leg(CHART.expired(POINT), points),
        Leg(CHART.clearing(POINT), -points * 100),
        Leg(CHART.breakage(), points * 100),
    )
    return TransactionRequest(id=f"t-{name}", kind="expiry", reference=f"expiry:{name}", effective_at=at, legs=legs)


async def lots_of_two_years(settlement: SettlementService) -> None:
    """Formosa Air funded lots 1, 3 and 4, Wallet Pay lot 2; lots 1 and 2 lapsed on 1 January 2026
    with 300 and 100 points unspent; lot 3 lapses on 1 January 2027."""

    def lot(number: int, funder: str, points: int, remaining: int, lapsed: int, earned: datetime, expires: datetime):  # type: ignore[no-untyped-def]
        return CoalitionLot(
            id=number,
            member_id="m-1",
            program_id=POINT,
            funded_by=funder,
            opened_by=f"earn-{number}:credit",
            points=points,
            remaining=remaining,
            expired=lapsed,
            earned_at=earned,
            expires_at=expires,
        )

    def drawn(number: int, points: int, at: datetime) -> tuple[CoalitionOperation, CoalitionDraw]:
        operation = CoalitionOperation(
            operation_id=f"spend-{number}:debit",
            saga_id=f"spend-{number}",
            kind="debit",
            status="applied",
            member_ref="m-1",
            points=points,
            created_at=at,
        )
        return operation, CoalitionDraw(operation_id=operation.operation_id, lot_id=number, points=points)

    async with settlement.db.transaction() as session:
        session.add(Member(id="m-1", created_at=datetime(2024, 1, 1, tzinfo=TAIPEI)))
        await session.flush()
        session.add_all(
            [
                lot(1, "formosa-air", 1_000, 0, 300, datetime(2024, 5, 10, tzinfo=TAIPEI), LAPSED_2026),
                lot(2, "wallet-pay", 1_000, 0, 100, datetime(2024, 6, 10, tzinfo=TAIPEI), LAPSED_2026),
                lot(3, "formosa-air", 4_000, 3_000, 0, datetime(2025, 6, 1, tzinfo=TAIPEI), LAPSES_2027),
                lot(4, "formosa-air", 2_000, 2_000, 0, NOVEMBER, datetime(2028, 1, 1, tzinfo=TAIPEI)),
            ]
        )
        await session.flush()
        for number, lot_id, points, at in (
            (1, 1, 700, datetime(2025, 3, 1, tzinfo=TAIPEI)),
            (2, 2, 900, datetime(2025, 4, 1, tzinfo=TAIPEI)),
            (3, 3, 1_000, NOVEMBER),
        ):
            operation, draw = drawn(number, points, at)
            session.add(operation)
            await session.flush()
            draw.lot_id = lot_id
            session.add(draw)
        session.add_all(
            [
                CoalitionExpiry(lot_id=1, points=300, ledger_transaction_id="t-lapse", expired_at=LAPSED_2026),
                CoalitionExpiry(lot_id=2, points=100, ledger_transaction_id="t-lapse", expired_at=LAPSED_2026),
            ]
        )
    await post(settlement, [expired("lapse", 400, LAPSED_2026)])


async def a_month_with_the_coalition_point(settlement: SettlementService) -> None:
    await lots_of_two_years(settlement)
    await post(
        settlement,
        [
            conversion("earn-1", "formosa-air", POINT, 200_000, 4_000, points=(5_000, 2_000)),
            conversion("earn-2", "wallet-pay", POINT, 100_000, 2_000, points=(1_000, 1_000)),
            conversion("spend-at-formosa", POINT, "formosa-air", 50_000, 1_000, points=(500, 1_250)),
            points_redemption("lounge", POINT, "formosa-air", 600, 60_000, 600),
            points_redemption("groceries", POINT, "fresh-mart", 100, 10_000, 100),
            points_redemption("cancelled", POINT, "formosa-air", 50, 5_000, 50),
        ],
    )
    async with settlement.db.transaction() as session:
        for name in ("groceries", "cancelled"):
            await settlement.ledger.reverse(
                session, f"t-{name}", transaction_id=f"t-{name}-back", effective_at=NOVEMBER, kind=REVERSAL_KIND
            )


async def test_what_a_partner_funded_and_received_ties_out_to_the_points_own_accounts(
    settlement: SettlementService, books: BooksService
) -> None:
    await a_month_with_the_coalition_point(settlement)
    november = {
        program: await books.partner_books(program, "2026-11")
        for program in ("formosa-air", "wallet-pay", "fresh-mart")
    }
    formosa = november["formosa-air"].coalition
    assert formosa is not None and (formosa.figures.funded, formosa.figures.spent_at) == (2_000, 1_100)
    assert november["formosa-air"].figures.converted_out == 5_000 and november["formosa-air"].figures.issued == 1_250
    point = await books.partner_books(POINT, "2026-11")
    assert point.coalition is None, "the point has no coalition side of its own"
    sides = [side.coalition for side in november.values()]
    assert sum(side.figures.funded for side in sides if side) == point.figures.issued == 3_000
    assert sum(side.figures.spent_at for side in sides if side) == point.figures.redeemed == 1_100
    budget = november["formosa-air"].budget
    assert budget is not None and budget.spend == 50_000 + 200_000, "1,250 miles at 0.4 and 2,000 points at 1 TWD"


async def test_what_a_partner_funded_that_is_outstanding_or_expired_ties_out_to_the_lots(
    settlement: SettlementService, books: BooksService
) -> None:
    await a_month_with_the_coalition_point(settlement)
    november = (await books.partner_books("formosa-air", "2026-11")).coalition
    assert november is not None
    figures = november.figures
    assert (figures.outstanding, figures.breakage, figures.breakage_to_date) == (5_000, 0, 300)
    async with settlement.db.transaction() as session:
        remaining = (await session.exec(select(func.sum(CoalitionLot.remaining)))).one()
    wallet = (await books.partner_books("wallet-pay", "2026-11")).coalition
    assert wallet is not None and figures.outstanding + wallet.figures.outstanding == remaining
    january_2026 = (await books.partner_books("formosa-air", "2026-01")).coalition
    assert january_2026 is not None and (january_2026.figures.breakage, january_2026.figures.outstanding) == (
        300,
        4_000,
    )
    assert january_2026.figures.maturing == 1_000, "lot 1 lapsed at the period's first instant"


async def test_the_breakage_estimate_applies_the_trailing_expiry_rate_to_the_lots_maturing_in_the_period(
    settlement: SettlementService, books: BooksService
) -> None:
    await lots_of_two_years(settlement)
    december = (await books.partner_books("formosa-air", "2026-12")).coalition
    assert december is not None and december.figures.maturing == 0, "lot 3 lapses at 2027-01's first instant"
    assert december.figures.expiry_rate == Fraction(400, 2_000) and december.figures.estimated_breakage == 0
    january = (await books.partner_books("formosa-air", "2027-01")).coalition
    assert january is not None and january.figures.maturing == 4_000
    assert january.figures.expiry_rate == Fraction(400, 2_000), "lots 1 and 2 matured at the window's first instant"
    assert january.figures.estimated_breakage == 800 and january.figures.expiry_rate_shown == Decimal("0.200000")
    february = (await books.partner_books("formosa-air", "2027-02")).coalition
    assert february is not None and february.figures.expiry_rate == Fraction(3_000, 4_000), (
        "the window has moved past lots 1 and 2; lot 3's unspent 3,000 count as lapsed"
    )
    assert (await books.partner_books("formosa-air", "2025-10")).coalition.figures.expiry_rate is None  # type: ignore[union-attr]


async def test_the_books_follow_lots_the_point_itself_spends_reverses_and_expires(
    settlement: SettlementService, books: BooksService
) -> None:
    """Through the point's own lots and expiry job: Formosa Air's lot is partly spent, part of
    the spend reversed, and the rest lapses at the first instant of 2027 in Taipei."""
    earned, spent = datetime(2025, 6, 1, tzinfo=TAIPEI), datetime(2026, 3, 1, tzinfo=TAIPEI)
    async with settlement.db.transaction() as session:
        rules = await point_rules(session)
        session.add(Member(id="m-2", created_at=earned))
        await session.flush()
        for funder, points in (("formosa-air", 1_000), ("wallet-pay", 500)):
            await lots.credit(
                session,
                rules,
                operation_id=f"{funder}:credit",
                member_ref="m-2",
                points=points,
                funded_by=funder,
                now=earned,
            )
        await lots.debit(session, operation_id="spend:debit", member_ref="m-2", points=700, now=spent)
        await lots.reverse(
            session, rules, operation_id="spend:reverse-debit", reverses="spend:debit", points=100, now=spent
        )
        held = await lots.outstanding(session)
    december = [await books.partner_books(funder, "2026-12") for funder in ("formosa-air", "wallet-pay")]
    assert [side.coalition.figures.outstanding for side in december if side.coalition] == [400, 500]
    assert sum(side.coalition.figures.outstanding for side in december if side.coalition) == held
    async with settlement.db.transaction() as session:
        batch = await expire_batch(session, rules, settlement.ledger, now=LAPSES_2027, limit=100)
    assert batch.points == 900
    january = (await books.partner_books("formosa-air", "2027-01")).coalition
    assert january is not None
    assert (january.figures.breakage, january.figures.breakage_to_date, january.figures.outstanding) == (400, 400, 0)
    assert january.figures.maturing == 1_000 and january.figures.expiry_rate is None, "nothing matured in 2026"
    assert (await books.partner_books("formosa-air", "2026-12")).coalition.figures.breakage == 0  # type: ignore[union-attr]


async def test_points_a_cancel_gives_back_after_their_lot_expired_survive_the_next_expiry_run(
    settlement: SettlementService, books: BooksService, clock: FrozenClock
) -> None:
    """A member earns 100 points in November 2026 (good to the end of 2027, funded by Fresh
    Mart) and spends 60 on a reward in December 2027; the other 40 lapse at the first instant of
    2028. In January the redemption is cancelled: the 60 come back in a lot that lives as points
    earned then do (to the end of 2029), so the next expiry run leaves them. The books and the
    statements count 40 points lapsed, no more, and 60 outstanding."""

    async def fresh_mart_funds(session: Any, saga_id: str) -> str | None:
        return "fresh-mart"

    point = CoalitionConnector(POINT, settlement.db, clock, fresh_mart_funds, CatalogCache(settlement.db, ttl=0))
    expiry = CoalitionService(settlement.db, settlement.ledger, clock)
    async with settlement.db.transaction() as session:
        session.add(Member(id="m-3", created_at=NOVEMBER))
    await point.credit("earn:credit", "m-3", 100)
    await post(settlement, [conversion("earn", "fresh-mart", POINT, 10_000, points=(1_000, 100))])
    clock.current = datetime(2027, 12, 20, tzinfo=TAIPEI).astimezone(UTC)
    await point.debit("reward:debit", "m-3", 60)
    await post(settlement, [points_redemption("reward", POINT, "formosa-air", 60, 6_000, 0, at=clock.now())])
    clock.current = datetime(2028, 1, 1, tzinfo=TAIPEI).astimezone(UTC)
    assert (await expiry.expire()).points == 40

    clock.current = datetime(2028, 1, 5, tzinfo=TAIPEI).astimezone(UTC)  # the cancel
    await point.reverse("reward:reverse-debit", "reward:debit")
    async with settlement.db.transaction() as session:
        await settlement.ledger.reverse(
            session, "t-reward", transaction_id="t-reward-back", effective_at=clock.now(), kind=REVERSAL_KIND
        )
    clock.current = datetime(2028, 1, 20, tzinfo=TAIPEI).astimezone(UTC)
    assert (await expiry.expire()).points == 0, "the points given back are not due"
    account = await point.account("m-3")
    assert (account.balance, [(lot.points, lot.expires_on.isoformat()) for lot in account.expiring]) == (
        60,
        [(60, "2029-12-31")],
    )
    async with settlement.db.transaction() as session:
        checked = await check_point(session, await point_rules(session))
        verification = await verify_ledger(session)
    assert (checked.problem, checked.outstanding, checked.in_flight) == (None, 60, 0)
    assert verification.ok, verification.problem

    january = (await books.partner_books("fresh-mart", "2028-01")).coalition
    assert january is not None
    assert (january.figures.breakage, january.figures.breakage_to_date, january.figures.outstanding) == (40, 40, 60)
    february = (await books.partner_books("fresh-mart", "2028-02")).coalition
    assert february is not None and february.figures.expiry_rate == Fraction(40, 100), "40 of the lot's 100 lapsed"

    for period in ("2026-11", "2027-12", "2028-01"):
        await close(settlement, clock, period)
    statement = await served(settlement, EXCHANGE, "2028-01")
    assert statement.coalition_liability is not None and statement.coalition_liability.points == 60
    assert [line.amount for line in statement.lines if line.kind == EXPIRY_KIND] == [40 * 100]
