"""A participant's statement of a closed period: JSON, CSV, and a JWS over the JSON.

The statement shows the participant's opening position (carried from earlier periods), one line
per transaction and counterparty (the netting's attribution: a conversion's source has a line
to its target and a fee line to the exchange; each line names the period its effective time falls
in, an earlier one for a late item, and what it reverses, if anything, with that transaction's
period), totals per counterparty, the period's net
position and the closing position (opening + net); where the coalition has a point, its
outstanding liability at the period's end (coalition-wide: points, value per point, amount).
Amounts are exact decimal strings of the settlement currency, from the participant's side:
positive is owed to it, negative it owes.

The CSV is rendered from the JSON document, one row per figure, so the two cannot disagree:
every figure of the JSON is in it, written the same way. It is rendered from the document's head
and its lines as stored apart from it (``issued_statement.head`` and ``issued_statement_line``),
a page of lines at a time, so that a busy month's is never read whole. Only a text cell a spreadsheet would
take for a formula (one beginning with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return,
or with ``'``) carries one ``'`` before it (:mod:`exchange.spreadsheet`); amounts, points and
moments never do, and the JSON, which the JWS signs, holds every text exactly.

The JSON document is canonical (keys sorted, no spaces, UTF-8). It is built once, when the
period closes, and kept as issued with its JWS (:mod:`exchange.settlement.issued`): the JWS
(RS256, compact serialization) signs exactly those bytes with the exchange's statement-signing
key active then (:mod:`exchange.settlement.keys`, not a token key). Anyone holding the
exchange's statement keys (``/.well-known/statement-keys.json``) verifies it, finding the key by
the header's ``kid``, for as long as statements are kept.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import utc_instant
from exchange.coalition.expiry import KIND as EXPIRY_KIND
from exchange.coalition.liability import liability_at
from exchange.coalition.models import CoalitionLiability
from exchange.db.types import UTCDateTime
from exchange.ledger.models import LedgerCloseAnchor
from exchange.ledger.periods import SettlementCalendar
from exchange.money import Currency
from exchange.settlement.errors import PeriodArchived
from exchange.settlement.models import SettlementObligation
from exchange.settlement.netting import ACCOUNTS, SPOKES_OF_ACCOUNTS
from exchange.settlement.participants import EXCHANGE, settled_accounts
from exchange.settlement.positions import position_of, require_closed
from exchange.spreadsheet import spreadsheet_row

DOCUMENT_TYPE = "coalition-settlement-statement"
#: 2: each line says the period its effective time falls in, and what it reverses (version 1
#: had neither); the figures are the same.
DOCUMENT_VERSION = 2
#: The JWS ``typ``: what the signed payload is (RFC 7515 §4.1.9).
JWS_TYPE = "settlement-statement+json"
CSV_COLUMNS = (
    "partner",
    "period",
    "currency",
    "record",
    "transaction",
    "reference",
    "kind",
    "category",
    "effective_at",
    "counterparty",
    "amount",
    "points",
    "period_start",
    "period_end",
    "time_zone",
    "effective_period",
    "reverses",
    "reverses_period",
)
#: The CSV's header in each document version (version 1's had no effective_period, reverses and
#: reverses_period): how a records file that is a statement uploaded back is known
#: (:mod:`exchange.settlement.records`).
STATEMENT_CSV_HEADERS = (CSV_COLUMNS[:-3], CSV_COLUMNS)

LINES = (
    text(
        f"""
    SELECT t.id, t.reference, t.kind, t.effective_at, t.reverses, reversed.period,
           spokes.spoke_account, spokes.hub_account, spokes.amount
      FROM ({SPOKES_OF_ACCOUNTS}) spokes JOIN ledger_transaction t ON t.seq = spokes.transaction_seq
      LEFT JOIN ledger_transaction_key reversed ON reversed.id = t.reverses
     ORDER BY spokes.transaction_seq, spokes.position
    """
    )
    .bindparams(ACCOUNTS)
    .columns(effective_at=UTCDateTime())
)


#: A statement document's JSON (:meth:`Statement.encode`): keys sorted, no spaces, text as it
#: is (in UTF-8, not ``\u`` escapes).
canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
#: How many of a statement's lines are read from the database at a time (:func:`stream_lines`).
LINES_BATCH = 2000

#: Kinds whose lines with the exchange are no fee: an adjustment, and the value of expired
#: coalition points that the exchange keeps as operator (breakage).
NOT_FEES = frozenset({"adjustment", EXPIRY_KIND})


def category(kind: str, *parties: str) -> str:
    """The statement's heading for a line between two parties: the transaction's kind
    (conversion, redemption, adjustment, reversal, coalition-expiry, …), except that what is
    owed between a partner and the exchange in any but an adjustment or breakage is a ``fee``
    (or a fee refunded)."""
    return "fee" if EXCHANGE in parties and kind not in NOT_FEES else kind


@dataclass(frozen=True, slots=True)
class Reversed:
    """What a reversal reverses: the transaction's id and the period it was posted into (kept
    when that period is archived)."""

    transaction_id: str
    period: str


@dataclass(frozen=True, slots=True)
class StatementLine:
    transaction_id: str
    reference: str
    kind: str
    effective_at: datetime
    counterparty: str
    amount: int
    """Minor units, from the statement's participant's side."""
    category: str
    reverses: Reversed | None = None
    """The transaction this line's transaction reverses, and the period it was posted into."""


@dataclass(frozen=True, slots=True)
class CounterpartyTotals:
    counterparty: str
    payable: int
    receivable: int

    @property
    def net(self) -> int:
        return self.receivable - self.payable


@dataclass(frozen=True)
class Statement:
    issuer: str
    participant: str
    period: str
    calendar: SettlementCalendar
    currency: Currency
    closed_at: datetime
    opening: int
    payable: int
    receivable: int
    counterparties: Sequence[CounterpartyTotals]
    lines: Sequence[StatementLine]
    coalition_liability: CoalitionLiability | None = None
    """The coalition point's outstanding liability at the period's end, coalition-wide."""

    @property
    def net(self) -> int:
        return self.receivable - self.payable

    @property
    def closing(self) -> int:
        return self.opening + self.net

    @property
    def starts_at(self) -> datetime:
        """The period's first instant (UTC), on the calendar of the settlement time zone."""
        return self.calendar.starts_at(self.period)

    @property
    def ends_at(self) -> datetime:
        """The first instant after the period (UTC)."""
        return self.calendar.ends_at(self.period)

    def money(self, minor: int) -> str:
        return str(self.currency.from_minor(minor))

    def effective_period(self, line: StatementLine) -> str:
        """The period the line's effective time falls in: the statement's own, except for a late
        item (one that happened in a period already closed when it was posted)."""
        return self.calendar.period_of(line.effective_at)

    def document(self) -> dict[str, Any]:
        """The document as a dict: :meth:`head` with :attr:`lines`."""
        return self.head() | {"lines": [self.line_document(line) for line in self.lines]}

    def head(self) -> dict[str, Any]:
        """The document but for its lines."""
        money = self.money
        return {
            "type": DOCUMENT_TYPE,
            "version": DOCUMENT_VERSION,
            "issuer": self.issuer,
            "partner": self.participant,
            "currency": self.currency.code,
            "period": {
                "name": self.period,
                "start": utc_instant(self.starts_at),
                "end": utc_instant(self.ends_at),
                "timeZone": self.calendar.timezone.key,
                "closedAt": utc_instant(self.closed_at),
            },
            "openingPosition": money(self.opening),
            "counterparties": [
                {
                    "counterparty": totals.counterparty,
                    "payable": money(totals.payable),
                    "receivable": money(totals.receivable),
                    "net": money(totals.net),
                }
                for totals in self.counterparties
            ],
            "totals": {"payable": money(self.payable), "receivable": money(self.receivable), "net": money(self.net)},
            "closingPosition": money(self.closing),
        } | self._liability()

    def line_document(self, line: StatementLine) -> dict[str, Any]:
        """One of the document's ``lines``."""
        return {
            "transaction": line.transaction_id,
            "reference": line.reference,
            "kind": line.kind,
            "category": line.category,
            "effectiveAt": utc_instant(line.effective_at),
            "effectivePeriod": self.effective_period(line),
            "reverses": None
            if line.reverses is None
            else {"transaction": line.reverses.transaction_id, "period": line.reverses.period},
            "counterparty": line.counterparty,
            "amount": self.money(line.amount),
        }

    def _liability(self) -> dict[str, Any]:
        """The coalition point's outstanding liability (only where the coalition has a point)."""
        liability = self.coalition_liability
        if liability is None:
            return {}
        return {
            "coalitionLiability": {
                "program": liability.program_id,
                "points": liability.points,
                "pointValue": str(liability.point_value),
                "amount": self.money(liability.liability_minor),
            }
        }

    async def encode(self, lines: AsyncIterable[StatementLine]) -> bytes:
        """The canonical JSON document in UTF-8 (what the JWS signs): :func:`canonical_json` of
        :meth:`document`, byte for byte, with ``lines`` as its lines.

        Written a line at a time as ``lines`` come (from the ledger, :func:`stream_lines`): a
        statement lists every line of the participant's month, a million or more, so neither
        the lines nor their dicts are held all at once; the bytes returned are the only copy.
        The members are written in the order ``sort_keys`` puts them, each value as
        :func:`canonical_json` writes it, joined as it joins them."""
        members = self.head() | {"lines": None}
        out = io.BytesIO()
        for index, name in enumerate(sorted(members)):
            out.write(b"," if index else b"{")
            out.write(f"{canonical_json(name)}:".encode())
            if name != "lines":
                out.write(canonical_json(members[name]).encode())
                continue
            out.write(b"[")
            separator = b""
            async for line in lines:
                out.write(separator)
                out.write(canonical_json(self.line_document(line)).encode())
                separator = b","
            out.write(b"]")
        out.write(b"}")
        return out.getvalue()


async def csv_pieces(head: Mapping[str, Any], pages: AsyncIterable[Iterable[Mapping[str, Any]]]) -> AsyncIterator[str]:
    """A statement document's figures as CSV, one row per figure (RFC 4180: CRLF line ends,
    fields quoted where needed; UTF-8): ``opening``, each ``line``, per counterparty its
    ``counterparty_payable``, ``counterparty_receivable`` and ``counterparty_net``, the
    totals ``payable``, ``receivable`` and ``net``, ``closing``, where the coalition has a
    point ``coalition_liability`` (points and amount) and ``coalition_point_value``, and
    ``closed`` (when, in ``effective_at``). A ``line`` also names the period its effective
    time falls in (``effective_period``: an earlier one for a late item) and, for a reversal,
    the transaction it reverses and that transaction's period (both empty for a document of
    version 1, which had neither). Every row names the partner, the period (its bounds in UTC
    and the time zone it is cut in) and the currency, and every figure reads exactly as in the
    JSON; a text a spreadsheet would run as a formula is written with one ``'`` before it
    (:func:`~exchange.spreadsheet.spreadsheet_cell`).

    Rendered from the document alone, given as its ``head`` (the document but its ``lines``)
    and its ``lines`` in their order, a page at a time (``pages``): so a stored (issued)
    document gives the same CSV at every download, and a busy month's, whose lines are
    hundreds of megabytes, streams from its lines' table without being read whole. The text
    comes in whole rows: the header and opening, each page's lines, then the figures after."""
    yield _csv_text(_opening_rows(head), header=True)
    async for page in pages:
        if text := _csv_text(_line_row(head, line) for line in page):
            yield text
    yield _csv_text(_closing_rows(head))


def _csv_text(rows: Iterable[tuple[str, ...]], *, header: bool = False) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    writer.writerows(map(spreadsheet_row, rows))
    return out.getvalue()


def _csv_head(head: Mapping[str, Any]) -> tuple[str, ...]:
    """What every row begins with: the partner, the period and the currency."""
    return (head["partner"], head["period"]["name"], head["currency"])


def _csv_bounds(head: Mapping[str, Any]) -> tuple[str, ...]:
    """The period's bounds in UTC and its time zone, which every row names after its figure."""
    period = head["period"]
    return (period["start"], period["end"], period["timeZone"])


def _figure(
    head: Mapping[str, Any], record: str, amount: str, *, counterparty: str = "", points: str = ""
) -> tuple[str, ...]:
    return (*_csv_head(head), record, "", "", "", "", "", counterparty, amount, points, *_csv_bounds(head), "", "", "")


def _opening_rows(head: Mapping[str, Any]) -> Iterator[tuple[str, ...]]:
    yield _figure(head, "opening", head["openingPosition"])


def _line_row(head: Mapping[str, Any], line: Mapping[str, Any]) -> tuple[str, ...]:
    reverses = line.get("reverses") or {"transaction": "", "period": ""}
    return (
        *_csv_head(head),
        "line",
        line["transaction"],
        line["reference"],
        line["kind"],
        line["category"],
        line["effectiveAt"],
        line["counterparty"],
        line["amount"],
        "",
        *_csv_bounds(head),
        line.get("effectivePeriod", ""),
        reverses["transaction"],
        reverses["period"],
    )


def _closing_rows(head: Mapping[str, Any]) -> Iterator[tuple[str, ...]]:
    for totals in head["counterparties"]:
        for name in ("payable", "receivable", "net"):
            yield _figure(head, f"counterparty_{name}", totals[name], counterparty=totals["counterparty"])
    for name in ("payable", "receivable", "net"):
        yield _figure(head, name, head["totals"][name])
    yield _figure(head, "closing", head["closingPosition"])
    if liability := head.get("coalitionLiability"):
        program = liability["program"]
        yield _figure(
            head, "coalition_liability", liability["amount"], counterparty=program, points=str(liability["points"])
        )
        yield _figure(head, "coalition_point_value", liability["pointValue"], counterparty=program)
    period = head["period"]
    yield (*_csv_head(head), "closed", "", "", "", "", period["closedAt"], "", "", "", *_csv_bounds(head), "", "", "")


async def stream_lines(
    session: AsyncSession, *, currency: Currency, participant: str, period: str
) -> AsyncIterator[StatementLine]:
    """The lines of ``participant`` (a program id, or ``EXCHANGE``) in ``period``, in posting
    order, as the database streams them (:data:`LINES_BATCH` rows at a time): its statement's
    lines once the period is closed, what the ledger holds so far before. Refused once the
    period is archived (``settlement.archive``): its rows have left the ledger."""
    anchor = await session.get(LedgerCloseAnchor, period)
    if anchor is not None and anchor.archived_at is not None:
        raise PeriodArchived(period)
    names = await settled_accounts(session, currency.code)
    # Its accounts: a program's clearing account; the exchange's fee and breakage accounts. An
    # account is made at its first posting.
    accounts = {account for account, name in names.items() if name == participant}
    if not accounts:
        return
    result = await session.stream(
        LINES.execution_options(yield_per=LINES_BATCH),
        params={"period": period, "unit": currency.code, "accounts": sorted(accounts)},
    )
    async for rows in result.partitions():  # a batch at a time: each row alone would cost a greenlet switch
        for transaction_id, reference, kind, effective_at, reverses, reversed_period, spoke, hub, amount in rows:
            counterparty = names[hub if spoke in accounts else spoke]
            yield StatementLine(
                transaction_id,
                reference,
                kind,
                effective_at,
                counterparty,
                amount=int(amount) if spoke in accounts else -int(amount),
                category=category(kind, participant, counterparty),
                reverses=None if reverses is None else Reversed(reverses, reversed_period),
            )


async def statement_lines(
    session: AsyncSession, *, currency: Currency, participant: str, period: str
) -> list[StatementLine]:
    """:func:`stream_lines` in a list."""
    return [line async for line in stream_lines(session, currency=currency, participant=participant, period=period)]


async def encode_statement(
    session: AsyncSession,
    *,
    issuer: str,
    calendar: SettlementCalendar,
    currency: Currency,
    participant: str,
    period: str,
) -> bytes:
    """The canonical JSON document (UTF-8) of the statement of ``participant`` (a program id, or
    ``EXCHANGE``) for the closed ``period``, its lines written as they stream from the ledger
    (:meth:`Statement.encode`)."""
    position = await position_of(session, participant, period)
    period_row = await require_closed(session, period)
    obligations = (
        await session.exec(
            select(SettlementObligation).where(
                SettlementObligation.period == period,
                or_(SettlementObligation.debtor == participant, SettlementObligation.creditor == participant),
            )
        )
    ).all()
    totals: dict[str, list[int]] = {}
    for obligation in obligations:
        if obligation.debtor == participant:
            totals.setdefault(obligation.creditor, [0, 0])[0] += obligation.amount
        else:
            totals.setdefault(obligation.debtor, [0, 0])[1] += obligation.amount
    assert period_row.closed_at is not None
    # Everything but the lines, which encode() takes as they stream.
    statement = Statement(
        issuer=issuer,
        participant=participant,
        period=period,
        calendar=calendar,
        currency=currency,
        closed_at=period_row.closed_at,
        opening=position.opening,
        payable=position.payable,
        receivable=position.receivable,
        counterparties=[CounterpartyTotals(name, *totals[name]) for name in sorted(totals)],
        lines=(),
        coalition_liability=await liability_at(session, period),
    )
    return await statement.encode(stream_lines(session, currency=currency, participant=participant, period=period))
