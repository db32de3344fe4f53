"""Reconciling a partner's records: every class of line, refused files, resolving breaks, sign-off."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from sqlalchemy import func
from sqlmodel import select

from exchange.conversions.models import ConversionStatus
from exchange.db.availability import DatabaseUnavailable
from exchange.db.database import Database
from exchange.errors import BadUserInput, ErrorCode, IdempotencyConflict
from exchange.ledger.errors import PeriodNotClosed
from exchange.ledger.models import LedgerTransaction
from exchange.ledger.verify import verify_ledger
from exchange.services.settlement import SettlementService
from exchange.settlement import reconciliation
from exchange.settlement.break_kinds import BreakKind, Resolution
from exchange.settlement.breaks import ResolveRequest
from exchange.settlement.errors import (
    BadAdjustment,
    MalformedRecords,
    NotReconciled,
    PartnerSignedOff,
    ResolvedBreaksWouldBeLost,
    UnresolvedBreaks,
)
from exchange.settlement.keys import StatementKeys
from exchange.settlement.models import Reconciliation, ReconciliationBreak, RecordsSource
from exchange.testing.clock import FrozenClock
from tests.fakes import Fault
from tests.integration import test_conversion_saga as conversions
from tests.integration.settlement.conftest import (
    ISSUER,
    NOVEMBER,
    RETENTION_YEARS,
    SECRET,
    close,
    conversion,
    post,
    redemption,
    served,
)
from tests.outages import kill_connection_of

FILE = """reference,amount,counterparty,date
conversion:c1,-100.00,wallet-pay,2026-11-20
redemption:r1,24.00,wallet-pay,
conversion:c2,12.22,,
conversion:zzz,50.00,formosa-air,2026-11-29
conversion:c1,-100,,
"""


def lines(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())


@pytest.fixture
async def closed(settlement: SettlementService, clock: FrozenClock) -> SettlementService:
    return await closed_november(settlement, clock)


async def closed_november(settlement: SettlementService, clock: FrozenClock) -> SettlementService:
    await post(
        settlement,
        [
            conversion("c1", "fresh-mart", "wallet-pay", 10_000, fee=200),
            redemption("r1", "wallet-pay", "fresh-mart", 2_500, fee=25),
            conversion("c2", "formosa-air", "fresh-mart", 1_234, fee=12),
            conversion("c3", "wallet-pay", "fresh-mart", 500),
            conversion("c4", "fresh-mart", "tune-stream", 700),
        ],
    )
    async with settlement.db.transaction() as session:
        await settlement.ledger.reverse(session, "t-c3", transaction_id="t-c3-reversal", effective_at=clock.now())
    await close(settlement, clock, "2026-11")
    return settlement


async def breaks_of(service: SettlementService, reconciliation: Reconciliation) -> dict[str, ReconciliationBreak]:
    found = await service.breaks(reconciliation)
    return {f"{view.row.kind}:{view.row.reference}:{view.row.line}": view.row for view in found}


async def test_each_line_is_classified_against_the_ledger(closed: SettlementService) -> None:
    view = await closed.import_records("fresh-mart", "2026-11", lines(FILE), by="fresh-mart-client")
    imported = view.reconciliation
    assert (
        imported.lines,
        imported.matched,
        imported.amount_mismatch,
        imported.missing_in_ledger,
        imported.duplicate,
        imported.missing_in_partner,
    ) == (5, 2, 1, 1, 1, 1)
    assert (view.unresolved, imported.sequence, imported.imported_by, imported.source) == (
        4,
        1,
        "fresh-mart-client",
        RecordsSource.PARTNER_FILE,
    )
    found = await breaks_of(closed, imported)
    assert {key: (row.partner_amount, row.ledger_amount) for key, row in found.items()} == {
        "AMOUNT_MISMATCH:redemption:r1:3": (2_400, 2_475),
        "MISSING_IN_LEDGER:conversion:zzz:5": (5_000, None),
        "DUPLICATE:conversion:c1:6": (-10_000, -10_000),
        "MISSING_IN_PARTNER:conversion:c4:None": (None, -700),
    }
    missing = found["MISSING_IN_LEDGER:conversion:zzz:5"]
    assert (missing.counterparty, str(missing.partner_date)) == ("formosa-air", "2026-11-29")
    assert list(found) == sorted(found, key=lambda key: found[key].id or 0)  # file order, ledger-only last


async def test_a_malformed_file_is_refused_whole_and_nothing_is_imported(closed: SettlementService) -> None:
    broken = FILE + "conversion:c9,12.345,,\n" + "conversion:c10,1,,\n"
    with pytest.raises(MalformedRecords) as caught:
        await closed.import_records("fresh-mart", "2026-11", lines(broken), by="fresh-mart-client")
    assert caught.value.line == 7 and "12.345" in caught.value.reason
    async with closed.db.transaction() as session:
        assert (await session.exec(select(func.count()).select_from(Reconciliation))).one() == 0
        assert (await session.exec(select(func.count()).select_from(ReconciliationBreak))).one() == 0
    imported = await closed.import_records("fresh-mart", "2026-11", lines(FILE), by="fresh-mart-client")
    assert imported.reconciliation.sequence == 1


async def test_an_import_whose_connection_is_killed_changes_nothing_and_importing_again_makes_one(
    pg_settlement: SettlementService, pg_db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The only test that breaks a reconciliation midway (the connection killed by
    ``pg_terminate_backend`` once the file is staged): the import answers the typed, retryable
    ``DatabaseUnavailable``, nothing is recorded, and importing the file again makes the one
    reconciliation, first of its period, with every line classified once."""
    service = await closed_november(pg_settlement, clock)
    real = reconciliation.stage_ledger_amounts

    async def killed(session, *args):  # type: ignore[no-untyped-def]
        await kill_connection_of(session, pg_db)
        await real(session, *args)

    with monkeypatch.context() as dying:
        dying.setattr(reconciliation, "stage_ledger_amounts", killed)
        with pytest.raises(DatabaseUnavailable):
            await service.import_records("fresh-mart", "2026-11", lines(FILE), by="fresh-mart-client")
    async with service.db.transaction() as session:
        assert (await session.exec(select(func.count()).select_from(Reconciliation))).one() == 0
    imported = (await service.import_records("fresh-mart", "2026-11", lines(FILE), by="x")).reconciliation
    assert (imported.sequence, imported.lines, imported.matched, imported.duplicate) == (1, 5, 2, 1)
    async with service.db.transaction() as session:
        assert (await session.exec(select(func.count()).select_from(ReconciliationBreak))).one() == 4


async def test_records_are_taken_only_for_a_closed_period(closed: SettlementService) -> None:
    with pytest.raises(PeriodNotClosed) as caught:
        await closed.import_records("fresh-mart", "2026-12", lines(FILE), by="x")
    assert caught.value.code is ErrorCode.PERIOD_NOT_CLOSED
    assert caught.value.message == (
        "period 2026-12 is not closed: settlement staff close a period once it is over (c"
        "losePeriod, or exchange settle close); partners hear of it by the period.closed webhook"
    ), "what to do next, and for whom"


async def test_importing_again_replaces_the_reconciliation_until_a_break_is_resolved(closed: SettlementService) -> None:
    first = (await closed.import_records("fresh-mart", "2026-11", lines(FILE), by="x")).reconciliation
    corrected = FILE.replace("redemption:r1,24.00", "redemption:r1,24.75")
    second = (await closed.import_records("fresh-mart", "2026-11", lines(corrected), by="x")).reconciliation
    assert (second.sequence, second.amount_mismatch, second.matched) == (2, 0, 3)
    assert (await closed.reconciliation("fresh-mart", "2026-11")).reconciliation.id == second.id
    assert first.id != second.id
    retried = await closed.import_records("fresh-mart", "2026-11", lines(corrected), by="x")
    assert (retried.reconciliation.id, retried.unresolved) == (second.id, 3), "the same file: nothing imported"
    row = next(iter((await breaks_of(closed, second)).values()))
    await closed.resolve(ResolveRequest(row.id or 0, Resolution.ACCEPT_LEDGER, "the ledger is right", "staff"))
    with pytest.raises(ResolvedBreaksWouldBeLost):
        await closed.import_records("fresh-mart", "2026-11", lines(FILE), by="x")
    retried = await closed.import_records("fresh-mart", "2026-11", lines(corrected), by="x")
    assert (retried.reconciliation.id, retried.unresolved) == (second.id, 2)


async def test_accepting_the_ledger_records_who_and_why_and_posts_nothing(closed: SettlementService) -> None:
    imported = (await closed.import_records("fresh-mart", "2026-11", lines(FILE), by="x")).reconciliation
    duplicate = (await breaks_of(closed, imported))["DUPLICATE:conversion:c1:6"]
    resolution = (
        await closed.resolve(
            ResolveRequest(
                duplicate.id or 0, Resolution.ACCEPT_LEDGER, "  sent twice by their export  ", "alice@settlement"
            )
        )
    ).resolution
    assert resolution is not None
    assert (resolution.resolution, resolution.reason, resolution.resolved_by) == (
        "ACCEPT_LEDGER",
        "sent twice by their export",
        "alice@settlement",
    )
    assert (resolution.amount, resolution.transaction_id) == (None, None)
    assert (await closed.reconciliation("fresh-mart", "2026-11")).unresolved == 3


async def test_an_adjustment_is_a_balanced_transaction_in_the_next_open_period(
    closed: SettlementService, clock: FrozenClock
) -> None:
    imported = (await closed.import_records("fresh-mart", "2026-11", lines(FILE), by="x")).reconciliation
    found = await breaks_of(closed, imported)
    mismatch = found["AMOUNT_MISMATCH:redemption:r1:3"]
    resolution = (
        await closed.resolve(
            ResolveRequest(mismatch.id or 0, Resolution.ADJUST, "their figure is the contract price", "bob@settlement")
        )
    ).resolution
    assert resolution is not None
    assert (resolution.amount, resolution.counterparty) == (-75, "wallet-pay")
    assert resolution.transaction_id == f"adjustment:break:{mismatch.id}"
    async with closed.db.transaction() as session:
        posted = (
            await session.exec(select(LedgerTransaction).where(LedgerTransaction.id == resolution.transaction_id))
        ).one()
        legs = await closed.ledger.legs_of(session, posted.seq)
        assert (await verify_ledger(session)).ok
    assert (posted.period, posted.kind, posted.reference, posted.effective_at) == (
        "2026-12",
        "adjustment",
        f"break:{mismatch.id}",
        clock.now(),
    )
    assert [(leg.account.code, leg.amount) for leg in legs] == [
        ("partner-clearing:fresh-mart", -75),
        ("partner-clearing:wallet-pay", 75),
    ]
    again = await closed.resolve(
        ResolveRequest(mismatch.id or 0, Resolution.ADJUST, "their figure is the contract price", "bob@settlement")
    )
    assert again.resolution is not None and again.resolution.transaction_id == resolution.transaction_id
    with pytest.raises(IdempotencyConflict):
        await closed.resolve(
            ResolveRequest(mismatch.id or 0, Resolution.ACCEPT_LEDGER, "changed my mind", "bob@settlement")
        )

    await close(closed, clock, "2026-12")
    december = await served(closed, "fresh-mart", "2026-12")
    assert [(line.reference, line.category, line.counterparty, line.amount) for line in december.lines] == [
        (f"break:{mismatch.id}", "adjustment", "wallet-pay", -75)
    ]


async def test_adjustments_default_to_what_the_partner_line_and_the_ledger_say(closed: SettlementService) -> None:
    imported = (await closed.import_records("fresh-mart", "2026-11", lines(FILE), by="x")).reconciliation
    found = await breaks_of(closed, imported)
    missing_here = (
        await closed.resolve(
            ResolveRequest(
                found["MISSING_IN_LEDGER:conversion:zzz:5"].id or 0, Resolution.ADJUST, "confirmed by formosa-air", "s"
            )
        )
    ).resolution
    missing_there = (
        await closed.resolve(
            ResolveRequest(
                found["MISSING_IN_PARTNER:conversion:c4:None"].id or 0, Resolution.ADJUST, "never happened", "s"
            )
        )
    ).resolution
    assert missing_here is not None and missing_there is not None
    assert (missing_here.amount, missing_here.counterparty) == (5_000, "formosa-air")
    assert (missing_there.amount, missing_there.counterparty) == (700, "tune-stream")


async def test_an_adjustment_needs_an_amount_and_a_counterparty_it_can_name(closed: SettlementService) -> None:
    imported = (await closed.import_records("fresh-mart", "2026-11", lines(FILE), by="x")).reconciliation
    found = await breaks_of(closed, imported)
    duplicate = found["DUPLICATE:conversion:c1:6"].id or 0
    with pytest.raises(BadAdjustment, match="non-zero amount"):
        await closed.resolve(ResolveRequest(duplicate, Resolution.ADJUST, "why not", "s"))
    with pytest.raises(BadAdjustment, match="name the adjustment's counterparty"):
        # conversion:c1 involves both wallet-pay and the exchange's fee
        await closed.resolve(ResolveRequest(duplicate, Resolution.ADJUST, "why not", "s", amount=Decimal("1.00")))
    with pytest.raises(BadAdjustment, match="finer than the currency's minor unit"):
        await closed.resolve(
            ResolveRequest(duplicate, Resolution.ADJUST, "why", "s", amount=Decimal("0.001"), counterparty="wallet-pay")
        )
    with pytest.raises(BadAdjustment, match="against itself"):
        await closed.resolve(
            ResolveRequest(duplicate, Resolution.ADJUST, "why", "s", amount=Decimal("1.00"), counterparty="fresh-mart")
        )
    with pytest.raises(BadAdjustment, match=r"no program has id 'nobody'; the programs are .*EXCHANGE"):
        await closed.resolve(
            ResolveRequest(duplicate, Resolution.ADJUST, "why", "s", amount=Decimal("1.00"), counterparty="nobody")
        )
    with pytest.raises(BadUserInput, match="reason"):
        await closed.resolve(ResolveRequest(duplicate, Resolution.ACCEPT_LEDGER, "   ", "s"))
    with pytest.raises(BadUserInput, match="posts nothing"):
        await closed.resolve(ResolveRequest(duplicate, Resolution.ACCEPT_LEDGER, "why", "s", amount=Decimal("1.00")))
    resolved = await closed.resolve(
        ResolveRequest(duplicate, Resolution.ADJUST, "fee refund", "s", amount=Decimal("1.00"), counterparty="EXCHANGE")
    )
    assert resolved.resolution is not None and resolved.resolution.counterparty == "EXCHANGE"


async def test_sign_off_needs_every_break_resolved_and_then_freezes_the_period(
    closed: SettlementService, clock: FrozenClock
) -> None:
    with pytest.raises(NotReconciled):
        await closed.sign_off("fresh-mart", "2026-11", by="s", note=None)
    imported = (await closed.import_records("fresh-mart", "2026-11", lines(FILE), by="x")).reconciliation
    with pytest.raises(UnresolvedBreaks) as caught:
        await closed.sign_off("fresh-mart", "2026-11", by="s", note=None)
    assert caught.value.extensions() == {"code": "UNRESOLVED_BREAKS", "unresolved": 4}
    for row in (await breaks_of(closed, imported)).values():
        await closed.resolve(ResolveRequest(row.id or 0, Resolution.ACCEPT_LEDGER, "agreed on the phone", "s"))
    clock.advance(hours=1)
    position = (await closed.sign_off("fresh-mart", "2026-11", by="carol@settlement", note="all agreed")).position
    assert (position.signed_off_by, position.signed_off_at, position.sign_off_note) == (
        "carol@settlement",
        clock.now(),
        "all agreed",
    )
    corrected = FILE.replace("redemption:r1,24.00", "redemption:r1,24.75")
    with pytest.raises(PartnerSignedOff) as refused:
        await closed.import_records("fresh-mart", "2026-11", lines(corrected), by="x")
    assert refused.value.code is ErrorCode.PERIOD_CLOSED
    with pytest.raises(PartnerSignedOff):
        await closed.import_records("fresh-mart", "2026-11", lines(FILE + "conversion:c1,1.234,\n"), by="x")
    again = await closed.import_records("fresh-mart", "2026-11", lines(FILE), by="y")
    assert (again.reconciliation.id, again.unresolved) == (imported.id, 0), "a retry: its reconciliation"
    with pytest.raises(PartnerSignedOff):
        await closed.sign_off("fresh-mart", "2026-11", by="s", note=None)
    other = (await closed.import_records("wallet-pay", "2026-11", lines("reference,amount\n"), by="y")).reconciliation
    assert (other.lines, other.missing_in_partner) == (0, 2)  # c1 and r1; c3 and its reversal net to zero


async def test_the_counts_hold_for_a_file_larger_than_a_batch(closed: SettlementService) -> None:
    big = "reference,amount\n" + "".join(f"unknown:{n},1\n" for n in range(12_345)) + "conversion:c1,-100.00\n"
    imported = (await closed.import_records("fresh-mart", "2026-11", lines(big), by="x")).reconciliation
    assert (imported.lines, imported.matched, imported.missing_in_ledger, imported.missing_in_partner) == (
        12_346,
        1,
        12_345,
        3,
    )
    first = await closed.breaks(imported, kind=BreakKind.MISSING_IN_LEDGER, unresolved_only=True, first=2)
    after = await closed.breaks(imported, kind=BreakKind.MISSING_IN_LEDGER, first=2, after=first[-1].row.id)
    assert [view.row.line for view in first + after] == [2, 3, 4, 5]


async def test_a_quoted_empty_field_is_an_empty_field(closed: SettlementService) -> None:
    """A spreadsheet that quotes every text cell writes an empty date or counterparty as ``""``."""
    quoted = (
        "reference,amount,counterparty,date\r\n"
        '"conversion:c1","-100.00","",""\r\n'
        '"redemption:r1",24.75,"wallet-pay",""\r\n'
        'conversion:c2,12.22,"",\r\n'
        '"conversion:zzz",50.00,"",""\r\n'
    )
    imported = (await closed.import_records("fresh-mart", "2026-11", lines(quoted), by="x")).reconciliation
    assert (imported.lines, imported.matched, imported.missing_in_ledger) == (4, 3, 1)
    missing = (await breaks_of(closed, imported))["MISSING_IN_LEDGER:conversion:zzz:5"]
    assert (missing.counterparty, missing.partner_date) == (None, None)


async def test_a_partner_that_answers_a_credit_it_never_applied_or_applies_one_twice_shows_in_reconciliation(
    db: Database,
) -> None:
    """A lying target (it answers a credit applied, and has no record of it) and a buggy one
    (it applies a credit twice under one id): the exchange's records stay right, one posting
    per conversion, and reconciling the partner's own records of the period shows both, a
    line missing in its file and a duplicate line."""
    world = await conversions.make_world(db)
    fresh_mart = world.partners["fresh-mart"]
    honest = await world.execute(await world.quote(1000), key="honest")
    fresh_mart.fail_next("credit", Fault.ANSWER_WITHOUT_APPLYING)
    unapplied = await world.execute(await world.quote(1000), key="unapplied")
    fresh_mart.fail_next("credit", Fault.APPLY_TWICE)
    doubled = await world.execute(await world.quote(1000), key="doubled")
    assert {honest.status, unapplied.status, doubled.status} == {ConversionStatus.COMPLETED}
    assert await world.ledger_transactions() == 3

    keys = StatementKeys(db, SECRET, world.clock, retention_years=RETENTION_YEARS)
    async with db.transaction() as session:
        await keys.ensure_active(session)
    service = SettlementService(db=db, ledger=world.saga.ledger, clock=world.clock, keys=keys, issuer=ISSUER)
    await close(service, world.clock, "2026-11")
    by_id = {conversion.id: conversion for conversion in (honest, unapplied, doubled)}
    records = "reference,amount,counterparty,date\n" + "".join(
        f"conversion:{conversion.id},{Decimal(conversion.money_value_minor - conversion.fee_minor) / 100},happy-card,\n"
        for conversion in (by_id[operation_id.removesuffix(":credit")] for operation_id, _ in fresh_mart.applied)
    )
    imported = (await service.import_records("fresh-mart", "2026-11", lines(records), by="fresh-mart")).reconciliation
    found = await breaks_of(service, imported)
    assert sorted(key.rsplit(":", 1)[0] for key in found) == sorted(
        [f"MISSING_IN_PARTNER:conversion:{unapplied.id}", f"DUPLICATE:conversion:{doubled.id}"]
    )
    assert imported.matched == 2  # the honest credit and the doubled one's first line


async def report_rows(service: SettlementService, reconciliation: Reconciliation, *, page: int) -> tuple[str, ...]:
    chunks = [chunk async for chunk in service.break_report(reconciliation, page=page)]
    return tuple(chunks)


async def test_the_break_report_names_each_break_what_to_do_next_and_opens_in_a_spreadsheet(
    closed: SettlementService,
) -> None:
    hostile = "=HYPERLINK(1)"
    # Posted after November closed: the ledger has it in December, the partner's file in November.
    await post(closed, [conversion("late", "fresh-mart", "formosa-air", 300, at=NOVEMBER)])
    await post(closed, [conversion("theirs", "formosa-air", "wallet-pay", 400, at=NOVEMBER)])
    records = FILE + f"{hostile},1.00,,2026-10-31\nconversion:late,-3.00,formosa-air,2026-11-30\n"
    records += "conversion:theirs,4.00,,\n"
    imported = (await closed.import_records("fresh-mart", "2026-11", lines(records), by="x")).reconciliation
    found = await breaks_of(closed, imported)
    mismatch = found["AMOUNT_MISMATCH:redemption:r1:3"]
    await closed.resolve(ResolveRequest(mismatch.id or 0, Resolution.ADJUST, "the contract's price", "bob"))

    chunks = await report_rows(closed, imported, page=2)
    text = "".join(chunks)
    assert len(chunks) > 3, "read a page at a time"
    assert text.startswith("\ufeffpartner,period,break,kind,reference,line,counterparty,date,")
    assert "\r\n" in text and "\n" not in text.replace("\r\n", "")
    rows = list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
    by_key = {f"{row['kind']}:{row['reference']}:{row['line']}": row for row in rows}
    assert len(rows) == len(found) == 7, "every break once, in the reconciliation's order"
    assert [row["break"] for row in rows] == [str(row.id) for row in found.values()]

    adjusted = by_key["AMOUNT_MISMATCH:redemption:r1:3"]
    assert (adjusted["partner_amount"], adjusted["ledger_amount"], adjusted["difference"]) == (
        "24.00",
        "24.75",
        "-0.75",
    )
    assert (adjusted["resolution"], adjusted["adjusted_amount"], adjusted["reason"]) == (
        "ADJUST",
        "-0.75",
        "the contract's price",
    )
    assert adjusted["resolved_at"].endswith("Z")
    assert f"adjustment, break:{mismatch.id}, posted into the next open period" in adjusted["next_step"]

    missing = by_key["MISSING_IN_LEDGER:conversion:zzz:5"]
    assert (missing["counterparty"], missing["date"], missing["partner_amount"], missing["ledger_amount"]) == (
        "formosa-air",
        "2026-11-29",
        "50.00",
        "",
    )
    assert "another period" in missing["next_step"] and missing["difference"] == "50.00"
    assert missing["ledger_periods"] == ""
    late = by_key["MISSING_IN_LEDGER:conversion:late:8"]
    assert late["ledger_periods"] == "2026-12" and "The ledger has this reference in 2026-12" in late["next_step"]
    theirs = by_key["MISSING_IN_LEDGER:conversion:theirs:9"]
    assert theirs["ledger_periods"] == "", "another partner's reference is none of fresh-mart's business"
    neutralised = by_key[f"MISSING_IN_LEDGER:'{hostile}:7"]
    assert neutralised["date"] == "2026-10-31", "a line of another period: a break like any missing one"
    assert "more than once" in by_key["DUPLICATE:conversion:c1:6"]["next_step"]
    ours = by_key["MISSING_IN_PARTNER:conversion:c4:"]
    assert (ours["ledger_amount"], ours["line"], ours["resolution"]) == ("-7.00", "", "")
    assert "add it to your records" in ours["next_step"]
    assert {row["currency"] for row in rows} == {"TWD"} and {row["partner"] for row in rows} == {"fresh-mart"}
