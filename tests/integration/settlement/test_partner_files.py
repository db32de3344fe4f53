"""Partner records files as finance teams really write them, through the reconciliation
service: each is matched correctly, or refused at its line naming the column and the rule,
with nothing imported (the files: tests/records_files.py; the reader's rules:
tests/unit/test_partner_records.py)."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator

import pytest
from sqlalchemy import func
from sqlmodel import select

from exchange.services.settlement import SettlementService
from exchange.settlement.errors import MalformedRecords
from exchange.settlement.models import Reconciliation, ReconciliationBreak
from exchange.testing.clock import FrozenClock
from tests.integration.settlement.conftest import conversion, post, served
from tests.integration.settlement.test_reconciliation import closed_november
from tests.records_files import Compared, PeriodLedger, Refused, files, outcome_is

#: What closed_november leaves fresh-mart in 2026-11, with wallet-pay → tune-stream as others'.
NOVEMBER_LEDGER = PeriodLedger(
    partner="fresh-mart",
    period="2026-11",
    lines=(
        ("conversion:c1", "-100.00"),
        ("redemption:r1", "24.75"),
        ("conversion:c2", "12.22"),
        ("conversion:c4", "-7.00"),
    ),
    reversed=("conversion:c3", "5.00"),
    other="conversion:c5",
)


@pytest.fixture
async def closed(settlement: SettlementService, clock: FrozenClock) -> SettlementService:
    await post(settlement, [conversion("c5", "wallet-pay", "tune-stream", 300)])
    return await closed_november(settlement, clock)


async def imported(service: SettlementService) -> tuple[int, int]:
    async with service.db.transaction() as session:
        reconciliations = (await session.exec(select(func.count()).select_from(Reconciliation))).one()
        breaks = (await session.exec(select(func.count()).select_from(ReconciliationBreak))).one()
    return reconciliations, breaks


async def test_every_file_a_finance_team_sends_is_matched_or_refused_at_its_line(closed: SettlementService) -> None:
    wrong: dict[str, object] = {}  # every file whose outcome is not the expected one, with what it was
    for name, (data, expected) in files(NOVEMBER_LEDGER).items():
        before = await imported(closed)
        try:
            row = (await closed.import_records("fresh-mart", "2026-11", io.BytesIO(data), by="t")).reconciliation
        except MalformedRecords as refused:
            found: Compared | Refused = Refused(refused.line, refused.reason)
            if await imported(closed) != before:
                wrong[f"{name}: imported though refused"] = found
        else:
            found = Compared(
                row.lines,
                row.matched,
                row.amount_mismatch,
                row.missing_in_ledger,
                row.duplicate,
                row.missing_in_partner,
            )
        if not outcome_is(found, expected):
            wrong[name] = found
    assert wrong == {}


class GeneratedFile:
    """A file of ``records`` lines made as it is read, so the test holds no copy of it."""

    def __init__(self, records: int) -> None:
        self._chunks = self._make(records)
        self._rest = b""

    @staticmethod
    def _make(records: int) -> Iterator[bytes]:
        yield b"\xef\xbb\xbfReference,Amount,Note\r\nconversion:c1,-100.00,first\r\n"
        for start in range(0, records - 1, 5_000):
            yield b"".join(
                b'conversion:x%08d,1.00,"booked, not billed"\r\n' % n
                for n in range(start, min(start + 5_000, records - 1))
            )

    def read(self, size: int = -1, /) -> bytes:
        while len(self._rest) < size and (chunk := next(self._chunks, None)) is not None:
            self._rest += chunk
        data, self._rest = self._rest[:size], self._rest[size:]
        return data


async def test_a_file_of_200k_rows_is_read_in_flat_memory_and_matched_in_the_database(
    pg_settlement: SettlementService, clock: FrozenClock
) -> None:
    """200,000 rows (about 10 MB) pass through the validator a block at a time into PostgreSQL's
    COPY and one set-based classification: the Python heap's peak stays a few blocks' size."""
    service = await closed_november(pg_settlement, clock)
    tracemalloc.start()
    try:
        row = (await service.import_records("fresh-mart", "2026-11", GeneratedFile(200_000), by="t")).reconciliation
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (row.lines, row.matched, row.missing_in_ledger, row.missing_in_partner) == (200_000, 1, 199_999, 3)
    assert peak < 16 * 1024 * 1024, f"peak {peak:,} bytes"


async def test_breaks_name_the_line_a_record_starts_on_when_notes_run_over_lines(closed: SettlementService) -> None:
    """A description quoted over several lines (RFC 4180) makes a record of several lines: each
    break names the line its record starts on, on SQLite as on PostgreSQL (whose COPY numbers
    the rows)."""
    data = (
        b"reference,note,amount\r\n"
        b'conversion:c1,"refund asked\r\nsee ""ticket"" 12",-100.00\r\n'  # lines 2-3
        b"redemption:r1,,24.76\r\n"  # line 4: a cent off
        b'conversion:c2,"a\nb\nc",12.22\r\n'  # lines 5-7
        b"conversion:c1,again,-100.00\r\n"  # line 8: a duplicate
        b"conversion:c5,,3.00\r\n"  # line 9: another partners'
    )
    view = await closed.import_records("fresh-mart", "2026-11", io.BytesIO(data), by="t")
    row = view.reconciliation
    assert (row.lines, row.matched, row.amount_mismatch, row.duplicate, row.missing_in_ledger) == (5, 2, 1, 1, 1)
    lines = {(str(b.row.kind), b.row.reference): b.row.line for b in await closed.breaks(row)}
    assert lines == {
        ("AMOUNT_MISMATCH", "redemption:r1"): 4,
        ("DUPLICATE", "conversion:c1"): 8,
        ("MISSING_IN_LEDGER", "conversion:c5"): 9,
        ("MISSING_IN_PARTNER", "conversion:c4"): None,
    }


async def test_the_statements_own_csv_uploaded_back_is_refused_saying_so(closed: SettlementService) -> None:
    """Whole, it was refused at its opening row as 'reference: must be 1 to 200 characters'; its
    line rows alone were imported as breaks that cancel out (conversion:c1's -98.00 an
    AMOUNT_MISMATCH of 2.00 against the ledger's -100.00, its -2.00 fee line a DUPLICATE of
    -2.00; the reversed conversion:c3 likewise), with a total difference of 0.00 and no word why."""
    statement = (await served(closed, "fresh-mart", "2026-11")).csv()
    header, *rows = statement.split("\r\n")
    lines = "\r\n".join([header, *(row for row in rows if ",line," in row), ""])
    for data in (statement, lines):
        with pytest.raises(MalformedRecords) as refused:
            await closed.import_records("fresh-mart", "2026-11", io.BytesIO(data.encode()), by="t")
        assert refused.value.line == 1
        assert "this is the statement's CSV" in refused.value.reason
        assert "one line per reference" in refused.value.reason
    assert await imported(closed) == (0, 0)


async def test_a_totals_row_is_refused_naming_its_line_and_the_sum(closed: SettlementService) -> None:
    """It was imported as a MISSING_IN_LEDGER break of -70.03, cancelling the file's total."""
    data = b"reference,amount\nconversion:c1,-100.00\nredemption:r1,24.75\nconversion:c2,12.22\nconversion:c4,-7.00\nTotal,-70.03\n"
    with pytest.raises(MalformedRecords) as refused:
        await closed.import_records("fresh-mart", "2026-11", io.BytesIO(data), by="t")
    assert str(refused.value) == (
        "line 6: reference: 'Total' looks like a totals row: its amount, -70.03, is the sum of every record above it, "
        "and the ledger has no such reference for fresh-mart in 2026-11; remove the row: a file holds records only; "
        "nothing was imported"
    )
    assert await imported(closed) == (0, 0)
    # The same figure on a reference the ledger has is a record, compared as any other.
    data = b"reference,amount\nconversion:c3,-100.00\nconversion:c1,-100.00\n"
    row = (await closed.import_records("fresh-mart", "2026-11", io.BytesIO(data), by="t")).reconciliation
    assert (row.lines, row.matched, row.amount_mismatch, row.missing_in_ledger) == (2, 1, 1, 0)
    # So is one the ledger has in another period: a late item, posted into December after the close.
    await post(closed, [conversion("late", "fresh-mart", "formosa-air", 7_003)])
    data = b"reference,amount\nconversion:c1,-100.00\nredemption:r1,24.75\nconversion:c2,12.22\nconversion:c4,-7.00\nconversion:late,-70.03\n"
    row = (await closed.import_records("fresh-mart", "2026-11", io.BytesIO(data), by="t")).reconciliation
    assert (row.lines, row.matched, row.missing_in_ledger) == (5, 4, 1)


async def test_a_subtotal_or_a_totals_row_anywhere_is_refused_naming_its_line_and_the_records_it_sums(
    closed: SettlementService,
) -> None:
    """A subtotal of the records since the previous one, or a totals row not last, was imported
    as a MISSING_IN_LEDGER break; only a last line summing every record above it was refused."""

    async def refused(data: bytes) -> str:
        with pytest.raises(MalformedRecords) as caught:
            await closed.import_records("fresh-mart", "2026-11", io.BytesIO(data), by="t")
        return str(caught.value)

    # A group of one record with no subtotal, then a group of two with its subtotal (line 5).
    data = b"reference,amount\nconversion:c1,-100.00\nredemption:r1,24.75\nconversion:c2,12.22\nSubtotal wallet-pay,36.97\nconversion:c4,-7.00\n"
    assert await refused(data) == (
        "line 5: reference: 'Subtotal wallet-pay' looks like a subtotal row: its amount, 36.97, is the sum of the "
        "records on lines 3 to 4, and the ledger has no such reference for fresh-mart in 2026-11; remove the row: a "
        "file holds records only; nothing was imported"
    )
    # A grand total of the records (not of the subtotals too), above a trailer line.
    data = b"reference,amount\nconversion:c1,-100.00\nredemption:r1,24.75\nconversion:c2,12.22\nconversion:c4,-7.00\nTOTAL:,-70.03\nconversion:c5,1.00\n"
    assert (await refused(data)).startswith("line 6: reference: 'TOTAL:' looks like a totals row: its amount, -70.03")
    # A subtotal below each record: the first is named, and how many more there are.
    data = "reference,amount\n" + "".join(f"{r},{a}\n小計,{a}\n" for r, a in NOVEMBER_LEDGER.lines)
    assert (await refused(data.encode())).endswith(
        "a file holds records only (3 more such rows below it); nothing was imported"
    )
    assert await imported(closed) == (0, 0)
    # A reference holding Total that sums no run of records above it is a record as any other.
    data = b"reference,amount\nconversion:c1,-100.00\nTotal rewards,5.00\nredemption:r1,24.75\n"
    row = (await closed.import_records("fresh-mart", "2026-11", io.BytesIO(data), by="t")).reconciliation
    assert (row.lines, row.matched, row.missing_in_ledger, row.missing_in_partner) == (3, 2, 1, 2)


async def test_a_trailer_row_counting_the_records_is_refused_naming_its_line_and_the_count(
    closed: SettlementService,
) -> None:
    """An export's trailer (``Rows,4``) was imported as a MISSING_IN_LEDGER break of 4.00."""
    data = b"reference,amount\nconversion:c1,-100.00\nredemption:r1,24.75\nconversion:c2,12.22\nconversion:c4,-7.00\nRows,4\n"
    with pytest.raises(MalformedRecords) as refused:
        await closed.import_records("fresh-mart", "2026-11", io.BytesIO(data), by="t")
    assert str(refused.value) == (
        "line 6: reference: 'Rows' looks like a trailer row: its amount, 4, is the number of records above it, "
        "and the ledger has no such reference for fresh-mart in 2026-11; remove the row: a file holds records only; "
        "nothing was imported"
    )
    assert await imported(closed) == (0, 0)
