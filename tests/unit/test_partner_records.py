"""The partner records format: what is read, and every way a file is refused with its line."""

from __future__ import annotations

import pytest

from exchange.money import Currency
from exchange.settlement.errors import MalformedRecords
from exchange.settlement.records import BATCH_LINES, RecordReader

TWD = Currency("TWD", 2)


def read(text: str | bytes, currency: Currency = TWD) -> tuple[RecordReader, list[tuple[int, str, int, str | None, str | None]]]:
    data = text if isinstance(text, bytes) else text.encode()
    reader = RecordReader(data.splitlines(keepends=True), currency)
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


def test_columns_come_in_any_order_with_a_bom_and_crlf() -> None:
    _, rows = read(b"\xef\xbb\xbfamount,reference\r\n-3,conversion:x\r\n4.00,conversion:y")
    assert rows == [(2, "conversion:x", -300, None, None), (3, "conversion:y", 400, None, None)]


def test_a_currency_without_minor_units_takes_whole_amounts_only() -> None:
    _, rows = read("reference,amount\nr,150\n", Currency("JPY", 0))
    assert rows == [(2, "r", 150, None, None)]
    assert refusal("reference,amount\nr,150.5\n", Currency("JPY", 0))[0] == 2


def test_batches_are_bounded_whatever_the_file_size() -> None:
    lines = [b"reference,amount\n", *(f"r{n},1\n".encode() for n in range(BATCH_LINES * 2 + 5))]
    reader = RecordReader(lines, TWD)
    sizes = [len(batch.matches) for batch in reader.batches()]
    assert sizes == [BATCH_LINES, BATCH_LINES, 5]
    assert reader.lines == BATCH_LINES * 2 + 5


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("", 1, "the file is empty"),
        ("ref,amount\n", 1, "the header must name the columns reference, amount"),
        ("reference,amount,amount\n", 1, "each once"),
        ("reference,amount,colour\n", 1, "the header must name"),
        ("reference,amount\nr,1\n\nr2,2\n", 3, "an empty line"),
        ("reference,amount\nr,1\nr2\n", 3, "1 fields, but the header names 2"),
        ("reference,amount\nr,1,2\n", 2, "3 fields, but the header names 2"),
        ("reference,amount\nr,1.234\n", 2, "amount: '1.234' is not an amount in TWD"),
        ("reference,amount\nr,1e3\n", 2, "amount: '1e3' is not an amount"),
        ("reference,amount\nr,+5\n", 2, "amount: '+5'"),
        ("reference,amount\nr,\n", 2, "amount: '' is not an amount"),
        ("reference,amount\nr,0012\n", 2, "amount: '0012'"),
        ("reference,amount\nr,1234567890123456\n", 2, "15 integer digits"),
        ("reference,amount\n,5\n", 2, "reference: must be 1 to 200 characters, got 0"),
        (f"reference,amount\n{'x' * 201},5\n", 2, "reference: must be 1 to 200 characters, got 201"),
        ('reference,amount\nab"c,5\n', 2, "double quote"),
        ("reference,amount\nr\t1,5\n", 2, "control character"),
        ("reference,amount,counterparty\nr,5,Wallet Pay\n", 2, "counterparty: 'Wallet Pay' is neither a program id nor EXCHANGE"),
        ("reference,amount,date\nr,5,2026-02-30\n", 2, "date: '2026-02-30' is not a date on the calendar"),
        ("reference,amount,date\nr,5,30/11/2026\n", 2, "date: '30/11/2026' is not a date written YYYY-MM-DD"),
    ],
)
def test_a_malformed_file_is_refused_naming_the_first_bad_line_and_why(text: str, line: int, reason: str) -> None:
    found_line, found_reason = refusal(text)
    assert found_line == line
    assert reason in found_reason


def test_bytes_that_are_not_utf8_are_refused_on_their_line() -> None:
    assert refusal(b"reference,amount\nr,1\nr\xff,2\n") == (3, "not UTF-8 text")


def test_the_first_bad_line_is_named_even_past_the_first_batch() -> None:
    lines = ["reference,amount", *(f"r{n},1" for n in range(BATCH_LINES + 10)), "r,oops"]
    assert refusal("\n".join(lines)) == (BATCH_LINES + 12, "amount: 'oops' is not an amount in TWD: write an exact decimal such as -1234.5, with at most 2 decimals and 15 integer digits")
