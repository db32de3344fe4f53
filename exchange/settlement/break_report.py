"""A reconciliation's break report as CSV: what a partner's finance team opens in a spreadsheet
to work through every difference between its records and the ledger.

One row per break, in the order the reconciliation found them, each naming what to do next
(:data:`NEXT_STEPS`) and, once staff have resolved it, how. The file is UTF-8 *with* a byte
order mark (Excel reads a CSV without one in the machine's legacy code page and garbles any
non-ASCII reference or reason), CRLF line ends (RFC 4180). Amounts are exact decimal strings
of the settlement currency, from the partner's side as its file and statement write them
(positive: owed to it); ``difference`` is what the break puts between the file's total and the
ledger's (:func:`~exchange.settlement.reconciliation.break_difference`), so the column sums to
the reconciliation's ``totalDifference``. Dates are ISO (``2026-11-03``) and moments RFC 3339 UTC with ``Z``
(:func:`~exchange.clock.utc_instant`), which spreadsheets sort as text and read back exactly.
Every text cell goes through :func:`~exchange.spreadsheet.spreadsheet_row`: a reference or a
reason from a partner's file never runs as a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from exchange.clock import utc_instant
from exchange.money import Currency
from exchange.settlement.break_kinds import BreakKind, Resolution
from exchange.settlement.breaks import adjustment_reference
from exchange.settlement.models import BreakResolution, ReconciliationBreak
from exchange.settlement.other_periods import elsewhere
from exchange.settlement.reconciliation import break_difference
from exchange.spreadsheet import spreadsheet_row

#: What begins the file so that a spreadsheet reads it as UTF-8.
BOM = "\ufeff"
CSV_COLUMNS = (
    "partner",
    "period",
    "break",
    "kind",
    "reference",
    "line",
    "counterparty",
    "date",
    "partner_amount",
    "ledger_amount",
    "difference",
    "currency",
    "ledger_periods",
    "next_step",
    "resolution",
    "adjusted_amount",
    "resolved_at",
    "reason",
)


def N_(message: str) -> str:
    """Mark ``message`` for the pages' catalogs: pybabel reads this module too
    (``exchange/web/i18n/babel.cfg``), and the pages say it through ``_()`` in the reader's
    language, with the same ``%(name)s`` fields; here it stays the API's English."""
    return message


#: What the partner's finance team does about an open break of each class.
NEXT_STEPS = {
    BreakKind.MISSING_IN_LEDGER.value: N_(
        "The ledger has no item of this reference in this period: check the reference, and whether "
        "the item belongs to another period (a late item is in the first period still open); "
        "settlement staff will let the ledger stand or post an adjustment."
    ),
    BreakKind.MISSING_IN_PARTNER.value: N_(
        "The statement has this reference and your records do not: add it to your records if it is "
        "yours, or tell settlement staff why it is not."
    ),
    BreakKind.AMOUNT_MISMATCH.value: N_(
        "Compare your amount with the statement's lines of this reference (their sum is the ledger "
        "amount); settlement staff will let the ledger stand or post the difference as an adjustment "
        "into the next open period."
    ),
    BreakKind.DUPLICATE.value: N_(
        "Your records list this reference more than once and only the first line was compared: "
        "remove the repeated line, or merge it into the first."
    ),
    #: A line the ledger has in other periods (``NextStep.periods``), not in this one.
    "IN_OTHER_PERIODS": N_(
        "The ledger has this reference in %(periods)s, not in this period: the line belongs in "
        "that period's records (remove it here); settlement staff will let the ledger stand."
    ),
    #: A break resolved by letting the ledger stand: the partner's figure was wrong, so its own
    #: books (not the exchange's) need the statement's.
    "RESOLVED": N_(
        "Resolved by settlement staff, the ledger's figure standing: bring your own books in line with "
        "the statement's amount for this reference; nothing is posted."
    ),
    #: The same, of a line the ledger does not have in the period: the statement has no amount of
    #: it to follow, so the line leaves the partner's records of the period.
    "RESOLVED_NOT_IN_LEDGER": N_(
        "Resolved by settlement staff, the ledger's figure standing: the statement has no item of this "
        "reference in this period, so remove the line from your records of the period; nothing is posted."
    ),
    #: The same, of a line the partner's file repeats: the repeat leaves its records.
    "RESOLVED_DUPLICATE": N_(
        "Resolved by settlement staff, the ledger's figure standing: remove the repeated line from your "
        "records, the first one standing for the reference; nothing is posted."
    ),
    #: A break resolved by an adjustment (``NextStep.reference``): the adjustment is a new item
    #: of the next open period, which the partner's records of that period must list.
    "ADJUSTED": N_(
        "Resolved by settlement staff with an adjustment, %(adjustment)s, posted into the next open "
        "period: it is on that period's statement, and belongs in your records of that period."
    ),
}

#: What settlement staff do next about a break of the coalition point's reconciliation, whose
#: records the exchange wrote from its own book of the point (``settlement.point_records``): a
#: break there is the book and the ledger disagreeing, which no partner explains.
POINT_NEXT_STEPS = {
    BreakKind.MISSING_IN_LEDGER.value: N_(
        "The book of the point holds this operation and the ledger has nothing of it in this period: "
        "see whether its conversion or redemption is still in flight (it then shows in the next period "
        "as a late item) or was never posted; let the ledger stand, or post an adjustment."
    ),
    BreakKind.MISSING_IN_PARTNER.value: N_(
        "The ledger posted this reference to the point and the book of the point holds no applied "
        "operation of it: see whether the book's operation was reversed or changed by hand; let the "
        "ledger stand, or post an adjustment."
    ),
    BreakKind.AMOUNT_MISMATCH.value: N_(
        "The book of the point and the ledger hold this reference with different amounts: compare the "
        "book's operation with the ledger's lines of it; let the ledger stand, or post the difference "
        "into the next open period."
    ),
    BreakKind.DUPLICATE.value: N_(
        "The records written from the book list this reference more than once, which they should never "
        "do, and only the first line was compared: report it to the exchange's developers."
    ),
    "IN_OTHER_PERIODS": N_(
        "The ledger posted this reference in %(periods)s, not in this period, where the book of the "
        "point placed it: let the ledger stand, and report the book's month to the exchange's developers."
    ),
    #: Resolved steps name who resolved the break (``NextStep.by``): settlement staff read them, and
    #: another of them picking up the month sees whose call it was.
    "RESOLVED": N_("Resolved by %(by)s, the ledger's figure standing: nothing was posted, and nothing is left to do."),
    "ADJUSTED": N_(
        "Resolved by %(by)s with an adjustment, %(adjustment)s, posted into the next open period, on whose "
        "statement of the point it is: nothing is left to do."
    ),
}


@dataclass(frozen=True, slots=True)
class NextStep:
    """What to do next about a break, by the ``key`` of :data:`NEXT_STEPS` (a break's class,
    ``IN_OTHER_PERIODS``, ``RESOLVED`` or ``ADJUSTED``), for a page or a file to say in its
    reader's language; ``periods``: where the ledger has a reference missing from the period;
    ``reference``: the adjustment's, for ``ADJUSTED``; ``by``: who resolved it (``RESOLVED`` and
    ``ADJUSTED``); ``book``: the break is of the coalition point's records, written from the
    exchange's own book, so settlement staff act on it (:data:`POINT_NEXT_STEPS`; only those steps
    name who resolved it, a partner's say "settlement staff")."""

    key: str
    periods: tuple[str, ...] = ()
    reference: str = ""
    by: str = ""
    book: bool = False

    @property
    def pattern(self) -> str:
        """The step in English with its ``%(periods)s``, ``%(adjustment)s`` and ``%(by)s`` fields:
        the pages' catalogs' message id."""
        return (POINT_NEXT_STEPS if self.book else NEXT_STEPS)[self.key]

    @property
    def fields(self) -> dict[str, str]:
        return {"periods": ", ".join(self.periods), "adjustment": self.reference, "by": self.by}

    @property
    def english(self) -> str:
        """The step as the API's language, English, says it."""
        return self.pattern % self.fields


#: The step of a partner's break resolved by letting the ledger stand, by its class where the
#: statement has no amount of the reference to follow (:data:`NEXT_STEPS`).
_LEDGER_STANDS = {
    BreakKind.MISSING_IN_LEDGER.value: "RESOLVED_NOT_IN_LEDGER",
    BreakKind.DUPLICATE.value: "RESOLVED_DUPLICATE",
}


def next_step(
    kind: str, resolution: BreakResolution | None, periods: Sequence[str] = (), *, book: bool = False
) -> NextStep:
    """What to do next about a break: once resolved by letting the ledger stand, to bring the
    partner's own books in line with the statement (or, for a line the ledger lacks or a line
    repeated, to remove it from them), and once adjusted, to list the adjustment in
    the next period's records; for a line the ledger has in other ``periods``, to move it to
    their records; ``book``: of the coalition point's records (:attr:`NextStep.book`)."""
    if resolution is not None and resolution.resolution == Resolution.ADJUST:
        reference = adjustment_reference(resolution.break_id)
        return NextStep("ADJUSTED", reference=reference, by=resolution.resolved_by, book=book)
    if resolution is not None:
        return NextStep(
            _LEDGER_STANDS.get(kind, "RESOLVED") if not book else "RESOLVED", by=resolution.resolved_by, book=book
        )
    if kind == BreakKind.MISSING_IN_LEDGER and periods:
        return NextStep("IN_OTHER_PERIODS", tuple(periods), book=book)
    return NextStep(BreakKind(kind).value, book=book)


def in_english(step: NextStep) -> str:
    return step.english


def break_row(
    partner: str,
    period: str,
    currency: Currency,
    row: ReconciliationBreak,
    resolution: BreakResolution | None,
    periods: Mapping[str, Sequence[str]],
    say: Callable[[NextStep], str] = in_english,
    *,
    book: bool = False,
) -> tuple[str, ...]:
    """One break as a row of :data:`CSV_COLUMNS` (before the spreadsheet guard); ``periods``:
    where the ledger has the references the ledger lacks in ``period``
    (:func:`~exchange.settlement.other_periods.ledger_periods`);
    ``say``: how the file says the next step (the columns' names and every other cell are the
    same in every language)."""
    other_periods = elsewhere(row.kind, row.reference, period, periods)

    def money(minor: int | None) -> str:
        return "" if minor is None else str(currency.from_minor(minor))

    adjusted = None
    if resolution is not None and resolution.resolution == Resolution.ADJUST:
        adjusted = resolution.amount
    return (
        partner,
        period,
        str(row.id),
        row.kind,
        row.reference,
        "" if row.line is None else str(row.line),
        row.counterparty or "",
        "" if row.partner_date is None else row.partner_date.isoformat(),
        money(row.partner_amount),
        money(row.ledger_amount),
        money(break_difference(row)),
        currency.code,
        " ".join(other_periods),
        say(next_step(row.kind, resolution, other_periods, book=book)),
        "" if resolution is None else resolution.resolution,
        money(adjusted),
        "" if resolution is None else utc_instant(resolution.resolved_at),
        "" if resolution is None else resolution.reason,
    )


def csv_text(rows: Iterable[tuple[str, ...]], *, header: bool = False) -> str:
    """``rows`` as CSV text (RFC 4180, CRLF), every cell through the spreadsheet guard; with the
    byte order mark and the header first when ``header``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        out.write(BOM)
        writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(spreadsheet_row(row))
    return out.getvalue()
