"""Partner records files as finance teams' spreadsheets and ERPs really write them, each with
what the exchange must make of it: how its lines compare (:class:`Compared`) or the line and
rule it is refused at (:class:`Refused`). Built from what a period's ledger holds for one
partner, so that the service's tests and a front end's run the same files."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from decimal import Decimal

from exchange.settlement.statements import CSV_COLUMNS


@dataclass(frozen=True)
class PeriodLedger:
    """What the ledger holds for ``partner`` in ``period``: ``lines`` (reference and amount, as
    the statement prints them, none netting to zero), a conversion the exchange ``reversed``
    within the period (its reference and its amount before the reversal), and a reference
    between two ``other`` partners."""

    partner: str
    period: str
    lines: tuple[tuple[str, str], ...]
    reversed: tuple[str, str]
    other: str


@dataclass(frozen=True)
class Compared:
    """An accepted file: its record count, and how many lines fell in each class."""

    lines: int
    matched: int
    amount_mismatch: int = 0
    missing_in_ledger: int = 0
    duplicate: int = 0
    missing_in_partner: int = 0


@dataclass(frozen=True)
class Refused:
    """A refused file: its first bad line, and words of the reason (the column and the rule)."""

    line: int
    reason: str


def outcome_is(found: object, expected: Compared | Refused) -> bool:
    """Whether a file's outcome is the expected one (a refusal: its line, and the words in its reason)."""
    if isinstance(found, Refused) and isinstance(expected, Refused):
        return found.line == expected.line and expected.reason in found.reason
    return found == expected


def _file(header: str, rows: list[str], end: str = "\n") -> bytes:
    return end.join([header, *rows, ""]).encode()


def _workbook(header: str, rows: list[str]) -> bytes:
    """The file saved as an Excel workbook (.xlsx, a ZIP of XML parts) rather than as CSV."""
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "xl/worksheets/sheet1.xml", "".join(f"<row><c><is><t>{row}</t></is></c></row>" for row in [header, *rows])
        )
    return data.getvalue()


def files(ledger: PeriodLedger) -> dict[str, tuple[bytes, Compared | Refused]]:
    """Every file a finance team might send for ``ledger``'s partner and period, by name."""
    n = len(ledger.lines)
    body = [f"{reference},{amount}" for reference, amount in ledger.lines]
    first_reference, first_amount = ledger.lines[0]
    every = Compared(n, n)
    header = "reference,amount"
    total = sum(Decimal(amount) for _, amount in ledger.lines)

    def bad_amount(amount: str) -> bytes:
        return _file(header, [f"{first_reference},{amount}", *body[1:]])

    return {
        # Encodings and line ends.
        "utf8-bom-crlf": (b"\xef\xbb\xbf" + _file(header, body, "\r\n"), every),
        "utf16": (_file(header, body).decode().encode("utf-16"), Refused(1, "UTF-16 text")),
        "latin1": (
            _file(header, [*body, "redemption:caf\u00e9,1.00"]).decode().encode("latin-1"),
            Refused(n + 2, "not UTF-8"),
        ),
        "excel-workbook": (_workbook(header, body), Refused(1, "a spreadsheet workbook (.xlsx, .xls or .ods)")),
        "lone-cr": (_file(header, body, "\r"), Refused(1, "carriage return alone")),
        "trailing-empty-lines": (_file(header, body) + b"\n,,\n", every),
        "no-final-newline": (_file(header, body).removesuffix(b"\n"), every),
        "empty-line-among-records": (_file(header, [body[0], "", *body[1:], "x,1"]), Refused(3, "an empty line")),
        # Quoting, separators, columns.
        "quotes-inside-a-field": (
            _file("reference,note,amount", [f'"{r}","paid, see ""memo"" 7",{a}' for r, a in ledger.lines]),
            every,
        ),
        "quoted-commas": (
            _file("reference,note,amount", [f'"{r}","paid, on time","{a}"' for r, a in ledger.lines]),
            every,
        ),
        "line-break-in-a-field": (
            _file("reference,note,amount", [f'{first_reference},"two\nlines",{first_amount}']),
            Compared(1, 1, missing_in_partner=n - 1),
        ),
        "line-breaks-in-notes-exported-with-crlf": (
            _file(
                "reference,note,amount",
                [f'{r},"booked {i}\r\nby ""finance""\r\n",{a}' for i, (r, a) in enumerate(ledger.lines)],
                "\r\n",
            ),
            every,
        ),
        "line-break-in-the-reference": (
            _file(header, [f'"{first_reference}\n",{first_amount}', *body[1:]]),
            Refused(2, "reference: holds a line break"),
        ),
        "semicolons": (
            _file("reference;amount", [row.replace(",", ";") for row in body]),
            Refused(1, "not semicolons"),
        ),
        "semicolons-below-a-separator-line": (
            b"\xef\xbb\xbf" + _file("sep=;\r\nreference;amount", [row.replace(",", ";") for row in body], "\r\n"),
            Refused(1, "'sep=;' is a spreadsheet's separator line, not the header"),
        ),
        "tabs": (_file("reference\tamount", [row.replace(",", "\t") for row in body]), Refused(1, "not tabs")),
        "a-thousand-columns": (
            _file(header + ",note" * 998, [row + ",x" * 998 for row in body]),
            every,
        ),
        "more-columns-than-a-table-holds": (
            _file(header + ",note" * 1999, [row + ",x" * 1999 for row in body]),
            Refused(1, "the header names 2,001 columns; a records file has at most 1,000"),
        ),
        "another-order-extra-columns-any-case": (
            _file(
                " Amount ,Description,REFERENCE , Member No",
                [f'{a},"{r}, as booked",{r},m-{i}' for i, (r, a) in enumerate(ledger.lines)],
            ),
            every,
        ),
        "trailing-empty-columns": (_file(header + ",,", [f"{row},," for row in body], "\r\n"), every),
        "every-line-ends-in-a-comma": (
            _file(header, [f"{row}," for row in body]),
            Refused(2, "3 fields, but the header names 2: the fields after the header's last column are empty"),
        ),
        "header-ends-in-empty-columns-its-lines-lack": (
            _file(header + ",", body),
            Refused(2, "the header ends in unnamed columns this line lacks"),
        ),
        "missing-column": (_file("reference,value", body), Refused(1, "amount is missing")),
        "checked-columns-of-this-import": (
            _file(
                "partner,period,currency,reference,amount",
                [f"{ledger.partner},{ledger.period},TWD,{row}" for row in body],
            ),
            every,
        ),
        # Amounts.
        "amount-thousands-comma": (bad_amount('"1,234.50"'), Refused(2, "amount: '1,234.50' is not an amount")),
        "amount-decimal-comma": (bad_amount('"1.234,50"'), Refused(2, "a comma may be a decimal comma")),
        "amount-decimal-comma-unquoted": (
            bad_amount("12,50"),
            Refused(2, "12,50 is written with a decimal comma: write 12.50"),
        ),
        "amount-spaces": (_file(header, [f"{r}, {a} " for r, a in ledger.lines]), every),
        "amount-12.500": (bad_amount("12.500"), Refused(2, "it has 3 decimals")),
        "amount-parentheses": (bad_amount("(3.00)"), Refused(2, "not parentheses")),
        "amount-exponent": (bad_amount("1e3"), Refused(2, "exponents")),
        "amount-nan": (bad_amount("NaN"), Refused(2, "amount: 'NaN' is not an amount")),
        "amount-accounting-zero": (bad_amount('" -   "'), Refused(2, "accounting format shows zero: write 0.00")),
        "amount-infinity": (bad_amount("Infinity"), Refused(2, "amount: 'Infinity' is not an amount")),
        "amount-more-decimals": (bad_amount("1.005"), Refused(2, "more than the currency has")),
        "amount-another-currency-sign": (bad_amount("US$3.00"), Refused(2, "without a currency sign or code")),
        "amount-another-currency-column": (
            _file("reference,amount,currency", [f"{row},TWD" for row in body[:-1]] + [f"{body[-1]},USD"]),
            Refused(n + 1, "currency: 'USD' is not TWD"),
        ),
        "points-with-separators": (bad_amount('"1 000"'), Refused(2, "amount: '1 000' is not an amount")),
        # References pasted from a web page or a PDF, or below a second file's byte-order mark:
        # they look like the statement's, and would match nothing.
        "reference-after-a-second-bom": (
            b"\xef\xbb\xbf" + _file(header, [*body[:-1], f"\ufeff{body[-1]}"], "\r\n"),
            Refused(n + 1, "holds an invisible character, U+FEFF, at character 1"),
        ),
        "reference-with-a-zero-width-space": (
            _file(header, [f"{first_reference[:4]}\u200b{first_reference[4:]},{first_amount}", *body[1:]]),
            Refused(2, "holds an invisible character, U+200B, at character 5"),
        ),
        "reference-with-a-direction-mark": (
            _file(header, [*body, f'"{ledger.other}\u200e",1.00']),
            Refused(n + 2, f"holds an invisible character, U+200E, at character {len(ledger.other) + 1}"),
        ),
        # What the lines say.
        "the-same-row-twice": (_file(header, [*body, body[0]]), Compared(n + 1, n, duplicate=1)),
        "another-partners-row": (
            _file(header, [*body, f"{ledger.other},1.00"]),
            Compared(n + 1, n, missing_in_ledger=1),
        ),
        "another-partner-named": (
            _file(
                "partner,reference,amount", [f"{ledger.partner},{row}" for row in body] + [f"not-{ledger.partner},x,1"]
            ),
            Refused(n + 2, f"partner: 'not-{ledger.partner}' is not {ledger.partner}"),
        ),
        "another-period-named": (
            _file("reference,amount,period", [f"{row},{ledger.period}" for row in body] + ["x,1,1999-01"]),
            Refused(n + 2, f"period: '1999-01' is not {ledger.period}"),
        ),
        "period-made-a-date-by-a-spreadsheet": (
            b"\xef\xbb\xbf" + _file("reference,amount,period", [f"{row},Nov-26" for row in body], "\r\n"),
            Refused(2, "period: 'Nov-26' is not a period written YYYY-MM, as " + ledger.period),
        ),
        # A spreadsheet's totals row below the records: refused, unless the ledger has its
        # reference (a real record that happens to equal the sum of those above it).
        "totals-row": (_file(header, [*body, f"Total,{total}"]), Refused(n + 2, "'Total' looks like a totals row")),
        "totals-row-in-chinese-from-excel": (
            b"\xef\xbb\xbf"
            + _file("reference,amount,counterparty", [f"{row}," for row in body] + [f"合計,{total},"], "\r\n"),
            Refused(n + 2, f"its amount, {total}, is the sum of every record above it"),
        ),
        # Not only the last line: a totals row above a trailer, subtotals among the records.
        "totals-row-above-another-line": (
            _file(header, [*body, f"Grand Total,{total}", f"{ledger.other},1.00"]),
            Refused(n + 2, "'Grand Total' looks like a totals row: its amount"),
        ),
        "a-subtotal-below-each-record": (
            _file(header, [row for (r, a) in ledger.lines for row in (f"{r},{a}", f"小計,{a}")]),
            Refused(3, "'小計' looks like a totals row"),
        ),
        # Amounts at the limit whose total is not an amount: refused where the total leaves the
        # range (its sum overflowed the database's integers: an internal error), on both stores;
        # the same amounts netting within it are compared.
        "a-total-beyond-the-amount-limit": (
            _file(header, [*[f"conversion:big-{i},999999999999999.99" for i in range(3)], *body]),
            Refused(3, "amount: the total of the amounts up to this line, 1999999999999999.98, has more than 15"),
        ),
        "amounts-at-the-limit-netting-within-it": (
            _file(header, [*[f"conversion:big-{i},{'-' * (i % 2)}999999999999999.99" for i in range(200)], *body]),
            Compared(n + 200, n, missing_in_ledger=200),
        ),
        # An export's trailer counting the records: refused, wherever it is; a Total below it is
        # still found (a count is no record of the sums); a count label whose amount is not the
        # count of the records above it, or a reference holding "count", is a record.
        "trailer-row-counting-the-records": (
            _file(header, [*body, f"Rows,{n}"]),
            Refused(n + 2, f"'Rows' looks like a trailer row: its amount, {n}, is the number of records above it"),
        ),
        "trailer-row-above-a-totals-row": (
            b"\xef\xbb\xbf" + _file(header, [*body, f"筆數,{n}", f"Total,{total}"], "\r\n"),
            Refused(n + 2, "'筆數' looks like a trailer row"),
        ),
        "totals-row-above-a-trailer-row": (
            _file(header, [*body, f"Total,{total}", f"Record count:,{n}.00"]),
            Refused(n + 2, "'Total' looks like a totals row"),
        ),
        "a-count-label-not-counting-the-records": (
            _file(header, [*body, f"Count,{n + 1}", f"redemption:discount-{n},{n}"]),
            Compared(n + 2, n, missing_in_ledger=2),
        ),
        # An unknown reference below one record, with that record's amount: a coincidence as
        # common as equal amounts are, not a total (which sums two records at least).
        "one-record-repeated-below-it": (
            _file(header, [body[0], f"{ledger.other},{first_amount}"]),
            Compared(2, 1, missing_in_ledger=1, missing_in_partner=n - 1),
        ),
        "a-record-equal-to-the-sum-above-it": (
            _file(header, [f"{ledger.reversed[0]},{first_amount}", f"{first_reference},{first_amount}"]),
            Compared(2, 1, amount_mismatch=1, missing_in_partner=n - 1),
        ),
        # The statement's own CSV, its lines kept: a conversion and its fee are two lines of one
        # reference, which compare as an AMOUNT_MISMATCH and a DUPLICATE that cancel out.
        "statement-lines-uploaded-back": (
            _file(
                ",".join(CSV_COLUMNS),
                [
                    f"{ledger.partner},{ledger.period},TWD,line,t-{i},{r},conversion,,,,{a},,,,,,,"
                    for i, (r, a) in enumerate(ledger.lines)
                ],
                "\r\n",
            ),
            Refused(1, "this is the statement's CSV (its header is the statement's), not your records"),
        ),
        # A partner's own export may name some of the statement's columns.
        "an-export-naming-record-and-transaction": (
            _file("record,transaction,reference,amount", [f"rec-{i},tx-{i},{row}" for i, row in enumerate(body)]),
            every,
        ),
        "reversed-listed-as-first-booked": (
            _file(header, [*body, ",".join(ledger.reversed)]),
            Compared(n + 1, n, amount_mismatch=1),
        ),
        "reversed-listed-net": (_file(header, [*body, f"{ledger.reversed[0]},0.00"]), Compared(n + 1, n + 1)),
        "empty": (b"", Refused(1, "the file is empty")),
        "header-only": (_file(header, []), Compared(0, 0, missing_in_partner=n)),
        "header-and-empty-lines": (_file(header, ["", ""]), Compared(0, 0, missing_in_partner=n)),
    }
