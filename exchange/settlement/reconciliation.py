"""Reconciling a partner's records of a closed period against the ledger.

The file streams through the validator into a staging table (see ``records`` and ``dialect``),
the partner's ledger amounts per reference into another; a totals or subtotal row
(:data:`TOTALS_ROW`) or a trailer row counting the records (:data:`TRAILER_ROW`) refuses the
file. Then one set-based statement (the file grouped by reference, fully outer-joined with the
ledger's side) classifies the file and stores every break:

* the ledger's side is the partner's clearing legs of the period, summed per business
  reference (a conversion and its reversal in one period share a reference and net out);
* a reference the file repeats is matched on its first line; each later line is a DUPLICATE;
* a first line whose reference the ledger lacks is MISSING_IN_LEDGER; one whose amount differs
  is an AMOUNT_MISMATCH (both amounts kept); one that agrees is MATCHED (counted, not stored);
* a reference the ledger has with a non-zero amount, absent from the file, is
  MISSING_IN_PARTNER (a reference that nets to zero owes nothing and may be left out).

Importing again replaces the current reconciliation with a new one (both are kept), until a
break of the current one has been resolved: from then on its resolutions stand. The current
one's very file again is answered that reconciliation, nothing imported (a retry).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import BigInteger, ColumnElement, case, cast, func, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.models import LedgerAccount
from exchange.money import Currency
from exchange.settlement.break_kinds import BreakKind
from exchange.settlement.dialect import (
    LEDGER_STAGING,
    STAGING,
    drop_staging,
    prefer_hashing_in_memory,
    stage_ledger_amounts,
    stage_records,
)
from exchange.settlement.errors import (
    ExchangeNotReconciled,
    MalformedRecords,
    PartnerSignedOff,
    ReconciliationNotFound,
    ReconciliationReplaced,
    ResolvedBreaksWouldBeLost,
)
from exchange.settlement.models import Reconciliation, ReconciliationBreak, RecordsSource
from exchange.settlement.participants import EXCHANGE
from exchange.settlement.positions import position_locked_within, position_of
from exchange.settlement.records import (
    COUNT_LABELS,
    MAX_INTEGER_DIGITS,
    SUMMARY_WORDS,
    ByteSource,
    RecordReader,
    total_out_of_range,
    totals_row,
    trailer_row,
)
from exchange.text import quoted

#: The partner's clearing legs of the period, summed per business reference.
#: How long an import waits for its partner's position of the period while another unit of work
#: holds it (:class:`~exchange.settlement.errors.PositionBusy` after): a resolution or a sign-off
#: holds it for moments, another upload for as long as its client takes to send the file.
IMPORT_LOCK_WAIT = timedelta(seconds=5)

LEDGER_AMOUNTS = """
    SELECT t.reference, CAST(sum(e.amount) AS BIGINT) AS amount
      FROM ledger_entry e JOIN ledger_transaction t ON t.seq = e.transaction_seq
     WHERE e.account_id = :account AND e.period = :period
     GROUP BY t.reference
"""
#: The file's first line naming a counterparty that is neither a program nor the exchange.
UNKNOWN_COUNTERPARTY = text(
    f"""
    SELECT s.line, s.counterparty FROM {STAGING} s
     WHERE s.counterparty IS NOT NULL AND s.counterparty NOT IN ('', :exchange)
       AND NOT EXISTS (SELECT 1 FROM program p WHERE p.id = s.counterparty)
     ORDER BY s.line
     LIMIT 1
    """
)
#: Whether a staged reference holds one of :data:`~exchange.settlement.records.SUMMARY_WORDS`
#: (the patterns are bound as ``summary_<n>``).
_SUMMARY = " OR ".join(f"lower(reference) LIKE :summary_{n}" for n in range(len(SUMMARY_WORDS)))
#: Whether a staged reference is one of :data:`~exchange.settlement.records.COUNT_LABELS`, a
#: trailing colon aside (the labels are bound as ``count_<n>``).
_COUNT = f"rtrim(lower(reference), ':') IN ({', '.join(f':count_{n}' for n in range(len(COUNT_LABELS)))})"
SUMMARY_PATTERNS = {f"summary_{n}": f"%{word}%" for n, word in enumerate(SUMMARY_WORDS)} | {
    f"count_{n}": label for n, label in enumerate(COUNT_LABELS)
}
#: The lines of the staged file marked: ``summary``, labelled as a totals or subtotal row;
#: ``counted``, labelled as a count (:data:`TRAILER_ROW`); ``unsummed``, either: left out of
#: every sum and count of records, so that ``Rows,4`` above a ``Total`` does not hide it.
_MARKED = f"""
    SELECT line, reference, amount, ({_SUMMARY}) AS summary, ({_COUNT}) AS counted,
           ({_SUMMARY} OR {_COUNT}) AS unsummed
      FROM {STAGING}
"""
#: The file's first totals or subtotal row, and how many it has (``found``) (:func:`~exchange.settlement.records.totals_row`), a
#: reference the ledger lacks for the partner in the period whose amount is the sum of a run of
#: records just above it: one labelled as a summary (a reference holding one of
#: ``SUMMARY_WORDS``), of any run ending above it (the records since the previous subtotal, or
#: since the first), or, whatever its reference, the last record when it is the sum of every
#: record above it. Summary rows (and count rows) are left out of the runs, so a grand total
#: below subtotals is the sum of the records. Runs are found by running sums (``through``: the records' amounts up
#: to a line): a row sums the records after a boundary (line 1, the header, or a record) when
#: ``through`` just above it less ``through`` at the boundary is its amount. Each value of
#: ``through`` keeps only its first boundary (the longest run; ``records``, how many records are
#: up to it, tells an empty run apart), so every suspect joins at most one start: a file of
#: repeated sums (zeros) costs no more than any other. A real record that happens to equal a
#: sum is one the ledger has, in this period or another (a late item, whose break says where:
#: ``account``, the partner's clearing account), so it is compared as any other; and an
#: unlabelled last record is taken for a total only below two records at least, since one
#: record's amount repeated is an everyday coincidence, not a sum.
TOTALS_ROW = text(
    f"""
    WITH running AS (
        SELECT line, reference, amount, summary, unsummed,
               sum(CASE WHEN unsummed THEN 0 ELSE amount END) OVER (ORDER BY line) AS through,
               sum(CASE WHEN unsummed THEN 0 ELSE 1 END) OVER (ORDER BY line) AS records,
               max(CASE WHEN unsummed THEN NULL ELSE line END)
                   OVER (ORDER BY line ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS record_above
          FROM ({_MARKED}) marked
    ), boundaries AS (
        SELECT line, through, records, lead(line) OVER (ORDER BY line) AS next_record
          FROM (SELECT 1 AS line, 0 AS through, 0 AS records
                UNION ALL
                SELECT line, through, records FROM running WHERE NOT unsummed) b
    ), starts AS (
        SELECT through, min(line) AS line, min(records) AS records, min(next_record) AS next_record
          FROM boundaries GROUP BY through
    ), suspects AS (
        SELECT line, reference, amount, summary, record_above,
               through - CASE WHEN unsummed THEN 0 ELSE amount END AS through_before,
               records - CASE WHEN unsummed THEN 0 ELSE 1 END AS records_before
          FROM running r
         WHERE (summary OR line = (SELECT max(line) FROM {STAGING}))
           AND NOT EXISTS (SELECT 1 FROM {LEDGER_STAGING} l WHERE l.reference = r.reference)
           AND NOT EXISTS (SELECT 1 FROM ledger_transaction t
                             JOIN ledger_entry e ON e.transaction_seq = t.seq AND e.period = t.period
                            WHERE t.reference = r.reference AND e.account_id = :account)
    )
    SELECT u.line, u.reference, u.amount, s.line AS run_after, s.next_record AS run_first, u.record_above AS run_last,
           count(*) OVER () AS found
      FROM suspects u JOIN starts s
        ON s.through = u.through_before - u.amount AND s.line < u.line AND s.records < u.records_before
       AND (u.summary OR (s.line = 1 AND u.records_before >= 2))
     ORDER BY u.line
     LIMIT 1
    """
)
#: The file's first line where the running total of its amounts leaves the range of an amount
#: (``:most``, in minor units: :func:`~exchange.settlement.records.total_out_of_range`), and
#: that total. Each amount is summed as its ``:split``s and its rest, both sums far inside 64
#: bits for any file, so no sum overflows on either store (SQLite's ``sum`` of integers raises
#: on overflow; PostgreSQL's ``sum`` of bigints is numeric); their recombination is exact up to
#: the first line out of range (at most twice the limit), the only one read.
TOTAL_OUT_OF_RANGE = text(
    f"""
    WITH running AS (
        SELECT line,
               sum(amount / :split) OVER (ORDER BY line) AS high,
               sum(amount % :split) OVER (ORDER BY line) AS low
          FROM {STAGING}
    )
    SELECT line, high * :split + low AS total
      FROM running
     WHERE abs(high * :split + low) > :most
     ORDER BY line
     LIMIT 1
    """
)
#: The file's first trailer row (:func:`~exchange.settlement.records.trailer_row`):
#: a reference the ledger lacks for the partner in the period, labelled as a count (one of
#: ``COUNT_LABELS``), whose amount is the number of records above it (``:unit``, one in the
#: currency's minor units, per record; summary and count rows are not records). A count label
#: is never a reference the exchange prints, and the amount must be that count to the unit, so
#: a real record is never taken for one.
TRAILER_ROW = text(
    f"""
    WITH running AS (
        SELECT line, reference, amount, counted,
               sum(CASE WHEN unsummed THEN 0 ELSE 1 END) OVER (ORDER BY line) AS records
          FROM ({_MARKED}) marked
    )
    SELECT line, reference, records
      FROM running r
     WHERE counted AND amount = records * :unit
       AND NOT EXISTS (SELECT 1 FROM {LEDGER_STAGING} l WHERE l.reference = r.reference)
     ORDER BY line
     LIMIT 1
    """
)
#: What the file's checks above need to look further, in one pass without sorting: the
#: number of lines and the largest amount (a file whose every line could not take the running
#: total out of range is spared :data:`TOTAL_OUT_OF_RANGE`), and whether any line the ledger
#: lacks is labelled as a summary or a count, or is the last (``suspect``; a file with none is
#: spared :data:`TOTALS_ROW` and :data:`TRAILER_ROW`, which sort the whole file). Most files
#: are spared all three.
NEEDS_CHECKS = text(
    f"""
    WITH unmatched AS MATERIALIZED (
        SELECT line, reference FROM {STAGING} s
         WHERE NOT EXISTS (SELECT 1 FROM {LEDGER_STAGING} l WHERE l.reference = s.reference)
    )
    SELECT (SELECT count(*) FROM {STAGING}) AS lines,
           (SELECT max(abs(amount)) FROM {STAGING}) AS largest,
           EXISTS (SELECT 1 FROM unmatched
                    WHERE {_SUMMARY} OR {_COUNT} OR line = (SELECT max(line) FROM {STAGING})) AS suspect
    """
)
CLASSIFY = text(
    f"""
    WITH records AS (
        SELECT reference, count(*) AS lines, min(line) AS line, min(amount) AS amount,
               min(counterparty) AS counterparty, min(partner_date) AS partner_date
          FROM {STAGING} GROUP BY reference
    ), compared AS (
        SELECT coalesce(r.reference, l.reference) AS reference, r.lines, r.line, r.amount AS partner_amount,
               l.amount AS ledger_amount, r.counterparty, r.partner_date
          FROM records r FULL JOIN {LEDGER_STAGING} l ON l.reference = r.reference
         WHERE (r.reference IS NULL AND l.amount <> 0) OR l.reference IS NULL OR r.lines > 1 OR r.amount <> l.amount
    )
    INSERT INTO reconciliation_break
        (reconciliation_id, kind, reference, line, partner_amount, ledger_amount, counterparty, partner_date)
    SELECT :reconciliation, kind, reference, line, partner_amount, ledger_amount, counterparty, partner_date
      FROM (SELECT CASE WHEN line IS NULL THEN '{BreakKind.MISSING_IN_PARTNER}'
                        WHEN ledger_amount IS NULL THEN '{BreakKind.MISSING_IN_LEDGER}'
                        ELSE '{BreakKind.AMOUNT_MISMATCH}' END AS kind,
                   reference, line, partner_amount, ledger_amount, counterparty, partner_date
              FROM compared WHERE lines = 1 OR lines IS NULL
            UNION ALL
            SELECT CASE WHEN s.line <> c.line THEN '{BreakKind.DUPLICATE}'
                        WHEN c.ledger_amount IS NULL THEN '{BreakKind.MISSING_IN_LEDGER}'
                        ELSE '{BreakKind.AMOUNT_MISMATCH}' END,
                   s.reference, s.line, s.amount, c.ledger_amount, s.counterparty, s.partner_date
              FROM compared c JOIN {STAGING} s ON s.reference = c.reference
             WHERE c.lines > 1 AND (s.line <> c.line OR c.ledger_amount IS NULL OR s.amount <> c.ledger_amount)
           ) breaks
     ORDER BY line IS NULL, line, reference
    """
)


async def current_reconciliation(session: AsyncSession, partner: str, period: str) -> Reconciliation | None:
    """The latest import of the partner's records for the period, if any."""
    return (
        await session.exec(
            select(Reconciliation)
            .where(Reconciliation.partner == partner, Reconciliation.period == period)
            .order_by(col(Reconciliation.sequence).desc())
            .limit(1)
        )
    ).first()


def require_reconciled_participant(partner: str) -> None:
    """Refuse the exchange, which has no reconciliation (:class:`ExchangeNotReconciled`)."""
    if partner == EXCHANGE:
        raise ExchangeNotReconciled


async def get_reconciliation(session: AsyncSession, partner: str, period: str) -> Reconciliation:
    require_reconciled_participant(partner)
    await position_of(session, partner, period, reconciled=True)
    reconciliation = await current_reconciliation(session, partner, period)
    if reconciliation is None:
        raise ReconciliationNotFound(partner, period)
    return reconciliation


def require_current(partner: str, period: str, current: Reconciliation | None, seen: str | None) -> None:
    """Refuse a page's form made on the reconciliation ``seen`` (its id; None: not a page's
    form) unless that is still the partner's ``current`` one: acting on what a later import
    replaced meanwhile would resolve breaks, or sign off figures, that nobody looked at."""
    if seen is not None and (current is None or current.id != seen):
        raise ReconciliationReplaced(partner, period)


@dataclass(frozen=True, slots=True)
class Totals:
    """A reconciliation's proof, in minor units from the partner's side (positive: owed to it).

    ``ledger`` is the partner's net position for the period, the statement's ``netAmount`` (its
    clearing legs of the period, summed); ``records`` is the sum of every amount in the file.
    No rounding is involved: both are sums of amounts exact to the currency's minor unit.
    """

    records: int
    ledger: int

    @property
    def difference(self) -> int:
        """``records`` less ``ledger``: exactly what the breaks account for (:func:`break_difference`)."""
        return self.records - self.ledger


#: What a break of each class puts between the file's total and the ledger's, from the
#: partner's side, as the signs its (partner's amount, ledger's amount) take: a mismatch its
#: difference, a line the ledger lacks (or a repeated one, a line too many) its whole amount, a
#: reference the file lacks minus the ledger's amount. A matched line adds the same to both
#: totals, so the breaks' differences sum to exactly the gap (:attr:`Totals.difference`).
DIFFERENCE_SIGNS: dict[BreakKind, tuple[int, int]] = {
    BreakKind.AMOUNT_MISMATCH: (1, -1),
    BreakKind.MISSING_IN_LEDGER: (1, 0),
    BreakKind.DUPLICATE: (1, 0),
    BreakKind.MISSING_IN_PARTNER: (0, -1),
}


class BreakAmounts(Protocol):
    """A break's class and amounts: a stored break, or a row of a query selecting them."""

    kind: str
    partner_amount: int | None
    ledger_amount: int | None


def break_difference(row: BreakAmounts) -> int:
    """What the break ``row`` puts between the file's total and the ledger's, in minor units
    (:data:`DIFFERENCE_SIGNS`): the difference a page, a file or the API shows for it."""
    mine, ledgers = DIFFERENCE_SIGNS[BreakKind(row.kind)]
    return mine * (row.partner_amount or 0) + ledgers * (row.ledger_amount or 0)


def difference_terms(row: BreakAmounts) -> tuple[int | None, int | None]:
    """The break's (partner's amount, ledger's amount) that its difference is made of
    (:data:`DIFFERENCE_SIGNS`), ``None`` for one that is absent or does not count: a repeated
    line keeps its reference's ledger amount, but that amount is the first line's to match, and
    shown beside the repeat it would read as compared (and counted) twice."""
    mine, ledgers = DIFFERENCE_SIGNS[BreakKind(row.kind)]
    return (row.partner_amount if mine else None, row.ledger_amount if ledgers else None)


def _signed_sum(signs: tuple[int, int]) -> ColumnElement[int]:
    mine, ledgers = signs
    partner, ledger = col(ReconciliationBreak.partner_amount), col(ReconciliationBreak.ledger_amount)
    return mine * func.coalesce(partner, 0) + ledgers * func.coalesce(ledger, 0)


#: :func:`break_difference` in SQL, to sum a reconciliation's breaks in the database.
BREAK_EFFECT = case(
    *((col(ReconciliationBreak.kind) == kind.value, _signed_sum(signs)) for kind, signs in DIFFERENCE_SIGNS.items()),
    else_=0,
)


async def totals(session: AsyncSession, reconciliation: Reconciliation) -> Totals:
    """The file's total and the ledger's for the reconciliation's partner and period."""
    position = await position_of(session, reconciliation.partner, reconciliation.period)
    gap = (
        await session.exec(
            select(cast(func.coalesce(func.sum(BREAK_EFFECT), 0), BigInteger)).where(
                ReconciliationBreak.reconciliation_id == reconciliation.id
            )
        )
    ).one()
    return Totals(records=position.net + int(gap), ledger=position.net)


async def unresolved_breaks(session: AsyncSession, reconciliation_id: str) -> int:
    """The reconciliation's breaks still open: its breaks less those resolved, read from its
    own row (resolving counts each break into ``resolved`` as it goes), not counted."""
    return (
        await session.exec(
            select(
                col(Reconciliation.missing_in_ledger)
                + col(Reconciliation.missing_in_partner)
                + col(Reconciliation.amount_mismatch)
                + col(Reconciliation.duplicate)
                - col(Reconciliation.resolved)
            ).where(Reconciliation.id == reconciliation_id)
        )
    ).one()


async def _refuse_summary_rows(
    session: AsyncSession, currency: Currency, *, partner: str, period: str, account: int | None
) -> None:
    """Raises :class:`MalformedRecords` at the file's first totals, subtotal or trailer row
    (``account``: the partner's clearing account)."""
    totals = SUMMARY_PATTERNS | {"account": account}
    total = (await session.exec(TOTALS_ROW, params=totals)).first()  # type: ignore[call-overload]
    unit = {"unit": 10**currency.minor_units}
    trailer = (await session.exec(TRAILER_ROW, params=SUMMARY_PATTERNS | unit)).first()  # type: ignore[call-overload]
    if trailer is not None and (total is None or trailer.line < total.line):
        raise MalformedRecords(
            trailer.line, trailer_row(trailer.reference, trailer.records, partner=partner, period=period)
        )
    if total is not None:
        amount = str(currency.from_minor(total.amount))
        lines = None if total.run_after == 1 else (total.run_first, total.run_last)
        raise MalformedRecords(
            total.line,
            totals_row(total.reference, amount, lines=lines, partner=partner, period=period, more=total.found - 1),
        )


async def import_records(
    session: AsyncSession,
    *,
    currency: Currency,
    partner: str,
    period: str,
    source: ByteSource,
    actor: str,
    records_source: RecordsSource,
    records_field: str | None,
    now: datetime,
) -> Reconciliation:
    """Import the partner's file (read a block at a time) and classify it; one unit of work.
    ``actor`` is who imported it, ``records_source`` where the file came from, ``records_field``
    the caller's input that held it, which a refusal of a new import names (``None``: no input
    held it, as for the exchange's own book of the coalition point).

    A malformed file raises :class:`~exchange.settlement.errors.MalformedRecords` naming the
    first bad line; the caller's unit of work then rolls back, so nothing is imported.

    The very file of the current reconciliation again (its bytes, from the same source: a
    retry after a lost answer) is answered that reconciliation as it stands, nothing imported,
    even once its breaks are resolved or the period signed off; so the file is read before
    either refuses another.
    """
    require_reconciled_participant(partner)
    # An import waits a few seconds at most for another unit of work holding the position (an
    # import of a big file, a resolution, a sign-off): queued behind it, each would hold a
    # connection as long, every connection in the end. (An upload is taken whole before its
    # import begins, so a client's slowness holds nothing here: exchange.streaming.spooled.)
    position = await position_locked_within(session, partner, period, IMPORT_LOCK_WAIT)
    current = await current_reconciliation(session, partner, period)
    account = (
        await session.exec(
            select(LedgerAccount.id).where(LedgerAccount.code == ChartOfAccounts(currency.code).clearing(partner).code)
        )
    ).one()

    try:
        # Reading the file blocks (a temporary file, past a few megabytes): never on the event loop.
        reader = await asyncio.to_thread(RecordReader, source, currency, partner=partner, period=period)
        await prefer_hashing_in_memory(session)
        await stage_records(session, reader)
    except MalformedRecords:
        if position.signed_off_at is not None:
            raise PartnerSignedOff(partner, period) from None  # no file is imported there: why it was bad is moot
        raise
    if current is not None and (current.file_sha256, current.source) == (reader.sha256, records_source.value):
        await drop_staging(session)
        return current
    if position.signed_off_at is not None:
        raise PartnerSignedOff(partner, period)
    if current is not None and await unresolved_breaks(session, current.id) < current.breaks:
        raise ResolvedBreaksWouldBeLost(partner, period, field=records_field)
    unknown = (await session.exec(UNKNOWN_COUNTERPARTY, params={"exchange": EXCHANGE})).first()  # type: ignore[call-overload]
    if unknown is not None:
        raise MalformedRecords(
            unknown.line,
            f"counterparty: {quoted(unknown.counterparty)} is neither a program of the coalition nor {EXCHANGE}",
        )
    await stage_ledger_amounts(session, LEDGER_AMOUNTS, {"account": account, "period": period})
    needs = (await session.exec(NEEDS_CHECKS, params=SUMMARY_PATTERNS)).one()  # type: ignore[call-overload]
    most = 10 ** (MAX_INTEGER_DIGITS + currency.minor_units) - 1
    if needs.lines * (needs.largest or 0) > most:
        bounds = {"most": most, "split": 10**9}
        out_of_range = (await session.exec(TOTAL_OUT_OF_RANGE, params=bounds)).first()  # type: ignore[call-overload]
        if out_of_range is not None:
            total = str(currency.from_minor(int(out_of_range.total)))
            raise MalformedRecords(out_of_range.line, total_out_of_range(total))
    if needs.suspect:
        await _refuse_summary_rows(session, currency, partner=partner, period=period, account=account)
    reconciliation = Reconciliation(
        id=str(uuid.uuid4()),
        period=period,
        partner=partner,
        sequence=current.sequence + 1 if current else 1,
        imported_at=now,
        imported_by=actor,
        source=records_source.value,
        file_sha256=reader.sha256,
        lines=reader.lines,
        matched=0,
        missing_in_ledger=0,
        missing_in_partner=0,
        amount_mismatch=0,
        duplicate=0,
    )
    session.add(reconciliation)
    await session.flush()
    await session.exec(CLASSIFY, params={"reconciliation": reconciliation.id})  # type: ignore[call-overload]
    await drop_staging(session)
    counts = dict(
        (
            await session.exec(
                select(ReconciliationBreak.kind, func.count())
                .where(ReconciliationBreak.reconciliation_id == reconciliation.id)
                .group_by(col(ReconciliationBreak.kind))
            )
        ).all()
    )
    reconciliation.missing_in_ledger = counts.get(BreakKind.MISSING_IN_LEDGER, 0)
    reconciliation.missing_in_partner = counts.get(BreakKind.MISSING_IN_PARTNER, 0)
    reconciliation.amount_mismatch = counts.get(BreakKind.AMOUNT_MISMATCH, 0)
    reconciliation.duplicate = counts.get(BreakKind.DUPLICATE, 0)
    reconciliation.matched = reader.lines - (
        reconciliation.missing_in_ledger + reconciliation.amount_mismatch + reconciliation.duplicate
    )
    session.add(reconciliation)
    await session.flush()
    return reconciliation
