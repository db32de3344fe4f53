"""A partner's records of a period, as CSV: the format, and a streaming validator.

The format (also in README.md and partners/CONTRACT.md):

* UTF-8 text (a byte-order mark is allowed), lines ending in LF or CRLF.
* Line 1 is a header naming the columns, in any order: ``reference`` and ``amount`` are
  required, ``counterparty`` and ``date`` optional; no other column, none twice.
* Every further line is one record, its fields separated by commas. A field may be wrapped in
  double quotes (it may then hold commas); no field holds a double quote, a line break or
  another control character. Empty lines are refused.
* ``reference``: the business reference of the ledger transaction, as the statement prints it
  (``conversion:…``), 1 to 200 characters. One line per reference: the ledger's amount for a
  reference is the sum of the partner's legs in every transaction that carries it.
* ``amount``: the partner's figure as an exact decimal in the settlement currency, from the
  partner's side: positive when the partner is owed, negative when it owes (``-1234.50``). At
  most as many decimals as the currency's minor unit, at most 15 integer digits, no sign ``+``,
  no exponent, no thousands separator.
* ``counterparty`` (may be empty): who the partner dealt with: a program id, or ``EXCHANGE``.
* ``date`` (may be empty): the partner's date of the item, ``YYYY-MM-DD``.

The validator reads lines one at a time and hands them on in batches of at most
:data:`BATCH_LINES`, so memory does not grow with the file. The first bad line stops it with its
number and the reason (:class:`~exchange.settlement.errors.MalformedRecords`); the caller imports
within one unit of work, so a bad line anywhere means nothing is imported.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

from exchange.money import Currency
from exchange.settlement.errors import MalformedRecords
from exchange.settlement.participants import EXCHANGE

BATCH_LINES = 10_000
REQUIRED = ("reference", "amount")
OPTIONAL = ("counterparty", "date")
MAX_REFERENCE = 200
MAX_INTEGER_DIGITS = 15

#: A record as staged: line number, reference, amount in minor units, counterparty, ISO date.
Row = tuple[int, str, int, str | None, str | None]

_BOM = b"\xef\xbb\xbf"
_VALUES = {
    "reference": (r'[^",\x00-\x1f\x7f]{1,200}', r'[^"\x00-\x1f\x7f]{1,200}'),
    "counterparty": (r"(?:EXCHANGE|[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)?",) * 2,
    "date": (r"(?:\d{4}-\d{2}-\d{2})?",) * 2,
}
_PROGRAM_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def _amount_pattern(currency: Currency) -> str:
    fraction = rf"(?:\.\d{{1,{currency.minor_units}}})?" if currency.minor_units else ""
    return rf"-?(?:0|[1-9]\d{{0,{MAX_INTEGER_DIGITS - 1}}}){fraction}"


def _field(name: str, bare: str, quoted: str) -> str:
    return f'(?:"(?P<{name}_q>{quoted})"|(?P<{name}>{bare}))'


@dataclass(frozen=True)
class RecordFormat:
    """The columns of one file, in its header's order, and the pattern its lines must match."""

    columns: tuple[str, ...]
    currency: Currency
    line: re.Pattern[str]

    @classmethod
    def from_header(cls, header: str, currency: Currency) -> RecordFormat:
        columns = tuple(name.strip().strip('"') for name in header.split(","))
        known = REQUIRED + OPTIONAL
        unknown = [name for name in columns if name not in known]
        if unknown or len(set(columns)) != len(columns) or not set(REQUIRED) <= set(columns):
            raise MalformedRecords(
                1,
                f"the header must name the columns {', '.join(REQUIRED)} and optionally "
                f"{', '.join(OPTIONAL)}, each once, in any order; got {header!r}",
            )
        values = {**_VALUES, "amount": (_amount_pattern(currency),) * 2}
        pattern = ",".join(_field(name, *values[name]) for name in columns)
        return cls(columns, currency, re.compile(pattern))

    def value(self, match: re.Match[str], name: str) -> str | None:
        """The field ``name`` of a matched line, unquoted (``None`` for an empty field)."""
        if name not in self.columns:
            return None
        return match[f"{name}_q"] if match[f"{name}_q"] is not None else (match[name] or None)

    def to_minor(self, amount: str) -> int:
        """An amount the pattern accepted, in minor units (exact: no rounding is ever needed)."""
        negative = amount.startswith("-")
        whole, _, fraction = amount.lstrip("-").partition(".")
        minor = int(whole) * 10**self.currency.minor_units + int(fraction.ljust(self.currency.minor_units, "0") or 0)
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

    def diagnose(self, text: str) -> str:
        """Why a line that does not match the pattern is refused, in words."""
        if not text:
            return "an empty line; every line after the header is one record"
        if re.search(r"[\x00-\x1f\x7f]", text):
            return "a field holds a control character"
        try:
            fields = next(csv.reader([text], strict=True))
        except csv.Error:
            return "a double quote in the middle of a field; quote whole fields only"
        if len(fields) != len(self.columns):
            return f"{len(fields)} fields, but the header names {len(self.columns)}"
        for name, value in zip(self.columns, fields, strict=True):
            if '"' in value:
                return f"{name}: holds a double quote"
            if reason := self._field_problem(name, value):
                return f"{name}: {reason}"
        return "cannot be read as the header's columns"

    def _field_problem(self, name: str, value: str) -> str | None:
        if name == "reference" and not 1 <= len(value) <= MAX_REFERENCE:
            return f"must be 1 to {MAX_REFERENCE} characters, got {len(value)}"
        if name == "amount" and not re.fullmatch(_amount_pattern(self.currency), value):
            return (
                f"{value!r} is not an amount in {self.currency.code}: write an exact decimal such as "
                f"-1234.5, with at most {self.currency.minor_units} decimals and {MAX_INTEGER_DIGITS} "
                "integer digits"
            )
        if name == "counterparty" and value and value != EXCHANGE and not _PROGRAM_ID.match(value):
            return f"{value!r} is neither a program id nor {EXCHANGE}"
        if name == "date" and value:
            return _date_problem(value)
        return None


def _date_problem(value: str) -> str | None:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return f"{value!r} is not a date written YYYY-MM-DD"
    try:
        date.fromisoformat(value)
    except ValueError:
        return f"{value!r} is not a date on the calendar"
    return None


@dataclass
class Batch:
    """Consecutive valid records: their line numbers, their text (as CSV, LF-terminated) and
    what the pattern matched in each."""

    first_line: int
    text: list[str] = field(default_factory=list)
    matches: list[re.Match[str]] = field(default_factory=list)

    def rows(self, format: RecordFormat) -> list[Row]:
        return [format.row(self.first_line + index, match) for index, match in enumerate(self.matches)]

    def csv(self) -> str:
        return "\n".join(self.text) + "\n"


class RecordReader:
    """Validates a partner's file line by line while handing it on in batches.

    After the batches are exhausted, :attr:`lines` is the number of records read and
    :attr:`sha256` the digest of every byte read.
    """

    def __init__(self, source: Iterable[bytes], currency: Currency) -> None:
        self._source = iter(source)
        self._currency = currency
        self._digest = hashlib.sha256()
        self.lines = 0
        self.format = self._read_header()

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def _decode(self, raw: bytes, number: int) -> str:
        self._digest.update(raw)
        if number == 1:
            raw = raw.removeprefix(_BOM)
        try:
            return raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError:
            raise MalformedRecords(number, "not UTF-8 text") from None

    def _read_header(self) -> RecordFormat:
        raw = next(self._source, None)
        if raw is None:
            raise MalformedRecords(1, "the file is empty: its first line must be the header")
        return RecordFormat.from_header(self._decode(raw, 1), self._currency)

    def batches(self) -> Iterator[Batch]:
        pattern = self.format.line
        has_date = "date" in self.format.columns
        batch = Batch(first_line=2)
        for number, raw in enumerate(self._source, start=2):
            text = self._decode(raw, number)
            match = pattern.fullmatch(text)
            if match is None:
                raise MalformedRecords(number, self.format.diagnose(text))
            if has_date and (day := self.format.value(match, "date")) and (problem := _date_problem(day)):
                raise MalformedRecords(number, f"date: {problem}")
            self.lines += 1
            batch.text.append(text)
            batch.matches.append(match)
            if len(batch.matches) == BATCH_LINES:
                yield batch
                batch = Batch(first_line=number + 1)
        if batch.matches:
            yield batch
