"""A statement's document written a line at a time, and its JWS written a piece at a time, are
byte for byte what ``json.dumps`` of the whole document and joserfc's ``serialize_compact``
make: issued statements must not change."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from joserfc import jws
from joserfc.jwk import RSAKey

from exchange.coalition.models import CoalitionLiability
from exchange.keyring.crypto import ALGORITHM, generate_key
from exchange.ledger.periods import SettlementCalendar
from exchange.money import Currency
from exchange.settlement.issued import PIECE, sign
from exchange.settlement.participants import EXCHANGE
from exchange.settlement.statements import (
    JWS_TYPE,
    CounterpartyTotals,
    Reversed,
    Statement,
    StatementLine,
    csv_pieces,
)

CLOSED_AT = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def line(number: int, **changes: object) -> StatementLine:
    written = StatementLine(
        f"t-{number}",
        f"conversion:c-{number}",
        "conversion",
        datetime(2026, 11, 20, 4, number % 60, tzinfo=UTC),
        "wallet-pay",
        amount=-1_000 - number,
        category="conversion",
    )
    return replace(written, **changes)  # type: ignore[arg-type]


def statement(lines: list[StatementLine], *, liability: bool = False, counterparties: bool = True) -> Statement:
    return Statement(
        issuer="http://exchange.test",
        participant="fresh-mart",
        period="2026-11",
        calendar=SettlementCalendar(ZoneInfo("Asia/Taipei")),
        currency=Currency("TWD", 2),
        closed_at=CLOSED_AT,
        opening=-12_345,
        payable=20_000,
        receivable=4_150,
        counterparties=[CounterpartyTotals(EXCHANGE, 400, 0), CounterpartyTotals("wallet-pay", 19_600, 4_150)]
        if counterparties
        else [],
        lines=lines,
        coalition_liability=CoalitionLiability(
            period="2026-11",
            program_id="coalition",
            points=1_234_567,
            point_value=Decimal("0.1"),
            liability_minor=12_345_670,
            recorded_at=CLOSED_AT,
        )
        if liability
        else None,
    )


STATEMENTS = {
    "no-lines": statement([], counterparties=False),
    "one-line": statement([line(1)]),
    "non-ascii-reversals-late-lines-liability": statement(
        [
            line(1, reference="conversion:兌換-1", counterparty="台灣便利商店"),
            line(2, reference='a "quoted", comma \\ back\nslash\t\u2028 and an emoji 🎉', kind="redemption"),
            line(3, kind="reversal", category="reversal", amount=1_003, reverses=Reversed("t-1", "2026-11")),
            line(4, effective_at=datetime(2026, 10, 31, 15, 59, 59, 999_000, tzinfo=UTC)),  # late: October
            line(5, kind="reversal", category="fee", counterparty=EXCHANGE, reverses=Reversed("t-0", "2026-10")),
            line(6, reference="=cmd|' /C calc'!A0", amount=0),
        ],
        liability=True,
    ),
    "many-lines": statement([line(number) for number in range(2_500)], liability=True),
}


async def streamed(lines: Iterable[StatementLine]) -> AsyncIterator[StatementLine]:
    for each in lines:
        yield each


@pytest.mark.parametrize("name", STATEMENTS)
async def test_a_document_written_a_line_at_a_time_is_json_dumps_of_the_whole(name: str) -> None:
    written = STATEMENTS[name]
    whole = json.dumps(written.document(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert await written.encode(streamed(written.lines)) == whole.encode()


async def test_the_document_holds_the_lines_given_to_it_in_their_order() -> None:
    lines = [line(3), line(1, reference="conversion:兌換"), line(2)]
    document = json.loads(await statement([]).encode(streamed(lines)))
    assert [(each["transaction"], each["reference"]) for each in document["lines"]] == [
        ("t-3", "conversion:c-3"),
        ("t-1", "conversion:兌換"),
        ("t-2", "conversion:c-2"),
    ]


async def rendered(document: Mapping[str, object], page: int) -> list[str]:
    """The CSV's pieces of ``document`` given its lines ``page`` at a time, as a download reads
    them from their table."""
    lines: Sequence[Mapping[str, object]] = document["lines"]  # type: ignore[assignment]

    async def pages() -> AsyncIterator[Sequence[Mapping[str, object]]]:
        for start in range(0, len(lines), page):
            yield lines[start : start + page]

    return [piece async for piece in csv_pieces(document, pages())]


#: The CSV that rendering the whole document made of the awkward statement (non-ASCII, a comma,
#: quotes, a newline, a tab, U+2028, an emoji, a formula, negative and zero amounts, a late line,
#: reversals, the coalition's liability) before the CSV streamed from the statement's lines:
#: issued statements must not change.
AWKWARD_CSV = Path(__file__).parent / "data" / "statement-awkward.csv"


@pytest.mark.parametrize("page", [1, 2, 6, 1000])
async def test_a_statements_csv_given_its_lines_a_page_at_a_time_is_byte_for_byte_the_csv_it_was(page: int) -> None:
    document = STATEMENTS["non-ascii-reversals-late-lines-liability"].document()
    assert "".join(await rendered(document, page)).encode() == AWKWARD_CSV.read_bytes()


@pytest.mark.parametrize("name", STATEMENTS)
async def test_a_statements_csv_streams_in_whole_rows_and_adds_up_to_the_whole(name: str) -> None:
    """A download streams the CSV a page of lines at a time: every piece holds whole rows (a
    line's reference with a newline in it included), and the pieces are the CSV rendered at
    once: the header and the opening, each page's lines, then the figures after."""
    document = STATEMENTS[name].document()
    pieces = await rendered(document, 7)
    assert "".join(pieces) == "".join(await rendered(document, len(document["lines"]) or 1))
    rows = list(csv.reader(io.StringIO("".join(pieces))))
    assert len(pieces) == 2 + -(-len(document["lines"]) // 7)
    assert [row for piece in pieces for row in csv.reader(io.StringIO(piece))] == rows
    assert [row[3] for row in rows].count("line") == len(document["lines"])


@pytest.fixture(scope="module")
def key() -> RSAKey:
    return generate_key()


@pytest.mark.parametrize(
    "size",
    [0, 1, 2, 3, PIECE - 1, PIECE, PIECE + 1, 2 * PIECE + 2],
    ids=lambda size: f"{size}-bytes",
)
def test_the_jws_is_what_joserfc_makes_of_the_same_bytes(key: RSAKey, size: int) -> None:
    """Each length's base64 ends differently (padding stripped), and pieces meet at their bounds."""
    document = ("台灣" * size).encode()[:size]  # not valid UTF-8 when cut mid-character: bytes are bytes
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": JWS_TYPE, "cty": "json"}
    assert sign(document, key) == jws.serialize_compact(header, document, key, algorithms=[ALGORITHM])
