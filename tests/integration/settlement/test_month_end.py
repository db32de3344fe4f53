"""A partner's finance team closing November with the exchange (SQLite and PostgreSQL): its
records disagree with the ledger the ways real records do, and the reconciliation names every
difference with its line, its amounts and what to do next, while the file's total, the
statement's net and the breaks between them agree to the cent."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal

from exchange.api.types.settlement import ReconciliationBreak
from exchange.services.settlement import SettlementService
from exchange.testing.clock import FrozenClock
from tests.integration.settlement.conftest import TAIPEI, close, conversion, post, redemption, served

#: The last second of November in the coalition's time zone (15:59:59 UTC): November's.
LAST_SECOND_IN_TAIPEI = datetime(2026, 11, 30, 23, 59, 59, tzinfo=TAIPEI)
#: The last second of November in UTC (07:59:59 on 1 December in Taipei): December's.
LAST_SECOND_IN_UTC = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
EARLY_DECEMBER = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)

#: Fresh Mart's own records of November, as its ERP exported them (its dates are its own).
RECORDS = """reference,amount,counterparty,date
conversion:out,-100.00,wallet-pay,2026-11-03
conversion:cent,12.35,wallet-pay,2026-11-10
conversion:twice,50.00,formosa-air,2026-11-12
conversion:twice,50.00,formosa-air,2026-11-12
redemption:refunded,24.00,wallet-pay,2026-11-15
conversion:taipei-eom,20.00,happy-card,2026-11-30
conversion:utc-eom,30.00,happy-card,2026-11-30
conversion:december,-5.00,tune-stream,2026-12-02
conversion:not-ours,4.00,formosa-air,2026-11-20
"""


async def november_and_december(settlement: SettlementService, clock: FrozenClock) -> None:
    """November's business for fresh-mart, December's first days, November closed; the
    redemption is refunded in December, after November closed."""
    await post(
        settlement,
        [
            conversion("out", "fresh-mart", "wallet-pay", 10_000, fee=200),
            conversion("cent", "wallet-pay", "fresh-mart", 1_234),
            conversion("twice", "formosa-air", "fresh-mart", 5_000),
            conversion("left-out", "fresh-mart", "tune-stream", 700),
            redemption("refunded", "wallet-pay", "fresh-mart", 2_400),
            conversion("taipei-eom", "happy-card", "fresh-mart", 2_000, at=LAST_SECOND_IN_TAIPEI),
            conversion("utc-eom", "happy-card", "fresh-mart", 3_000, at=LAST_SECOND_IN_UTC),
            conversion("december", "fresh-mart", "tune-stream", 500, at=EARLY_DECEMBER),
            conversion("not-ours", "formosa-air", "wallet-pay", 400),
        ],
    )
    await close(settlement, clock, "2026-11")
    async with settlement.db.transaction() as session:
        await settlement.ledger.reverse(session, "t-refunded", transaction_id="t-refund", effective_at=clock.now())


def amounts(text: str) -> Decimal:
    return sum((Decimal(row["amount"]) for row in csv.DictReader(io.StringIO(text))), Decimal("0"))


async def test_every_difference_is_named_with_its_line_amounts_and_next_step(
    settlement: SettlementService, clock: FrozenClock
) -> None:
    await november_and_december(settlement, clock)
    statement = await served(settlement, "fresh-mart", "2026-11")
    document = json.loads(statement.json())
    assert (document["period"]["start"], document["period"]["end"], document["period"]["timeZone"]) == (
        "2026-10-31T16:00:00Z",
        "2026-11-30T16:00:00Z",
        "Asia/Taipei",
    ), "November is cut on Taipei's calendar: its last instant is 15:59:59 UTC on the 30th"
    on_statement = {line["reference"] for line in document["lines"]}
    assert "conversion:taipei-eom" in on_statement and "conversion:utc-eom" not in on_statement

    view = await settlement.import_records(
        "fresh-mart", "2026-11", io.BytesIO(RECORDS.encode()), by="fresh-mart-client"
    )
    imported = view.reconciliation
    assert (
        imported.lines,
        imported.matched,
        imported.amount_mismatch,
        imported.missing_in_ledger,
        imported.duplicate,
        imported.missing_in_partner,
    ) == (9, 4, 1, 3, 1, 1)

    report = "".join([chunk async for chunk in settlement.break_report(imported)])
    rows = {
        (row["kind"], row["reference"], row["line"]): row
        for row in csv.DictReader(io.StringIO(report.removeprefix("\ufeff")))
    }
    figures = {key: (row["partner_amount"], row["ledger_amount"], row["difference"]) for key, row in rows.items()}
    assert figures == {
        ("AMOUNT_MISMATCH", "conversion:cent", "3"): ("12.35", "12.34", "0.01"),
        ("DUPLICATE", "conversion:twice", "5"): ("50.00", "50.00", "50.00"),
        ("MISSING_IN_LEDGER", "conversion:utc-eom", "8"): ("30.00", "", "30.00"),
        ("MISSING_IN_LEDGER", "conversion:december", "9"): ("-5.00", "", "-5.00"),
        ("MISSING_IN_LEDGER", "conversion:not-ours", "10"): ("4.00", "", "4.00"),
        ("MISSING_IN_PARTNER", "conversion:left-out", ""): ("", "-7.00", "7.00"),
    }
    # The UTC-dated item and the next month's line are December's in the ledger: the report says so.
    for key in (("MISSING_IN_LEDGER", "conversion:utc-eom", "8"), ("MISSING_IN_LEDGER", "conversion:december", "9")):
        row = rows[key]
        assert row["ledger_periods"] == "2026-12"
        assert "The ledger has this reference in 2026-12" in row["next_step"]
    # Another partner's item is not revealed to be anyone's.
    assert rows[("MISSING_IN_LEDGER", "conversion:not-ours", "10")]["ledger_periods"] == ""
    assert "more than once" in rows[("DUPLICATE", "conversion:twice", "5")]["next_step"]
    assert "add it to your records" in rows[("MISSING_IN_PARTNER", "conversion:left-out", "")]["next_step"]

    # The proof: the file's total, the statement's net, and the breaks between them, to the cent.
    currency = view.currency
    records, ledger = currency.from_minor(view.totals.records), currency.from_minor(view.totals.ledger)
    assert records == amounts(RECORDS) == Decimal("85.35")
    assert ledger == Decimal(document["totals"]["net"]) == currency.from_minor(statement.net)
    assert ledger == Decimal("-0.66")  # -100.00 + 12.34 + 50.00 - 7.00 + 24.00 + 20.00
    breaks_effect = (
        Decimal("0.01") + Decimal("50.00") + Decimal("30.00") - Decimal("5.00") + Decimal("4.00") + Decimal("7.00")
    )
    assert currency.from_minor(view.totals.difference) == records - ledger == breaks_effect
    assert view.totals == (await settlement.reconciliation("fresh-mart", "2026-11")).totals


async def test_a_refund_after_the_month_closed_is_next_months_line_naming_what_it_reverses(
    settlement: SettlementService, clock: FrozenClock
) -> None:
    await november_and_december(settlement, clock)
    await close(settlement, clock, "2026-12")
    december = json.loads((await served(settlement, "fresh-mart", "2026-12")).json())
    refund = [line for line in december["lines"] if line["reference"] == "redemption:refunded"]
    assert [(line["amount"], line["effectivePeriod"], line["reverses"]) for line in refund] == [
        ("-24.00", "2026-12", {"transaction": "t-refunded", "period": "2026-11"})
    ]
    records = (
        "reference,amount,date\n"
        "redemption:refunded,-24.00,2026-12-20\n"
        "conversion:utc-eom,30.00,2026-11-30\n"
        "conversion:december,-5.00,2026-12-02\n"
    )
    view = await settlement.import_records("fresh-mart", "2026-12", io.BytesIO(records.encode()), by="fresh-mart")
    # Every line matches: the three are December's in the ledger, whatever dates the partner gave them.
    assert (view.reconciliation.matched, view.reconciliation.breaks) == (3, 0)
    assert view.totals.records == view.totals.ledger == (await served(settlement, "fresh-mart", "2026-12")).net


#: A month's records with one break of every class: a cent off (against fresh-mart), a line
#: repeated, a line the ledger lacks (fresh-mart owing) and a reference left out (owed to it).
BREAKING_RECORDS = """reference,amount,counterparty
conversion:kept,40.00,formosa-air
conversion:cent,-12.35,wallet-pay
conversion:twice,15.00,wallet-pay
conversion:twice,15.00,wallet-pay
conversion:extra,-3.50,tune-stream
"""


async def test_each_breaks_difference_is_what_it_puts_between_the_totals_so_they_sum_to_the_gap(
    settlement: SettlementService, clock: FrozenClock
) -> None:
    await post(
        settlement,
        [
            conversion("kept", "formosa-air", "fresh-mart", 4_000),
            conversion("cent", "fresh-mart", "wallet-pay", 1_234),
            conversion("twice", "wallet-pay", "fresh-mart", 1_500),
            conversion("left-out", "wallet-pay", "fresh-mart", 2_500),
        ],
    )
    await close(settlement, clock, "2026-11")
    view = await settlement.import_records(
        "fresh-mart", "2026-11", io.BytesIO(BREAKING_RECORDS.encode()), by="fresh-mart-client"
    )
    currency = view.currency

    # As GraphQL (and so the consoles' tables and the upload's breaks) shows each break.
    shown = {
        (found.kind.value, found.reference): found.difference_value.amount
        for found in map(ReconciliationBreak.of, await settlement.breaks(view.reconciliation))
    }
    assert shown == {
        ("AMOUNT_MISMATCH", "conversion:cent"): Decimal("-0.01"),  # -12.35 against the ledger's -12.34
        ("DUPLICATE", "conversion:twice"): Decimal("15.00"),  # a line too many: its whole amount
        ("MISSING_IN_LEDGER", "conversion:extra"): Decimal("-3.50"),  # its whole amount
        ("MISSING_IN_PARTNER", "conversion:left-out"): Decimal("-25.00"),  # the ledger's 25.00 negated
    }
    # As the break report (the CSV both consoles download) writes it.
    report = "".join([chunk async for chunk in settlement.break_report(view.reconciliation)])
    written = {
        (row["kind"], row["reference"]): Decimal(row["difference"])
        for row in csv.DictReader(io.StringIO(report.removeprefix("\ufeff")))
    }
    assert written == shown

    records, ledger = currency.from_minor(view.totals.records), currency.from_minor(view.totals.ledger)
    assert records == amounts(BREAKING_RECORDS) == Decimal("54.15")
    assert ledger == currency.from_minor((await served(settlement, "fresh-mart", "2026-11")).net)
    assert ledger == Decimal("67.66")  # 40.00 - 12.34 + 15.00 + 25.00
    difference = currency.from_minor(view.totals.difference)
    assert difference == records - ledger == sum(shown.values()) == Decimal("-13.51")
