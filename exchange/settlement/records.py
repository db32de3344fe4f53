"""A partner's records of a period, as CSV: the format, and a streaming validator.

The format (also in README.md and partners/SETTLEMENT.md):

* UTF-8 text (a byte-order mark is allowed; a spreadsheet's workbook is refused by its first
  bytes), lines ending in LF or CRLF; empty lines (or rows of empty fields) may end the file,
  and are refused anywhere else.
* Line 1 is a header naming the columns (not a spreadsheet's ``sep=;`` line), in any order, in any case, spaces around a name
  ignored: ``reference`` and ``amount`` are required, ``counterparty`` and ``date`` optional;
  ``partner``, ``period`` and ``currency`` are checked when present (every line must name this
  import's partner, period and the settlement currency); any other column is not read. No
  column the exchange reads is named twice. A header that is the statement's CSV's (its columns,
  in its order, of any document version) is the statement uploaded back, and is refused saying
  so (:data:`STATEMENT_UPLOADED`); a partner's own export may name any of those columns. The
  statement's JSON or JWS is refused by its first bytes (:data:`STATEMENT_DOCUMENT`).
* Every further line is one record, its fields separated by commas, as many as the header names
  (empty columns ending the header and every line are not read; empty fields the header does
  not name, or unnamed columns a line lacks, are refused: which field is which is not guessed). A field may be wrapped in
  double quotes (it may then hold commas). As RFC 4180 has it, a quoted field of a column the
  exchange does not read (a description) may also hold line breaks and double quotes (written
  twice, ``""``): its record then spans several lines, and is named by the line it starts on.
  No column the exchange reads holds a double quote or a line break, and no field holds
  another control character. A record over 64 KiB is refused, and so is a header of more than
  :data:`MAX_COLUMNS` columns.
* ``reference``: the business reference of the ledger transaction, as the statement prints it
  (``conversion:…``), 1 to 200 characters, neither starting nor ending with a space, with no
  invisible character (a zero-width space, a direction mark, U+FEFF). One line per reference: the ledger's amount for a
  reference is the sum of the partner's legs in every transaction that carries it.
* ``amount``: the partner's figure as an exact decimal in the settlement currency, from the
  partner's side: positive when the partner is owed, negative when it owes (``-1234.50``). At
  most as many decimals as the currency's minor unit, at most 15 integer digits, no sign ``+``,
  no exponent, no thousands separator, no leading zero; spaces around it are ignored. What a
  spreadsheet may mean otherwise is refused, never guessed: ``1,234.50`` and ``1.234,50`` (which
  is the decimal mark?), ``12.500`` (12.5, or twelve thousand five hundred?), ``(3.00)``, a
  currency sign or code.
* ``counterparty`` (may be empty, bare or quoted as ``""``): who the partner dealt with: a program id, or ``EXCHANGE``.
* ``date`` (may be empty, bare or quoted): the partner's date of the item, ``YYYY-MM-DD``.

The validator reads the file in blocks of :data:`BLOCK_BYTES` and hands each block's whole
records on as one :class:`Batch`, so memory does not grow with the file. A block is checked with
one pattern over all its lines when none is quoted (the common case, at the speed of the regular
expression engine, calendar dates included); otherwise, or when that check fails, line by line,
which also names the first bad line and the reason (:class:`~exchange.settlement.errors.MalformedRecords`). The caller
imports within one unit of work, so a bad line anywhere means nothing is imported.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from exchange.money import MAX_MONEY_INTEGER_DIGITS, Currency
from exchange.settlement.errors import MalformedRecords
from exchange.settlement.participants import EXCHANGE
from exchange.settlement.statements import STATEMENT_CSV_HEADERS
from exchange.text import counted, escaped, quoted

BLOCK_BYTES = 1 << 20
MAX_LINE_BYTES = 1 << 16
REQUIRED = ("reference", "amount")
OPTIONAL = ("counterparty", "date")
#: Columns read only to be checked: a file that has one names this import's partner, period
#: and currency on every line, so that another partner's, month's or currency's lines (an
#: export not filtered, two files joined) are refused rather than matched.
CHECKED = ("partner", "period", "currency")
MAX_REFERENCE = 200
#: The most columns a file's header may name: a file is staged in a table with a column for
#: each (:mod:`exchange.settlement.dialect`), and PostgreSQL's tables hold at most 1,600
#: (SQLite's 2,000). A partner's export has tens.
MAX_COLUMNS = 1000
MAX_INTEGER_DIGITS = MAX_MONEY_INTEGER_DIGITS

#: A record as staged: line number, reference, amount in minor units, counterparty, ISO date.
Row = tuple[int, str, int, str | None, str | None]


class ByteSource(Protocol):
    """Where a partner's file is read from: an open file (an upload taken whole first, or the
    coalition point's records as the exchange wrote them)."""

    def read(self, size: int = -1, /) -> bytes: ...


#: Why bytes that are not UTF-8 are refused, with the usual cause: a spreadsheet's plain "CSV"
#: is written in the computer's own encoding (Big5 on a Traditional Chinese Windows), its
#: "Unicode text" in UTF-16; its "CSV UTF-8" is what the exchange reads.
NOT_UTF8 = (
    'not UTF-8 text: save the file as "CSV UTF-8" (a spreadsheet\'s plain CSV may be in the '
    "computer's own encoding, such as Big5, and its Unicode text is UTF-16)"
)
#: Why a UTF-16 file (a byte-order mark of UTF-16, or NUL bytes in its header) is refused.
UTF16 = (
    'UTF-16 text (as a spreadsheet saves "Unicode text", its fields separated by tabs): save the file as "CSV UTF-8"'
)
#: How a spreadsheet's own file begins: a ZIP archive (Excel's .xlsx, LibreOffice's .ods) or an
#: OLE2 compound file (Excel's older .xls). Its bytes are no text (a NUL among them would be told
#: as UTF-16, or a line too long), so it is named by its first bytes.
_WORKBOOK_SIGNATURES = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
WORKBOOK = (
    'a spreadsheet workbook (.xlsx, .xls or .ods), not CSV text: save it from the spreadsheet as "CSV UTF-8" '
    "and upload that file"
)
#: Why the statement's JSON document (or another JSON export), or the JWS that signs it, is
#: refused: one line, often far over 64 KiB, that is no header; named by its first bytes (a JWS's
#: first segment is base64url of a JSON object, ``{"``: ``eyJ``).
STATEMENT_DOCUMENT = (
    "a JSON document or a JWS (the statement's?), not CSV: your records are a CSV file whose first line is a "
    "header naming the columns reference and amount, with one line per reference, your own figure for it, as "
    "partners/SETTLEMENT.md shows in 'Uploading your statement back'"
)
_DOCUMENT_STARTS = (b"{", b"eyJ")
CARRIAGE_RETURNS = (
    "lines end in a carriage return alone (as old Mac spreadsheets save them): save with LF or CRLF line ends"
)
#: Why the statement's own CSV is refused as records: its lines compare as pairs of breaks that
#: cancel out (a conversion's line an AMOUNT_MISMATCH by its fee, the fee line a DUPLICATE of
#: that difference; a reversal likewise), which explain nothing; its other rows have no reference.
STATEMENT_UPLOADED = (
    "this is the statement's CSV (its header is the statement's), not your records: the statement "
    "lists every line of a transaction (a conversion's fee to EXCHANGE, a reversal, on lines of their own), your "
    "records have one line per reference, with your own figure for it (the sum of its lines), so uploaded back its "
    "lines would be AMOUNT_MISMATCH and DUPLICATE breaks that cancel out; write one line per reference, as "
    "partners/SETTLEMENT.md shows in 'Uploading your statement back'"
)
#: Why a line with empty fields after the header's last column is refused (an export that ends
#: every line with a comma, or a spreadsheet's formatted empty columns on some rows): which
#: field is which is not guessed.
TRAILING_EMPTY_FIELDS = (
    "the fields after the header's last column are empty (a comma at the end of the line?): write each line "
    "with as many fields as the header names, or name the extra columns in the header"
)
#: Why a line is refused that lacks the empty columns the header ends in (``reference,amount,,``).
UNNAMED_COLUMNS = (
    "the header ends in unnamed columns this line lacks: save the file without the empty columns, "
    "or write each line with as many fields as the header"
)
#: Why a file whose first line names the field separator for Excel (``sep=;``, as some exports
#: write above the header) is refused: the header is the first line.
SEPARATOR_LINE = (
    "is a spreadsheet's separator line, not the header: remove it; the first line is the header, "
    "and fields are separated by commas"
)
_SEPARATOR_LINE = re.compile(r'"?sep=.?"?,*', re.IGNORECASE)
EMPTY_LINE = "an empty line (or a row of empty fields) among the records; empty lines may only end the file"
_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_COUNTERPARTY = r"(?:EXCHANGE|[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)?"
_DATE_SHAPE = r"\d{4}-\d{2}-\d{2}"
#: How the ``period`` column is written; a spreadsheet that takes it for a date writes it back
#: otherwise (``Nov-26``, ``2026/11/1``), which is said so rather than as another period.
_PERIOD_SHAPE = r"\d{4}-\d{2}"
#: A day of the Gregorian calendar, years 0001 to 9999, written YYYY-MM-DD: the months of 31
#: days, of 30, February to the 28th, and the 29th in leap years (a multiple of 4, of 400 for
#: centuries). Checking dates inside the one pattern spares a second pass over every line.
_CALENDAR_DATE = (
    r"(?!0000)(?:\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)"
    r"|02-(?:0[1-9]|1\d|2[0-8]))"
    r"|(?:\d\d(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)"
)
_DATE = f"(?:{_CALENDAR_DATE})?"
#: A reference, bare or within quotes (where it may hold commas): 1 to 200 characters, none a
#: control character or a double quote, neither the first nor the last a space, which no
#: reference the exchange prints has and which would otherwise mismatch in silence.
_REFERENCE = r"(?=[^\s{0}])[^{0}]{{1,200}}(?<=[^\s{0}])"
#: Control characters (C0, DEL, C1) and Unicode's line and paragraph separators: no field holds
#: one. Python splits lines at NEL, U+2028 and U+2029 too, so a field holding one would not be
#: one line.
_CONTROLS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
#: Characters that show as nothing, which text copied from a web page, a PDF or a word processor
#: (or a second file's byte-order mark, pasted below the first) brings along: the soft hyphen,
#: zero-width spaces and joiners, left-to-right and right-to-left marks, bidirectional embeddings,
#: overrides and isolates, the word joiner and invisible operators, and U+FEFF. No reference the
#: exchange prints holds one, and a reference with one looks like the statement's on every screen
#: yet matches nothing: both would be breaks no one could see the reason for.
_INVISIBLE = r"\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
#: A column the exchange does not read: any field with no control character; bare, without a
#: double quote; quoted, with line breaks and double quotes written twice (RFC 4180).
_ANY = (f'[^",{_CONTROLS}]*', f'(?:[^"{_CONTROLS}]|""|\n)*')
_VALUES = {
    "reference": (
        _REFERENCE.format(f'",{_CONTROLS}{_INVISIBLE}'),
        _REFERENCE.format(f'"{_CONTROLS}{_INVISIBLE}'),
    ),
    "counterparty": (_COUNTERPARTY, _COUNTERPARTY),
    "date": (_DATE, _DATE),
}
#: The columns staged for matching, whose values a line's pattern captures.
_CAPTURED = REQUIRED + OPTIONAL
_PROGRAM_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
#: What no exact decimal is, though a spreadsheet or a float may write it.
_NOT_A_NUMBER = re.compile(r"[+-]?(?:nan|inf|infinity|\d+(?:\.\d*)?e[+-]?\d+)", re.IGNORECASE)


def _amount_pattern(currency: Currency) -> str:
    """An amount: an exact decimal with spaces (only) around it, which the pattern allows and
    PostgreSQL's ``numeric`` and :meth:`RecordFormat.to_minor` ignore."""
    fraction = rf"(?:\.\d{{1,{currency.minor_units}}})?" if currency.minor_units else ""
    return rf" *-?(?:0|[1-9]\d{{0,{MAX_INTEGER_DIGITS - 1}}}){fraction} *"


def _field(name: str, bare: str, quoted: str) -> str:
    if name not in _CAPTURED:
        return f'(?:"{quoted}"|{bare})'
    return f'(?:"(?P<{name}_q>{quoted})"|(?P<{name}>{bare}))'


def _names(header: str) -> tuple[str, ...]:
    """The column names a header line gives, unquoted, in lower case, without spaces around."""
    return tuple(name.strip().lower() for name in next(csv.reader([header], skipinitialspace=True), []))


def _is_statement(columns: tuple[str, ...]) -> bool:
    """Whether a header is the statement's CSV's, as it or a spreadsheet saves it (empty columns
    after the last): its whole header, not some of its names, which a partner's export may share."""
    while columns and not columns[-1]:
        columns = columns[:-1]
    return columns in STATEMENT_CSV_HEADERS


def _column_problem(columns: tuple[str, ...]) -> str | None:
    """Why a header's columns cannot be read: a required column missing, or one the exchange
    reads named twice (which of the two would count?)."""
    for name in REQUIRED:
        if name not in columns:
            return f"the header must name the columns {' and '.join(REQUIRED)}: {name} is missing"
    for name in REQUIRED + OPTIONAL + CHECKED:
        if columns.count(name) > 1:
            return f"the header names the column {name} twice"
    return None


def _header_hint(header: str) -> str:
    """Why a header a spreadsheet wrote is refused, where a common cause shows: the semicolons a
    spreadsheet set to a decimal comma separates fields with, the tabs of its text export, or a
    character that shows as nothing (a second byte-order mark) hiding a name that looks right."""
    if invisible := re.search(f"[{_INVISIBLE}]", header):
        return (
            f": it holds an invisible character, U+{ord(invisible.group()):04X}, at character {invisible.start() + 1} "
            "(a second byte-order mark, or text copied from a web page?); type the header again"
        )
    if ";" in header and "," not in header:
        return (
            ": fields are separated by commas, not semicolons (a spreadsheet set to a decimal comma "
            "saves with semicolons); write amounts with a decimal point, as 1234.50"
        )
    if "\t" in header and "," not in header:
        return ': fields are separated by commas, not tabs (as a spreadsheet saves "Text"): save as "CSV UTF-8"'
    return ""


def _comma_amount(parts: list[str], places: int) -> str | None:
    """What an amount written with commas (cut at them into ``parts``) plainly means, and what
    to write instead: a decimal comma (``12,50``, 12.50) or thousands separators (``1,234.50``,
    1234.50); ``None`` when the parts are no amount's digits, or could mean either (``1,234``
    in a currency of three decimals)."""
    first, *rest = (part.strip(" ") for part in parts)
    if not rest or not re.fullmatch(r"-?[0-9]+", first):
        return None
    written = ",".join([first, *rest])
    if len(rest) == 1 and 0 < len(rest[0]) < 3 and len(rest[0]) <= places and re.fullmatch("[0-9]+", rest[0]):
        return f"{written} is written with a decimal comma: write {first}.{rest[0]}, with a decimal point"
    groups = all(re.fullmatch(r"[0-9]{3}", part) for part in rest[:-1]) and re.fullmatch(
        r"[0-9]{3}(?:\.[0-9]+)?", rest[-1]
    )
    if groups and (len(rest) > 1 or "." in rest[-1] or places < 3):
        return f"{written} is written with a thousands separator: write {first}{''.join(rest)}, with no separator"
    return None


#: A figure whose sign an accounting export writes its own way: after the digits (``12.00-``),
#: as a credit or debit mark (``12.00 CR``, ``DR``), with a plus, or with another minus
#: character (U+2212 and the dashes a word processor or a spreadsheet's display format puts).
_SIGN_AFTER = re.compile(r"(\d+(?:\.\d*)?) *-")
_CREDIT_DEBIT = re.compile(r"(\d+(?:\.\d*)?) *(?:CR|DR)", re.IGNORECASE)
_OTHER_MINUS = "\u2212\u2012\u2013\u2014\ufe63\uff0d"
#: Thousands grouped by a space of any kind (``1 234.50``, ``-12\u00a0345``; a non-breaking or
#: narrow one is how French and Swiss formats write them).
_SPACE_GROUPED = re.compile(r"-?\d{1,3}(?:\s\d{3})+(?:\.\d+)?")

#: A figure padded with zeros before its first digit (``0012.50``, ``-007``): its sign, and the
#: figure without them (the last zero before a decimal point stays: ``00.50`` is ``0.50``).
_ZERO_PADDED = re.compile(r"(-?)0+(\d+(?:\.\d+)?)")


def _misplaced_sign(figure: str) -> str | None:
    """How ``figure`` writes its sign, when not as an amount does (one leading ``-``, none for a
    positive amount); ``None`` otherwise. Which side a ``CR`` or ``DR`` is on depends on whose
    books it is, so it is named, never read."""
    if match := _SIGN_AFTER.fullmatch(figure):
        return f"a negative amount takes its minus sign before the figure (-{match[1]}), not after it"
    if _CREDIT_DEBIT.fullmatch(figure):
        return (
            "CR and DR are not read (whose credit?): write the amount from your side, positive when "
            "you are owed it, with a minus sign (-12.00) when you owe it"
        )
    if not re.search(r"\d", figure):
        return None
    if figure.startswith("+"):
        return f"a positive amount is written without a plus sign ({escaped(figure[1:].strip(' '))})"
    if figure and figure[0] in _OTHER_MINUS:
        return (
            f"the minus sign is the ASCII hyphen-minus (-{escaped(figure[1:].strip(' '))}), not U+{ord(figure[0]):04X}"
        )
    return None


@dataclass(frozen=True)
class RecordFormat:
    """The columns of one file, in its header's order (their names in lower case), and the
    patterns its lines must match: ``line`` for one line (quoted fields allowed, values
    captured), ``block`` for every line of a block whose fields are all bare. ``expected`` is
    what a :data:`CHECKED` column must say on every line."""

    columns: tuple[str, ...]
    currency: Currency
    expected: Mapping[str, str]
    line: re.Pattern[str]
    block: re.Pattern[str]

    @classmethod
    def from_header(cls, header: str, currency: Currency, expected: Mapping[str, str]) -> RecordFormat:
        try:
            columns = _names(header)
        except csv.Error:
            columns = ()
        if _SEPARATOR_LINE.fullmatch(header):
            raise MalformedRecords(1, f"{quoted(header)} {SEPARATOR_LINE}")
        if len(columns) > MAX_COLUMNS:
            raise MalformedRecords(
                1,
                f"the header names {len(columns):,} columns; a records file has at most {MAX_COLUMNS:,}: save it "
                "with fewer (the exchange reads only reference, amount, counterparty and date)",
            )
        if problem := _column_problem(columns):
            raise MalformedRecords(1, f"{problem}; got {quoted(header)}{_header_hint(header)}")
        if _is_statement(columns):
            raise MalformedRecords(1, STATEMENT_UPLOADED)
        values = {
            **_VALUES,
            "amount": (_amount_pattern(currency),) * 2,
            **{name: (re.escape(expected[name]),) * 2 for name in CHECKED},
        }
        line = ",".join(_field(name, *values.get(name, _ANY)) for name in columns)
        block = ",".join(values.get(name, _ANY)[0] for name in columns)
        return cls(columns, currency, expected, re.compile(line), re.compile(f"^{block}$", re.MULTILINE))

    def value(self, match: re.Match[str], name: str) -> str | None:
        """The field ``name`` of a matched line, unquoted (``None`` for an empty field, bare or
        quoted: a spreadsheet that quotes every text cell writes an empty one as ``""``)."""
        if name not in self.columns:
            return None
        quoted = match[f"{name}_q"]
        return (quoted if quoted is not None else match[name]) or None

    def to_minor(self, amount: str) -> int:
        """An amount the pattern accepted, in minor units (exact: no rounding is ever needed)."""
        amount = amount.strip(" ")
        negative = amount.startswith("-")
        whole, _, fraction = amount.lstrip("-").partition(".")
        scale: int = 10**self.currency.minor_units
        minor = int(whole) * scale + int(fraction.ljust(self.currency.minor_units, "0") or 0)
        return -minor if negative else minor

    def row(self, line_number: int, match: re.Match[str]) -> Row:
        """(line, reference, amount in minor units, counterparty, date) of a matched line."""
        return (
            line_number,
            str(self.value(match, "reference")),
            self.to_minor(str(self.value(match, "amount"))),
            self.value(match, "counterparty"),
            self.value(match, "date"),
        )

    def problem(self, text: str) -> str | None:
        """Why one line is refused, in words; ``None`` if it is a good record."""
        if self.line.fullmatch(text) is not None:
            return None
        if not text.strip(" ,"):
            return EMPTY_LINE
        try:
            names = _names(text)
        except csv.Error:
            names = ()
        if names == self.columns:
            return "repeats the header: a file has one header line, its first (were two files joined?)"
        if sorted(names) == sorted(self.columns):
            return "repeats the header's names in another order: a file has one header line, its first"
        # CRLF was read as a line end, so a carriage return left is one alone: an old Mac line
        # end, which would otherwise be told as a control character.
        if "\r" in text:
            return CARRIAGE_RETURNS
        # A record's line breaks are within quotes (the file is cut into records outside them).
        if re.search(f"[{_CONTROLS}]", text.replace("\n", "")):
            return "a field holds a control character or a line break: remove it; no field may hold one"
        if text.count('"') % 2:
            return (
                "a quoted field opened on this line never ends: a quoted field ends with a double quote, "
                'and a double quote within it is written twice ("")'
            )
        try:
            fields = next(csv.reader([text], strict=True))
        except csv.Error:
            return 'a double quote in the middle of a field; quote whole fields only, a quote within one written twice ("")'
        if len(fields) != len(self.columns):
            return self._field_count_problem(fields)
        for name, value in zip(self.columns, fields, strict=True):
            if name not in _VALUES and name not in REQUIRED + CHECKED:
                continue  # not read: any quoted text will do
            if '"' in value:
                return f"{name}: holds a double quote: remove it; no column the exchange reads may hold one"
            if "\n" in value:
                return f"{name}: holds a line break; only a column the exchange does not read may"
            if reason := self._field_problem(name, value):
                return f"{name}: {reason}"
        return 'a double quote in a field not wrapped in double quotes: wrap the field in quotes and write the quote twice ("")'

    def _field_count_problem(self, fields: list[str]) -> str:
        """Why a record has another number of fields than the header names: said plainly when
        an unquoted amount was cut at its comma (``12,50``, ``1,234.50``)."""
        count = f"{counted(len(fields), 'field')}, but the header names {len(self.columns)}"
        at, extra = self.columns.index("amount"), len(fields) - len(self.columns)
        if extra > 0 and (meaning := _comma_amount(fields[at : at + extra + 1], self.currency.minor_units)):
            return f"amount: {meaning} (unquoted, its comma split the line: {count})"
        if extra > 0 and not "".join(fields[len(self.columns) :]).strip(" "):
            return f"{count}: {TRAILING_EMPTY_FIELDS}"
        if extra < 0 and not any(self.columns[len(fields) :]):
            return f"{count}: {UNNAMED_COLUMNS}"
        return count

    def _field_problem(self, name: str, value: str) -> str | None:
        if name == "reference" and not 1 <= len(value) <= MAX_REFERENCE:
            return f"must be 1 to {MAX_REFERENCE} characters, got {len(value)}"
        if name == "reference" and value != value.strip():
            return f"{quoted(value)} starts or ends with a space; write the reference as the statement prints it"
        if name == "reference" and (invisible := re.search(f"[{_INVISIBLE}]", value)):
            return (
                f"{quoted(value)} holds an invisible character, U+{ord(invisible.group()):04X}, at character "
                f"{invisible.start() + 1}; type the reference again, or copy it from the statement"
            )
        if name == "amount" and not re.fullmatch(_amount_pattern(self.currency), value):
            return self._amount_problem(value)
        if name == "counterparty" and value and value != EXCHANGE and not _PROGRAM_ID.match(value):
            return f"{quoted(value)} is neither a program id nor {EXCHANGE}"
        if name == "date" and value and not re.fullmatch(_DATE_SHAPE, value):
            return (
                f"{quoted(value)} is not a date written YYYY-MM-DD: a spreadsheet may have written it its own way; "
                "format the column as text and write the date again, or leave it empty (a date is kept with a "
                "break, never compared)"
            )
        if name == "date" and value and not re.fullmatch(_DATE, value):
            return f"{quoted(value)} is not a date on the calendar"
        if name == "period" and not re.fullmatch(_PERIOD_SHAPE, value):
            return (
                f"{quoted(value)} is not a period written YYYY-MM, as {self.expected[name]}: a spreadsheet "
                "may have made it a date; format the column as text and write the period again"
            )
        if name in CHECKED and value != self.expected[name]:
            return (
                f"{quoted(value)} is not {self.expected[name]}: a file holds one partner's records of one "
                "period, in the settlement currency"
            )
        return None

    def _amount_problem(self, value: str) -> str:
        """Why ``value`` is no amount: the rule, and the cause where a spreadsheet's habit shows.
        What a figure may mean in another convention is refused, never guessed."""
        code, places = self.currency.code, self.currency.minor_units
        rule = (
            f"{quoted(value)} is not an amount in {code}: write an exact decimal such as -1234.5, with at most "
            f"{places} decimals and {MAX_INTEGER_DIGITS} integer digits, a decimal point and no thousands separator"
        )
        figure = value.strip(" ")
        decimals = re.fullmatch(r"-?\d+\.(\d+)", figure)
        if re.fullmatch(r"\(.*\)", figure):
            return f"{rule}; a negative amount takes a minus sign (-3.00), not parentheses"
        if _NOT_A_NUMBER.fullmatch(figure):
            return f"{rule}; NaN, Infinity and exponents (1e3) are not exact decimals"
        if "".join(c for c in figure if not (c.isspace() or unicodedata.category(c) == "Sc")) == "-":
            return (
                f"{rule}; a dash alone is how a spreadsheet's accounting format shows zero: "
                f"write {self.currency.from_minor(0)}, with the column formatted as a plain number"
            )
        if sign := _misplaced_sign(figure):
            return f"{rule}; {sign}"
        if re.search(r"\d", figure) and (
            re.search(r"[A-Za-z]", figure) or any(unicodedata.category(c) == "Sc" for c in figure)
        ):
            return f"{rule}; write the figure alone, without a currency sign or code: amounts are in the settlement currency"
        if "," in figure and (meaning := _comma_amount(figure.split(","), places)):
            return f"{rule}; {meaning}"
        if "," in figure:
            return (
                f"{rule}; a comma may be a decimal comma or a thousands separator "
                "(1,234.50 and 1.234,50 mean the same in different spreadsheets), so it is not guessed"
            )
        if decimals and len(decimals[1]) > places:
            return (
                f"{rule}; it has {counted(len(decimals[1]), 'decimal')}, more than the currency has (where a dot separates "
                f"thousands it reads {figure.replace('.', '')}), so it is not guessed"
            )
        if (padded := _ZERO_PADDED.fullmatch(figure)) and re.fullmatch(
            _amount_pattern(self.currency), unpadded := padded[1] + padded[2]
        ):
            return f"{rule}; it is padded with leading zeros, as a fixed-width export writes it: write {unpadded}"
        if _SPACE_GROUPED.fullmatch(figure) and re.fullmatch(
            _amount_pattern(self.currency), ungrouped := re.sub(r"\s", "", figure)
        ):
            return (
                f"{rule}; its digits are grouped by spaces, as some locales write thousands (1 234.50): "
                f"write {ungrouped}"
            )
        if space := next((c for c in figure if c.isspace() and c != " "), None):
            return (
                f"{rule}; it holds a {unicodedata.name(space, 'control character').lower()} (U+{ord(space):04X}), which a spreadsheet "
                "may write for a space: only plain spaces around the figure are ignored"
            )
        return rule


#: Words a spreadsheet or an ERP labels a totals or subtotal row with (``Total``, ``Subtotal
#: 2026-11-03``, ``Grand total``, ``小計``, ``合計``), as a reference holds them in lower case.
SUMMARY_WORDS = ("total", "合計", "合计", "小計", "小计", "總計", "总计")


def totals_row(
    reference: str, amount: str, *, lines: tuple[int, int] | None, partner: str, period: str, more: int = 0
) -> str:
    """Why a record is refused as a totals or subtotal row a spreadsheet adds among the records
    (``Total,12345.67``; ``Subtotal 11-03,120.00`` after each day): its ``amount`` is the sum of
    every record above it (``lines`` ``None``), or of the records on ``lines`` (first, last) just
    above it, and the ledger has no such ``reference`` for the partner in the period. Imported,
    it would be a MISSING_IN_LEDGER break whose difference cancels those records' total. ``more``
    is how many rows below it are such rows too (a subtotal after each day), so that all are
    removed in one go rather than found one upload at a time."""
    summed = "every record above it" if lines is None else f"the records on lines {lines[0]} to {lines[1]}"
    kind = "a totals row" if lines is None else "a subtotal row"
    return (
        f"reference: {quoted(reference)} looks like {kind}: its amount, {amount}, is the sum of {summed}, "
        f"and the ledger has no such reference for {partner} in {period}; remove the row: a file holds "
        "records only" + (f" ({counted(more, 'more such row')} below it)" if more else "")
    )


#: What a spreadsheet or an ERP labels a trailer row with, the count of the records above it
#: (``Rows,4``, ``Record count:,12``, ``筆數,12``): a reference that is one of these, in lower case
#: and without a trailing colon. Whole labels, not words in a reference as
#: :data:`SUMMARY_WORDS` are, since ``count`` is in ``redemption:discount-42``.
COUNT_LABELS = (
    "count",
    "rows",
    "records",
    "lines",
    "row count",
    "record count",
    "line count",
    "number of rows",
    "number of records",
    "total rows",
    "total records",
    "筆數",
    "笔数",
    "總筆數",
    "总笔数",
)


def trailer_row(reference: str, count: int, *, partner: str, period: str) -> str:
    """Why a record is refused as a trailer row an export adds below the records
    (``Rows,4``): its reference is one of :data:`COUNT_LABELS`, its amount ``count``, the number
    of records above it, and the ledger has no such ``reference`` for the partner in the period.
    Imported, it would be a MISSING_IN_LEDGER break of ``count`` in money."""
    return (
        f"reference: {quoted(reference)} looks like a trailer row: its amount, {count}, is the number of records "
        f"above it, and the ledger has no such reference for {partner} in {period}; remove the row: a file holds "
        "records only"
    )


def total_out_of_range(total: str) -> str:
    """Why a file is refused at the line where the running total of its amounts, ``total``,
    first has more than :data:`MAX_INTEGER_DIGITS` integer digits: every amount the exchange
    stores, a reconciliation's totals among them, is in that range, so such a file could not be
    compared (it was an internal error, its sum overflowing the database's 64-bit integers)."""
    return (
        f"amount: the total of the amounts up to this line, {total}, has more than {MAX_INTEGER_DIGITS} integer "
        "digits, as no amount and no total may; check the amounts above"
    )


def split_records(text: str) -> Iterator[tuple[int, str]]:
    """The records of ``text`` (whole lines, each ending in LF), each without its line end and
    with the index of the line it starts on. A record runs on while a quoted field is open (an
    odd count of double quotes, RFC 4180's ``""`` counting twice); a file's last record may
    leave one open, which the format then refuses."""
    lines = text.split("\n")[:-1]
    if '"' not in text:
        yield from enumerate(lines)
        return
    start, parts, quotes = 0, list[str](), 0
    for index, line in enumerate(lines):
        if not parts:
            start = index
        parts.append(line)
        quotes += line.count('"')
        if quotes % 2 == 0:
            yield start, "\n".join(parts)
            parts, quotes = [], 0
    if parts:
        yield start, "\n".join(parts)


def _records_end(data: bytes) -> int:
    """Where the whole records of ``data`` (which starts a record) end: just after its last LF
    outside a quoted field; 0 when no record ends in it."""
    cut = data.rfind(b"\n") + 1
    if b'"' not in data:
        return cut
    quotes = data.count(b'"', 0, cut)
    while cut and quotes % 2:
        previous = data.rfind(b"\n", 0, cut - 1) + 1
        quotes -= data.count(b'"', previous, cut)
        cut = previous
    return cut


@dataclass(frozen=True)
class Batch:
    """Consecutive valid records, as CSV text (LF-terminated lines) from line ``first_line``:
    ``lines`` lines, holding ``records`` records (fewer when a quoted field holds a line break)."""

    first_line: int
    text: str
    lines: int
    records: int

    def rows(self, format: RecordFormat) -> list[Row]:
        rows = []
        for index, record in split_records(self.text):
            match = format.line.fullmatch(record)
            assert match is not None  # checked when the batch was read
            rows.append(format.row(self.first_line + index, match))
        return rows


def _without_trailing_empty_lines(text: str) -> tuple[str, int]:
    """``text`` (whole lines) without the empty lines (or rows of empty fields) it ends with,
    and how many those were. Looks only at the lines it removes, and the one before them."""
    end, empty = len(text), 0
    while end:
        start = text.rfind("\n", 0, end - 1) + 1
        if text[start : end - 1].strip(" ,"):
            break
        end, empty = start, empty + 1
    return text[:end], empty


class RecordReader:
    """Validates a partner's file block by block while handing it on in batches.

    ``partner`` and ``period`` are the import's: what a ``partner`` or ``period`` column must
    say. After the batches are exhausted, :attr:`lines` is the number of records read and
    :attr:`sha256` the digest of every byte read.
    """

    def __init__(self, source: ByteSource, currency: Currency, *, partner: str, period: str) -> None:
        self._source = source
        self._digest = hashlib.sha256()
        self._lines_read = 0  # whole lines handed on so far, the header included
        self.lines = 0
        self._blocks = self._read_blocks()
        block = next(self._blocks, b"")
        if block.startswith(_UTF16_BOMS):
            raise MalformedRecords(1, UTF16)
        block = block.removeprefix(_BOM)
        header, _, self._first = block.partition(b"\n")
        expected = {"partner": partner, "period": period, "currency": currency.code}
        self.format = self._parse_header(header, currency, expected, empty=not block.strip())

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def _read_blocks(self) -> Iterator[bytes]:
        """Whole records (each ending in LF), about :data:`BLOCK_BYTES` at a time; a workbook,
        a JSON document or a JWS is refused by its first bytes (:data:`WORKBOOK`,
        :data:`STATEMENT_DOCUMENT`)."""
        rest = b""
        data = self._source.read(BLOCK_BYTES)
        if data.startswith(_WORKBOOK_SIGNATURES):
            raise MalformedRecords(1, WORKBOOK)
        if data.removeprefix(_BOM).lstrip().startswith(_DOCUMENT_STARTS):
            raise MalformedRecords(1, STATEMENT_DOCUMENT)
        while data:
            self._digest.update(data)
            data, rest = rest + data, b""
            cut = _records_end(data)
            if len(data) - cut > MAX_LINE_BYTES:
                line = self._lines_read + data.count(b"\n", 0, cut) + 1
                if not cut and b"\r" in data and b"\n" not in data:
                    raise MalformedRecords(line, CARRIAGE_RETURNS)
                if b"\n" in data[cut:]:
                    raise MalformedRecords(
                        line,
                        f"a record over {MAX_LINE_BYTES} bytes: a quoted field opened on this line runs on "
                        "(a double quote that ends it missing?)",
                    )
                raise MalformedRecords(line, f"a line over {MAX_LINE_BYTES} bytes")
            rest = data[cut:]
            if cut:
                self._lines_read += data.count(b"\n", 0, cut)
                yield data[:cut]
            data = self._source.read(BLOCK_BYTES)
        if rest:
            self._lines_read += 1
            yield rest + b"\n"

    @staticmethod
    def _parse_header(header: bytes, currency: Currency, expected: Mapping[str, str], *, empty: bool) -> RecordFormat:
        if empty:
            raise MalformedRecords(1, "the file is empty: its first line must be the header")
        if not header.strip():
            raise MalformedRecords(1, "an empty line; the first line must be the header")
        if b"\x00" in header:
            raise MalformedRecords(1, UTF16)
        try:
            text = header.decode("utf-8").removesuffix("\r")
        except UnicodeDecodeError:
            raise MalformedRecords(1, NOT_UTF8) from None
        if "\r" in text:
            raise MalformedRecords(1, CARRIAGE_RETURNS)
        return RecordFormat.from_header(text, currency, expected)

    @staticmethod
    def _decode(raw: bytes, first_line: int) -> str:
        """A block's lines as text, each ending in LF."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise MalformedRecords(first_line + raw.count(b"\n", 0, error.start), NOT_UTF8) from None
        return text.replace("\r\n", "\n") if "\r" in text else text

    def _check(self, text: str, first_line: int) -> int:
        """How many records ``text`` holds; refuses the first that is not a good record, at
        the line it starts on."""
        if '"' not in text and len(self.format.block.findall(text)) == text.count("\n"):
            return text.count("\n")
        records = 0
        for index, record in split_records(text):
            if problem := self.format.problem(record):
                raise MalformedRecords(first_line + index, problem)
            records += 1
        return records

    def batches(self) -> Iterator[Batch]:
        """The records, a block at a time. Empty lines that end a block are held back until the
        next block shows whether they end the file (dropped) or sit among records (refused)."""
        first_line = 2
        empty_from: int | None = None  # the first of the empty lines held back
        for raw in itertools.chain([self._first] if self._first else [], self._blocks):
            text, empty = _without_trailing_empty_lines(self._decode(raw, first_line))
            if text and empty_from is not None:
                raise MalformedRecords(empty_from, EMPTY_LINE)
            if text:
                records = self._check(text, first_line)
                lines = text.count("\n")
                yield Batch(first_line, text, lines, records)
                first_line += lines
                self.lines += records
            if empty and empty_from is None:
                empty_from = first_line
            first_line += empty
