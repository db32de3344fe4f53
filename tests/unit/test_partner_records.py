"""The partner records format: what is read, and every way a file is refused with its line."""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile
from datetime import date

import pytest

from exchange.money import Currency
from exchange.settlement.errors import MalformedRecords
from exchange.settlement.records import (
    BLOCK_BYTES,
    CARRIAGE_RETURNS,
    EMPTY_LINE,
    MAX_LINE_BYTES,
    NOT_UTF8,
    STATEMENT_DOCUMENT,
    UTF16,
    WORKBOOK,
    RecordReader,
)
from exchange.settlement.statements import CSV_COLUMNS
from tests.conftest import REPO_ROOT

TWD = Currency("TWD", 2)
PARTNER, PERIOD = "fresh-mart", "2026-11"


def read(
    text: str | bytes, currency: Currency = TWD
) -> tuple[RecordReader, list[tuple[int, str, int, str | None, str | None]]]:
    data = text if isinstance(text, bytes) else text.encode()
    reader = RecordReader(io.BytesIO(data), currency, partner=PARTNER, period=PERIOD)
    return reader, [row for batch in reader.batches() for row in batch.rows(reader.format)]


def refusal(text: str | bytes, currency: Currency = TWD) -> tuple[int, str]:
    with pytest.raises(MalformedRecords) as caught:
        read(text, currency)
    assert caught.value.extensions()["code"] == "BAD_USER_INPUT"
    assert caught.value.extensions()["line"] == caught.value.line
    return caught.value.line, caught.value.reason


def test_records_are_read_with_their_line_numbers_and_exact_minor_units() -> None:
    reader, rows = read(
        "reference,amount,counterparty,date\n"
        "conversion:a,12.5,wallet-pay,2026-11-03\n"
        "conversion:b,-0.07,,\n"
        '"redemption:c,1",1000,EXCHANGE,2026-11-30\n'
    )
    assert rows == [
        (2, "conversion:a", 1250, "wallet-pay", "2026-11-03"),
        (3, "conversion:b", -7, None, None),
        (4, "redemption:c,1", 100000, "EXCHANGE", "2026-11-30"),
    ]
    assert reader.lines == 3 and len(reader.sha256) == 64


def test_a_reference_a_spreadsheet_would_run_is_read_verbatim() -> None:
    """A reference is the partner's own identifier, matched exactly: it is kept as it is, and
    neutralised only where the exchange writes it into a CSV (exchange/spreadsheet.py)."""
    _, rows = read("reference,amount\n=1+1,1\n@SUM(1+1),2\n+cmd|' /C calc'!A0,3\n-2+3,4\n\"=SUM(1,2)\",5\n")
    assert [reference for _, reference, *_ in rows] == ["=1+1", "@SUM(1+1)", "+cmd|' /C calc'!A0", "-2+3", "=SUM(1,2)"]


def test_columns_come_in_any_order_with_a_bom_and_crlf() -> None:
    _, rows = read(b"\xef\xbb\xbfamount,reference\r\n-3,conversion:x\r\n4.00,conversion:y")
    assert rows == [(2, "conversion:x", -300, None, None), (3, "conversion:y", 400, None, None)]


def test_a_currency_without_minor_units_takes_whole_amounts_only() -> None:
    _, rows = read("reference,amount\nr,150\n", Currency("JPY", 0))
    assert rows == [(2, "r", 150, None, None)]
    assert refusal("reference,amount\nr,150.5\n", Currency("JPY", 0))[0] == 2


def test_batches_are_bounded_whatever_the_file_size() -> None:
    lines = "reference,amount\n" + "".join(f"conversion:{n:08d},{n % 1000}.5\n" for n in range(200_000))
    reader = RecordReader(io.BytesIO(lines.encode()), TWD, partner=PARTNER, period=PERIOD)
    batches = list(reader.batches())
    assert len(batches) > 3
    assert all(len(batch.text.encode()) <= BLOCK_BYTES + MAX_LINE_BYTES for batch in batches)
    assert [batch.first_line for batch in batches[:2]] == [2, 2 + batches[0].lines]
    assert sum(batch.lines for batch in batches) == reader.lines == 200_000
    assert batches[-1].rows(reader.format)[-1] == (200_001, "conversion:00199999", 99950, None, None)


def test_quoted_and_bare_lines_mix_within_a_block() -> None:
    _, rows = read('reference,amount\nplain,1\n"with, comma","-2.5"\n')
    assert rows == [(2, "plain", 100, None, None), (3, "with, comma", -250, None, None)]


def test_a_quoted_field_of_a_column_not_read_may_hold_line_breaks_and_quotes() -> None:
    """RFC 4180: a quoted description may run over lines (CRLF or LF) and double its quotes; the
    record is named by the line it starts on, and the lines after it keep their own numbers."""
    reader, rows = read(
        "reference,note,amount\r\n"
        'conversion:a,"paid\r\nsee ""memo"" 7\r\n",12.5\r\n'
        "conversion:b,,1\r\n"
        '"conversion:c","two\nlines, one comma","-2"\n'
        "conversion:d,plain,3\n"
    )
    assert rows == [
        (2, "conversion:a", 1250, None, None),
        (5, "conversion:b", 100, None, None),
        (6, "conversion:c", -200, None, None),
        (8, "conversion:d", 300, None, None),
    ]
    assert reader.lines == 4


def test_a_record_whose_line_breaks_straddle_blocks_is_read_whole_at_its_line() -> None:
    # The last record starts some 100 bytes before the first block ends, and ends in the next.
    filler = "".join(f"conversion:{n:08d},x,1\n" for n in range((BLOCK_BYTES - 122) // 24))
    text = f'reference,note,amount\n{filler}conversion:last,"one\n{"y" * 4000}\nthree",5\nconversion:after,z,6\n'
    reader, rows = read(text)
    first = len(filler.splitlines()) + 2
    assert rows[-2:] == [(first, "conversion:last", 500, None, None), (first + 3, "conversion:after", 600, None, None)]
    assert reader.lines == len(rows) == first


@pytest.mark.parametrize(
    "header",
    [",".join(CSV_COLUMNS), ",".join(CSV_COLUMNS[:-3]), ",".join(name.upper() for name in CSV_COLUMNS) + ",,"],
    ids=["version-2", "version-1", "capitalised-trailing-empty-columns"],
)
def test_the_statement_is_recognised_by_its_whole_header(header: str) -> None:
    assert refusal(header + "\n")[0] == 1
    assert "this is the statement's CSV" in refusal(header + "\n")[1]


def test_a_partners_export_naming_some_of_the_statements_columns_is_read() -> None:
    """It was refused as the statement's CSV: its header named record and transaction."""
    data = "Partner,Period,Currency,Record,Transaction,Reference,Amount\nfresh-mart,2026-11,TWD,line,t-1,r,1.00\n"
    assert read(data)[1] == [(2, "r", 100, None, None)]


def test_a_quoted_field_left_open_is_refused_at_the_line_it_opens_on_not_read_to_the_end() -> None:
    lines = ["reference,note,amount", "r,ok,1", 'r2,"never closed,2', *(f"r{n},x,1" for n in range(20_000))]
    line, reason = refusal("\n".join(lines) + "\n")
    assert line == 3
    assert "a quoted field opened on this line runs on" in reason


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("", 1, "the file is empty"),
        ("\ufeff", 1, "the file is empty"),
        ("\nreference,amount\nr,1\n", 1, "an empty line; the first line must be the header"),
        (
            "ref,amount\n",
            1,
            "the header must name the columns reference and amount: reference is missing; got 'ref,amount'",
        ),
        ("reference,amount,amount\n", 1, "the header names the column amount twice"),
        (
            "\ufeff\ufeffreference,amount\r\nr,1\r\n",
            1,
            "reference is missing; got '\\ufeffreference,amount': it holds an invisible character, U+FEFF, at "
            "character 1 (a second byte-order mark",
        ),
        ("reference,amo\u200bunt\nr,1\n", 1, "amount is missing; got 'reference,amo\\u200bunt': it holds an invisible"),
        (
            "reference;amount\nr;1234,50\n",
            1,
            "got 'reference;amount': fields are separated by commas, not semicolons",
        ),
        ("reference,amount\rr,1\r", 1, "lines end in a carriage return alone"),
        ("reference,amount\nr,1\nreference,amount\nr2,2\n", 3, "repeats the header: a file has one header line"),
        ('reference,amount\r\nr,1\r\n"reference","amount"\r\n', 3, "repeats the header"),
        ("amount,reference\n1,r\nreference,amount\n", 3, "repeats the header's names in another order"),
        ("reference,amount\nr,1\n\nr2,2\n", 3, "an empty line (or a row of empty fields) among the records"),
        ("reference,amount\nr,1\nr2\n", 3, "1 field, but the header names 2"),
        ("reference,amount\nr,1,2\n", 2, "3 fields, but the header names 2"),
        ("reference,amount\nr,1.234\n", 2, "amount: '1.234' is not an amount in TWD"),
        ("reference,amount\nr,1e3\n", 2, "amount: '1e3' is not an amount"),
        (
            "reference,amount\nr,1\ns,-\n",
            3,
            "a dash alone is how a spreadsheet's accounting format shows zero: write 0.00, "
            "with the column formatted as a plain number",
        ),
        ('reference,amount\nr," $-   "\n', 2, "amount: ' $-   ' is not an amount in TWD"),
        ('reference,amount\nr," $-   "\n', 2, "a dash alone is how a spreadsheet's accounting format shows zero"),
        ('reference,amount\nr,"1,234.50"\n', 2, "a decimal point and no thousands separator"),
        (
            "reference,amount\nr,-1234,50\n",
            2,
            "amount: -1234,50 is written with a decimal comma: write -1234.50, with a decimal point "
            "(unquoted, its comma split the line: 3 fields, but the header names 2)",
        ),
        ("reference,amount\nr,12,5\n", 2, "amount: 12,5 is written with a decimal comma: write 12.5,"),
        (
            "amount,reference\n1,234.50,r\n",
            2,
            "amount: 1,234.50 is written with a thousands separator: write 1234.50, with no separator",
        ),
        ('reference,amount\nr,"12,50"\n', 2, "12,50 is written with a decimal comma: write 12.50"),
        (
            "reference,amount\nr,1,234,567.00\n",
            2,
            "1,234,567.00 is written with a thousands separator: write 1234567.00",
        ),
        ("reference,amount\nr,5,note\n", 2, "3 fields, but the header names 2"),
        ("reference,amount\nr,+5\n", 2, "amount: '+5'"),
        ("reference,amount\nr,\n", 2, "amount: '' is not an amount"),
        ("reference,amount\nr,0012\n", 2, "amount: '0012'"),
        ("reference,amount\nr,1234567890123456\n", 2, "15 integer digits"),
        ("reference,amount\n,5\n", 2, "reference: must be 1 to 200 characters, got 0"),
        (f"reference,amount\n{'x' * 201},5\n", 2, "reference: must be 1 to 200 characters, got 201"),
        ("reference,amount\nconversion:a ,5\n", 2, "reference: 'conversion:a ' starts or ends with a space"),
        ('reference,amount\nr,1\n" redemption:b",5\n', 3, "reference: ' redemption:b' starts or ends with a space"),
        (
            "reference,amount\nr,1\n\ufeffconversion:a,5\n",
            3,
            "reference: '\\ufeffconversion:a' holds an invisible character, U+FEFF, at character 1; "
            "type the reference again, or copy it from the statement",
        ),
        ('reference,amount\n"conversion:a\u00ad",5\n', 2, "invisible character, U+00AD, at character 13"),
        ("reference,amount\nconversion:\u2066a\u2069,5\n", 2, "invisible character, U+2066, at character 12"),
        ('reference,amount\nab"c,5\n', 2, "double quote"),
        ('reference,amount\n"ab"c,5\n', 2, "a double quote in the middle of a field"),
        (
            'reference,amount,counterparty\r\nr,1,\r\n"redemption:coupon 42\r\nlot 7",5,wallet-pay\r\n',
            3,
            "reference: holds a line break; only a column the exchange does not read may",
        ),
        ("reference,amount\nr\t1,5\n", 2, "control character"),
        (
            "reference,amount\nr,1\nconversion:a\u2028b,5\n",
            3,
            "a field holds a control character or a line break: remove it; no field may hold one",
        ),
        ('reference,amount\nr,1\n"conversion:a\u2029b",5\n', 3, "a control character or a line break"),
        ("reference,amount\nr,1\nconversion:a\x85b,5\n", 3, "a control character or a line break"),
        (
            "reference,amount,counterparty\nr,5,Wallet Pay\n",
            2,
            "counterparty: 'Wallet Pay' is neither a program id nor EXCHANGE",
        ),
        ("reference,amount,date\nr,5,2026-02-30\n", 2, "date: '2026-02-30' is not a date on the calendar"),
        (
            "reference,amount,period\nr,5,Nov-26\n",
            2,
            "period: 'Nov-26' is not a period written YYYY-MM, as 2026-11: a spreadsheet may have made it a date; "
            "format the column as text and write the period again",
        ),
        ("reference,amount,period\nr,5,2026-11\ns,6,2026/11/1\n", 3, "'2026/11/1' is not a period written YYYY-MM"),
        (
            "reference,amount,date\nr,5,2026/11/5\n",
            2,
            "date: '2026/11/5' is not a date written YYYY-MM-DD: a spreadsheet may have written it its own way; "
            "format the column as text and write the date again, or leave it empty",
        ),
    ],
)
def test_a_malformed_file_is_refused_naming_the_first_bad_line_and_why(text: str, line: int, reason: str) -> None:
    found_line, found_reason = refusal(text)
    assert found_line == line
    assert reason in found_reason


def test_bytes_that_are_not_utf8_are_refused_on_their_line() -> None:
    assert refusal(b"reference,amount\nr,1\nr\xff,2\n") == (3, NOT_UTF8)


@pytest.mark.parametrize(
    "data",
    [
        "reference,amount\nredemption:\u53f0\u5317\u8eca\u7968,1\n".encode(
            "big5"
        ),  # Excel's plain CSV on zh_TW Windows
        "reference,amount\ncaf\u00e9:1,1\n".encode("latin-1"),  # a Western European Windows' plain CSV
    ],
)
def test_a_file_a_spreadsheet_saved_in_another_encoding_is_told_to_save_as_utf8(data: bytes) -> None:
    line, reason = refusal(data)
    assert line == 2 and reason == NOT_UTF8
    assert "CSV UTF-8" in reason and "Big5" in reason


def workbook(*, xml_lines: int) -> bytes:
    """An Excel workbook (.xlsx: a ZIP of XML parts) with a sheet of ``xml_lines`` rows."""
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0" encoding="UTF-8"?><Types/>')
        archive.writestr("xl/worksheets/sheet1.xml", "<row><c><v>1</v></c></row>\n" * xml_lines)
    return data.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(workbook(xml_lines=3), id="xlsx"),
        pytest.param(workbook(xml_lines=100_000), id="xlsx-larger-than-a-line"),
        # Excel 97-2003 (.xls): an OLE2 compound file, its first sector mostly empty.
        pytest.param(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(2 * MAX_LINE_BYTES), id="xls"),
    ],
)
def test_a_spreadsheets_workbook_is_told_to_be_saved_as_csv_not_taken_for_utf16(data: bytes) -> None:
    assert refusal(data) == (1, WORKBOOK)
    assert "CSV UTF-8" in WORKBOOK and ".xlsx" in WORKBOOK


STATEMENT_JSON = json.dumps(
    {"lines": [{"amount": "-98.00", "reference": f"conversion:{n:08d}"} for n in range(2_000)], "version": 2},
    separators=(",", ":"),
)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(STATEMENT_JSON.encode(), id="statement-json"),
        pytest.param(STATEMENT_JSON[:2_000].encode(), id="json-within-a-line"),
        pytest.param(b"\xef\xbb\xbf\r\n  " + STATEMENT_JSON[:2_000].encode(), id="json-below-a-bom-and-a-blank-line"),
        pytest.param(b"eyJhbGciOiJSUzI1NiJ9." + base64.urlsafe_b64encode(STATEMENT_JSON.encode()) + b".c2ln", id="jws"),
    ],
)
def test_the_statements_json_or_jws_uploaded_as_records_is_told_so(data: bytes) -> None:
    assert refusal(data) == (1, STATEMENT_DOCUMENT)


def test_the_first_bad_line_is_named_even_blocks_into_the_file() -> None:
    lines = ["reference,amount", *(f"conversion:{n:08d},1" for n in range(150_000)), "r,oops", "r,fine"]
    assert refusal("\n".join(lines)) == (
        150_002,
        "amount: 'oops' is not an amount in TWD: write an exact decimal such as -1234.5, with at most 2 decimals and 15 integer digits, a decimal point and no thousands separator",
    )


def test_a_date_the_calendar_lacks_is_caught_among_good_lines() -> None:
    lines = ["reference,amount,date", *(f"r{n},1,2024-02-29" for n in range(1000)), "r,1,2026-04-31"]
    assert refusal("\n".join(lines)) == (1002, "date: '2026-04-31' is not a date on the calendar")


@pytest.mark.parametrize(
    ("text", "line", "characters"),
    [
        ("reference," + "x" * 60_000 + "\nr,1\n", 1, 60_010),  # the header
        ("reference,amount\nr," + "9" * 60_000 + "\n", 2, 60_000),  # an amount
    ],
)
def test_a_refusal_quotes_a_long_value_in_part(text: str, line: int, characters: int) -> None:
    """A header or field of kilobytes used to come back whole in the refusal."""
    found_line, reason = refusal(text)
    assert found_line == line
    assert len(reason) < 600
    assert f"… ({characters} characters)" in reason


def test_a_line_too_long_to_be_a_record_is_refused() -> None:
    text = "reference,amount\nr,1\n" + "x" * (MAX_LINE_BYTES + BLOCK_BYTES) + ",1\n"
    assert refusal(text) == (3, f"a line over {MAX_LINE_BYTES} bytes")


def test_bytes_that_are_not_utf8_are_found_on_their_line_blocks_into_the_file() -> None:
    good = b"".join(b"conversion:%08d,1\n" % n for n in range(100_000))
    assert refusal(b"reference,amount\n" + good + b"r\xff,2\n") == (100_002, NOT_UTF8)


@pytest.mark.parametrize("year", [1, 4, 100, 400, 1900, 1996, 2000, 2023, 2024, 2100, 2400, 9999])
def test_the_date_pattern_is_the_calendar(year: int) -> None:
    """Every YYYY-MM-DD of the year's months 00 to 13 and days 00 to 32 is accepted exactly when
    Python's calendar has it."""
    format = RecordReader(io.BytesIO(b"reference,amount,date\n"), TWD, partner=PARTNER, period=PERIOD).format
    for month in range(14):
        for day in range(33):
            text = f"{year:04d}-{month:02d}-{day:02d}"
            try:
                date.fromisoformat(text)
                real = True
            except ValueError:
                real = False
            assert (format.problem(f"r,1,{text}") is None) == real, text


def test_year_zero_is_no_date() -> None:
    assert refusal("reference,amount,date\nr,1,0000-02-29\n") == (2, "date: '0000-02-29' is not a date on the calendar")


def test_the_example_in_the_partners_guide_is_a_valid_file() -> None:
    guide = (REPO_ROOT / "partners" / "SETTLEMENT.md").read_text()
    example = re.search(r"```csv\n(.*?)```", guide, re.DOTALL)
    assert example is not None
    reader, rows = read(example.group(1))
    assert reader.format.columns == ("reference", "amount", "counterparty", "date")
    assert [row[2] for row in rows] == [-9800, 2475, -200]


# What finance teams' spreadsheets and ERPs really write: each file is read exactly, or refused
# at its line naming the column and the rule. Nothing that could match money wrongly is guessed.


@pytest.mark.parametrize(
    ("data", "rows"),
    [
        pytest.param(b"\xef\xbb\xbfreference,amount\r\nr,1\r\n", [(2, "r", 100)], id="utf8-bom-crlf"),
        pytest.param(b"reference,amount\nr,1\n\n", [(2, "r", 100)], id="a-trailing-empty-line"),
        pytest.param(b"reference,amount,,\r\nr,1,,\r\n,,,\r\n", [(2, "r", 100)], id="trailing-empty-columns"),
        pytest.param(b"reference,amount\r\nr,1\r\n\r\n ,,\r\n,\r\n", [(2, "r", 100)], id="trailing-empty-rows"),
        pytest.param(b"reference,amount\nr,1\nr2,-2", [(2, "r", 100), (3, "r2", -200)], id="no-final-newline"),
        pytest.param(b"reference,amount\n\n", [], id="header-and-an-empty-line"),
        pytest.param(b'reference,amount\n"coupon 42, lot 7",1\n', [(2, "coupon 42, lot 7", 100)], id="quoted-comma"),
        pytest.param(b"date,amount,reference\n2026-11-03,1,r\n", [(2, "r", 100)], id="another-order"),
        pytest.param(
            b'Member,reference,Note,amount,points\nm1,r,"paid, late",1.5,"1,000"\nm2,s,,2,3\n',
            [(2, "r", 150), (3, "s", 200)],
            id="extra-columns-not-read",
        ),
        pytest.param(b' Reference ,"AMOUNT",  Counterparty\nr,1,EXCHANGE\n', [(2, "r", 100)], id="header-case-spaces"),
        pytest.param(b'reference,amount\nr, 12.5 \ns,"-3.00 "\n', [(2, "r", 1250), (3, "s", -300)], id="amount-spaces"),
        pytest.param(
            b"partner,period,currency,reference,amount\nfresh-mart,2026-11,TWD,r,1\n",
            [(2, "r", 100)],
            id="partner-period-currency-columns-of-this-import",
        ),
    ],
)
def test_what_a_spreadsheet_writes_is_read_exactly(data: bytes, rows: list[tuple[int, str, int]]) -> None:
    reader, read_rows = read(data)
    assert [row[:3] for row in read_rows] == rows
    assert reader.lines == len(rows)


AMOUNT_RULE = "is not an amount in TWD: write an exact decimal such as -1234.5, with at most 2 decimals"


@pytest.mark.parametrize(
    ("data", "line", "reason"),
    [
        pytest.param("reference,amount\nr,1\n".encode("utf-16"), 1, UTF16, id="utf16-bom"),
        pytest.param("reference\tamount\nr\t1\n".encode("utf-16-be"), 1, UTF16, id="utf16-no-bom"),
        pytest.param(b"reference,amount\nr,1\rr2,2\n", 2, CARRIAGE_RETURNS, id="cr"),
        pytest.param(
            b"\xef\xbb\xbfreference,amount\r\nr,1\rr2,2\rr3,3\r", 2, CARRIAGE_RETURNS, id="cr-below-a-crlf-header"
        ),
        pytest.param(b"reference,amount\r" + b"r,1\r" * 20_000, 1, CARRIAGE_RETURNS, id="cr-only-larger-than-a-line"),
        pytest.param(b"reference,amount\nr,1\n \nr2,2\n", 3, EMPTY_LINE, id="a-blank-line-among-records"),
        pytest.param(b"reference,amount\nr,1\n,\nr2,2\n", 3, EMPTY_LINE, id="a-row-of-empty-fields-among-records"),
        pytest.param(
            b'reference,amount\n"say ""hi""",1\n',
            2,
            "reference: holds a double quote: remove it; no column the exchange reads may hold one",
            id="quote-in-field",
        ),
        pytest.param(b'reference,amount\n"a\nb",1\n', 2, "reference: holds a line break", id="newline-in-reference"),
        pytest.param(
            b'reference,note,amount\nr,"a\nb,1\n',
            2,
            "a quoted field opened on this line never ends",
            id="unended-quote",
        ),
        pytest.param(b'reference,note,amount\nr,say "hi",1\n', 2, "not wrapped in double quotes", id="bare-quote"),
        pytest.param(b"reference;amount\nr;1,50\n", 1, "not semicolons", id="semicolons"),
        pytest.param(
            b"sep=;\r\nreference;amount\r\nr;1,50\r\n",
            1,
            "'sep=;' is a spreadsheet's separator line, not the header: remove it",
            id="separator-line",
        ),
        pytest.param(b'"sep=,",\nreference,amount\nr,1\n', 1, "separator line, not the header", id="sep-quoted"),
        pytest.param(
            b"reference,amount\r\nr,1.00,\r\n",
            2,
            "3 fields, but the header names 2: the fields after the header's last column are empty",
            id="a-comma-ending-the-line",
        ),
        pytest.param(
            b"reference,amount,,\r\nr,1.00\r\n",
            2,
            "2 fields, but the header names 4: the header ends in unnamed columns this line lacks",
            id="empty-columns-ending-the-header",
        ),
        pytest.param(
            b"reference\tamount\nr\t1.50\n",
            1,
            "reference is missing; got 'reference\\tamount': fields are separated by commas, not tabs",
            id="tabs",
        ),
        pytest.param(b"reference,Amount TWD\nr,1\n", 1, "amount is missing; got 'reference,Amount TWD'", id="missing"),
        pytest.param(b"Amount,reference,amount\n1,r,1\n", 1, "the header names the column amount twice", id="twice"),
        pytest.param(b'reference,amount\nr,"1,234.50"\n', 2, "amount: '1,234.50' " + AMOUNT_RULE, id="1,234.50"),
        pytest.param(
            b'reference,amount\nr,"1.234,50"\n', 2, "a comma may be a decimal comma or a thousands", id="1.234,50"
        ),
        pytest.param(
            b"reference,amount\nr,12.500\n",
            2,
            "it has 3 decimals, more than the currency has (where a dot separates thousands it reads 12500)",
            id="12.500",
        ),
        pytest.param(b"reference,amount\nr,12.345\n", 2, "it has 3 decimals", id="more-decimals"),
        pytest.param(
            b"reference,amount\nr,(3.00)\n",
            2,
            "a negative amount takes a minus sign (-3.00), not parentheses",
            id="parentheses",
        ),
        pytest.param(
            b"reference,amount\nr,12.00-\n",
            2,
            "a negative amount takes its minus sign before the figure (-12.00), not after it",
            id="minus-after-the-figure",
        ),
        pytest.param(b"reference,amount\nr,12.00 CR\n", 2, "CR and DR are not read (whose credit?)", id="credit-mark"),
        pytest.param(b"reference,amount\nr,7.5dr\n", 2, "CR and DR are not read", id="debit-mark"),
        pytest.param(
            b"reference,amount\nr,+12.00\n", 2, "a positive amount is written without a plus sign (12.00)", id="plus"
        ),
        pytest.param(
            "reference,amount\nr,\u221212.00\n".encode(),
            2,
            "the minus sign is the ASCII hyphen-minus (-12.00), not U+2212",
            id="unicode-minus",
        ),
        pytest.param(
            b"reference,amount\nr,1e3\n", 2, "NaN, Infinity and exponents (1e3) are not exact decimals", id="1e3"
        ),
        pytest.param(b"reference,amount\nr,NaN\n", 2, "amount: 'NaN' " + AMOUNT_RULE, id="nan"),
        pytest.param(b"reference,amount\nr,-Infinity\n", 2, "NaN, Infinity and exponents", id="infinity"),
        pytest.param(b"reference,amount\nr,USD 12.50\n", 2, "without a currency sign or code", id="currency-code"),
        pytest.param("reference,amount\nr,€12.50\n".encode(), 2, "without a currency sign or code", id="currency-sign"),
        pytest.param(
            b'reference,amount\nr,"1 000"\n', 2, "amount: '1 000' " + AMOUNT_RULE, id="points-separated-by-a-space"
        ),
        pytest.param(
            b'reference,amount\nr,"12 345.50"\n',
            2,
            "its digits are grouped by spaces, as some locales write thousands (1 234.50): write 12345.50",
            id="thousands-spaced",
        ),
        pytest.param(
            "reference,amount\nr,1\u00a0234.5\ns,-12\u202f345\n".encode(),
            2,
            "grouped by spaces, as some locales write thousands (1 234.50): write 1234.5",
            id="thousands-no-break-spaced",
        ),
        pytest.param(
            "reference,amount\nr,\u00a012.50\n".encode(),
            2,
            "it holds a no-break space (U+00A0), which a spreadsheet may write for a space: only plain spaces",
            id="no-break-space-around",
        ),
        pytest.param(
            b"reference,amount\nr,1.00\ns,0012.50\n",
            3,
            "it is padded with leading zeros, as a fixed-width export writes it: write 12.50",
            id="zero-padded",
        ),
        pytest.param(
            b"reference,amount\nr, -007 \n", 2, "padded with leading zeros, as a fixed-width", id="zero-padded-neg"
        ),
        pytest.param(
            b"reference,amount\nr,00.50\n",
            2,
            "leading zeros, as a fixed-width export writes it: write 0.50",
            id="00.50",
        ),
        pytest.param(
            b"reference,amount,currency\nr,1,TWD\ns,1,USD\n",
            3,
            "currency: 'USD' is not TWD: a file holds one partner's records of one period",
            id="another-currency",
        ),
        pytest.param(
            b"partner,reference,amount\nwallet-pay,r,1\n",
            2,
            "partner: 'wallet-pay' is not fresh-mart",
            id="another-partner",
        ),
        pytest.param(
            b"reference,amount,period\nr,1,2026-10\n", 2, "period: '2026-10' is not 2026-11", id="another-period"
        ),
    ],
)
def test_what_a_spreadsheet_may_mean_otherwise_is_refused_at_its_line(data: bytes, line: int, reason: str) -> None:
    found_line, found_reason = refusal(data)
    assert found_line == line
    assert reason in found_reason


def test_empty_lines_that_end_a_block_but_not_the_file_are_refused_at_the_first() -> None:
    records = b"reference,amount\n" + b"".join(b"conversion:%08d,1\n" % n for n in range(100_000))
    end = records.rindex(b"\n", 0, BLOCK_BYTES - 3) + 1  # the first block ends right after the empty lines
    data = records[:end] + b"\n\r\n" + records[end:]
    assert data.rindex(b"\n", 0, BLOCK_BYTES) + 1 == end + 3
    assert refusal(data) == (1 + records[:end].count(b"\n"), EMPTY_LINE)


def test_empty_lines_that_end_the_file_are_dropped_whatever_the_blocks() -> None:
    data = b"reference,amount\nr,1\n" + b"\n" * (BLOCK_BYTES + 10)
    reader, rows = read(data)
    assert rows == [(2, "r", 100, None, None)] and reader.lines == 1
