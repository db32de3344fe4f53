"""A month a finance team finds awkward: conversions both ways between the same two partners,
money values with half-cents (each rounded when its conversion was priced, so the lines' sum is
not the exact total rounded once), a redemption cancelled within the month, a conversion whose
credit the target refused (it never reaches the ledger), and one completed after the month
closed. Every figure they check: each statement's net is its lines' exact sum, the two
partners' statements mirror each other to the cent, the books net to the statements, and a
records file written from the statement matches while the refused and the late conversion are
breaks that say where they are."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from exchange.money import Currency
from exchange.rewards.clearing import REVERSAL_KIND
from exchange.services.books import BooksService
from exchange.services.settlement import SettlementService
from exchange.testing.clock import FrozenClock
from tests.integration.settlement.conftest import NOVEMBER, close, conversion, points_redemption, post, served

TWD = Currency("TWD", 2)
FRESH, WALLET = "fresh-mart", "wallet-pay"
#: A point worth a fraction of a cent, and points that each put a half-cent to round.
POINT_VALUE = Fraction("0.035")
HALF_CENT_POINTS = (1, 5, 9, 13)
FEE_PERCENT = Fraction(25, 1000)


def priced(points: int) -> tuple[int, int]:
    """A conversion's money value and fee in cents, each rounded as pricing rounds them (rules 1
    and 2 of ``exchange.pricing.rules``: ``ROUND_MONEY``, half-even, once per conversion)."""
    value = TWD.to_minor(TWD.round(POINT_VALUE * points))
    return value, fee_of(value)


def fee_of(value: int) -> int:
    """The fee on a money value of ``value`` cents, in cents (half-even: 3.75 → 4, 8.325 → 8)."""
    return TWD.to_minor(TWD.round(Fraction(value, 100) * FEE_PERCENT))


@pytest.fixture
async def awkward_month(settlement: SettlementService, clock: FrozenClock) -> SettlementService:
    out = [
        conversion(f"out-{n}", FRESH, WALLET, *priced(n), points=(n, 1), at=NOVEMBER + timedelta(minutes=n))
        for n in HALF_CENT_POINTS
    ]
    back = [
        conversion(f"back-{cents}", WALLET, FRESH, cents, fee_of(cents), points=(cents, cents * 10))
        for cents in (150, 210, 333)
    ]
    await post(
        settlement,
        [
            *out,
            *back,
            points_redemption("kept", FRESH, WALLET, 71, 249, 6),
            points_redemption("cancelled", FRESH, WALLET, 43, 151, 4),
        ],
    )
    async with settlement.db.transaction() as session:
        await settlement.ledger.reverse(
            session, "t-cancelled", transaction_id="t-cancelled-back", effective_at=clock.now(), kind=REVERSAL_KIND
        )
    await close(settlement, clock, "2026-11")
    await post(settlement, [conversion("late", FRESH, WALLET, *priced(9), points=(9, 1), at=NOVEMBER)])
    return settlement


async def test_each_line_is_rounded_once_when_priced_and_the_net_is_their_exact_sum(
    awkward_month: SettlementService,
) -> None:
    statement = await served(awkward_month, FRESH, "2026-11")
    document = statement.document()
    lines = document["lines"]
    out = [line for line in lines if line["reference"].startswith("conversion:out-")]
    assert sorted(Decimal(line["amount"]) for line in out if line["counterparty"] == WALLET) == sorted(
        -Decimal(priced(n)[0] - priced(n)[1]) / 100 for n in HALF_CENT_POINTS
    )
    assert Decimal(document["totals"]["net"]) == sum(Decimal(line["amount"]) for line in lines)
    # Rounded once per conversion, the out values are 0.04 + 0.18 + 0.32 + 0.46 = 1.00; the
    # exact total rounded once would be 28 × 0.035 = 0.98. The statement carries the first.
    values = sum(priced(n)[0] for n in HALF_CENT_POINTS)
    assert (values, TWD.to_minor(TWD.round(POINT_VALUE * sum(HALF_CENT_POINTS)))) == (100, 98)
    paid = -sum(Decimal(line["amount"]) for line in out)
    assert paid == Decimal(values) / 100


async def test_the_two_partners_statements_mirror_each_other_to_the_cent(awkward_month: SettlementService) -> None:
    fresh = (await served(awkward_month, FRESH, "2026-11")).document()
    wallet = (await served(awkward_month, WALLET, "2026-11")).document()

    def with_(document: dict[str, object], other: str) -> Counter[str]:
        found: Counter[str] = Counter()
        for line in document["lines"]:  # type: ignore[attr-defined]
            if line["counterparty"] == other:
                found[line["reference"]] += int(Decimal(line["amount"]) * 100)
        return found

    theirs = with_(wallet, FRESH)
    assert with_(fresh, WALLET) == Counter({reference: -amount for reference, amount in theirs.items()})
    assert with_(fresh, WALLET)["redemption:cancelled"] == 0, "cancelled within the month: nets to zero"
    assert not any(line["reference"] == "conversion:late" for line in fresh["lines"])  # type: ignore[index]
    (fresh_side,) = [c for c in fresh["counterparties"] if c["counterparty"] == WALLET]
    (wallet_side,) = [c for c in wallet["counterparties"] if c["counterparty"] == FRESH]
    assert (fresh_side["payable"], fresh_side["receivable"], Decimal(fresh_side["net"])) == (
        wallet_side["receivable"],
        wallet_side["payable"],
        -Decimal(wallet_side["net"]),
    ), "both ways between the same two partners: each one's gross figures are the other's"


async def test_the_books_net_to_the_statement_and_their_parts_foot(
    awkward_month: SettlementService, books: BooksService
) -> None:
    for partner in (FRESH, WALLET):
        statement = await served(awkward_month, partner, "2026-11")
        figures = (await books.partner_books(partner, "2026-11")).figures
        assert figures.money_net == statement.net == sum(line.amount for line in statement.lines), partner
        parts = figures.money_for_issued + figures.money_for_redeemed + figures.money_for_rewards
        assert (parts, figures.money_other) == (figures.money_net, 0), partner


async def test_a_file_written_from_the_statement_matches_and_the_refused_and_late_conversions_say_where_they_are(
    awkward_month: SettlementService,
) -> None:
    """The finance team writes one line per reference, their legs summed, as SETTLEMENT.md asks;
    the cancelled redemption at 0.00, and the two conversions their own system booked in
    November: one the target refused (never in the ledger) and one completed after the month
    closed (in December's)."""
    statement = (await served(awkward_month, FRESH, "2026-11")).document()
    by_reference: Counter[str] = Counter()
    for line in statement["lines"]:
        by_reference[line["reference"]] += int(Decimal(line["amount"]) * 100)
    rows = [f"{reference},{TWD.from_minor(amount)}" for reference, amount in by_reference.items()]
    late = -priced(9)[0]
    text = "\r\n".join(
        ["reference,amount", *rows, "conversion:refused,-0.32", f"conversion:late,{TWD.from_minor(late)}", "", ""]
    )
    view = await awkward_month.import_records(FRESH, "2026-11", io.BytesIO(b"\xef\xbb\xbf" + text.encode()), by=FRESH)
    found = view.reconciliation
    assert (found.lines, found.matched, found.missing_in_ledger, found.breaks) == (len(rows) + 2, len(rows), 2, 2)
    assert view.totals.ledger == statement_net(statement)
    assert view.totals.difference == -32 + late
    report = "".join([part async for part in awkward_month.break_report(found)])
    breaks = {row["reference"]: row for row in csv.DictReader(io.StringIO(report.removeprefix("\ufeff")))}
    assert breaks["conversion:late"]["ledger_periods"] == "2026-12"
    assert breaks["conversion:refused"]["ledger_periods"] == ""
    assert sum(Decimal(row["difference"]) for row in breaks.values()) == Decimal(view.totals.difference) / 100


def statement_net(document: dict[str, object]) -> int:
    return int(Decimal(document["totals"]["net"]) * 100)  # type: ignore[index]
