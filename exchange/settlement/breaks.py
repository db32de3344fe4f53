"""Resolving a reconciliation's breaks: accept the ledger's figure, or post an adjustment.

An adjustment is a new, balanced ledger transaction between the partner and one counterparty
(another partner, or the exchange), posted now, so into the next open period; it never touches
the closed period. Its id is ``adjustment:break:<break id>`` (resolving the same break the same
way again posts nothing new) and its reference ``break:<break id>``, which is how it appears on
both parties' next statements. Unless staff name them, the adjustment's amount makes the ledger
agree with the partner's line (the partner's amount minus the ledger's), and its counterparty is
the one the partner's line names, else the only one the reference's transactions have. A line
the ledger has in another period (a late item) is never adjusted, alone or in a selection: the
ledger counts it there already (:mod:`~exchange.settlement.other_periods`).

A break is resolved once, by one person, for one reason, all recorded; repeating the same
resolution returns the first one (after the partner's period was signed off too: a retry after a
lost answer), and any other is refused.

Staff resolve breaks one at a time or many at once (:func:`resolve_breaks`): a selection of the
partner's current reconciliation, by ids or by filters (the break's class, the counterparty the
partner's file named), resolved in one unit of work with set-based statements whatever its size.
Accepting the ledger's figure is one ``INSERT … SELECT``; adjusting reads the selection's
amounts and counterparties in one query and posts the adjustments through the ledger in
batches, each break with its default amount and counterparty (or one counterparty named for
all). A filter selects the breaks still open, so repeating it resolves nothing more; ids may
name breaks already resolved the same way (counted, not changed): as recorded, adjusting by the
amount and against the counterparty this request would post for each; any resolved otherwise
refuse the whole request. After the sign-off a selection repeated is answered as one break's
resolution repeated is (:func:`_repeated`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, exists, insert, literal, text, update
from sqlalchemy import select as core_select
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db.bulk import bulk_insert
from exchange.db.types import UTCDateTime
from exchange.errors import BadUserInput
from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.models import LedgerAccount, LedgerTransaction
from exchange.ledger.posting import Ledger, Leg, TransactionRequest
from exchange.money import Currency
from exchange.programs.models import Program
from exchange.programs.service import no_program_has, program_ids
from exchange.settlement.break_kinds import BreakKind, Resolution
from exchange.settlement.errors import (
    BadAdjustment,
    BreakNotFound,
    CountedElsewhere,
    PartnerSignedOff,
    ResolutionConflict,
)
from exchange.settlement.models import BreakResolution, Reconciliation, ReconciliationBreak
from exchange.settlement.netting import ACCOUNTS, SPOKES_OF_ACCOUNTS
from exchange.settlement.other_periods import elsewhere, ledger_periods
from exchange.settlement.participants import EXCHANGE, account_of, settled_accounts
from exchange.settlement.positions import position_of
from exchange.settlement.reconciliation import (
    BreakAmounts,
    break_difference,
    current_reconciliation,
    get_reconciliation,
    require_current,
    unresolved_breaks,
)
from exchange.text import quoted

ADJUSTMENT_KIND = "adjustment"
MAX_REASON = 500


@dataclass(frozen=True)
class ResolveRequest:
    break_id: int
    resolution: Resolution
    reason: str
    actor: str
    amount: Decimal | None = None
    """ADJUST only: added to the partner's position, in the settlement currency (default: what
    makes the ledger agree with the partner's line)."""
    counterparty: str | None = None
    """ADJUST only: who takes the other side (default: see the module's docstring)."""


def adjustment_id(break_id: int) -> str:
    return f"adjustment:break:{break_id}"


def adjustment_reference(break_id: int) -> str:
    """The business reference of break ``break_id``'s adjustment: what both parties' statements
    show for it, and what the partner's records of that period list it by."""
    return f"break:{break_id}"


def default_amount(row: BreakAmounts) -> int | None:
    """What makes the ledger agree with the partner's line: the break's difference; a duplicate
    line has none (the partner removes it: the ledger has nothing to add)."""
    if row.kind == BreakKind.DUPLICATE:
        return None
    return break_difference(row)


async def _default_counterparty(
    session: AsyncSession, row: ReconciliationBreak, reconciliation: Reconciliation, currency: Currency
) -> str | None:
    if row.counterparty is not None:
        return row.counterparty
    ledgers = await _ledger_counterparties(session, reconciliation, currency, break_id=row.id)
    return ledgers.get(row.reference)


async def _adjustment(
    session: AsyncSession,
    request: ResolveRequest,
    row: ReconciliationBreak,
    reconciliation: Reconciliation,
    currency: Currency,
) -> tuple[int, str]:
    """The adjustment's amount and counterparty: as asked, or by default; checked."""
    partner = reconciliation.partner
    if late := await _counted_elsewhere(session, currency, reconciliation, [row]):
        raise CountedElsewhere(reconciliation.period, late, selected=False)
    try:
        amount = currency.to_minor(request.amount) if request.amount is not None else default_amount(row)
    except ValueError as exc:
        raise BadAdjustment(str(exc), field="adjustment.amount") from None
    if not amount:
        raise BadAdjustment(
            f"break {row.id} ({row.kind}) needs the adjustment's non-zero amount", field="adjustment.amount"
        )
    counterparty = request.counterparty or await _default_counterparty(session, row, reconciliation, currency)
    if counterparty is None:
        raise BadAdjustment(
            f"name the adjustment's counterparty: the reference {quoted(row.reference)} of break {row.id} does not say who it is",
            field="adjustment.counterparty",
        )
    await check_counterparty(session, partner, counterparty, field="adjustment.counterparty")
    return amount, counterparty


async def check_counterparty(session: AsyncSession, partner: str, counterparty: str, *, field: str) -> None:
    """An adjustment's counterparty is another participant: a program, or the exchange."""
    if counterparty == partner:
        raise BadAdjustment("a partner cannot adjust against itself", field=field)
    await _check_participant(session, counterparty, field=field)


async def _check_participant(session: AsyncSession, named: str, *, field: str) -> None:
    """``named`` is a settlement participant (a program, or the exchange); else refused with
    the ids it could have meant."""
    if named != EXCHANGE and await session.get(Program, named) is None:
        raise BadAdjustment(no_program_has(named, [*await program_ids(session), EXCHANGE]), field=field)


def checked_reason(reason: str) -> str:
    """Why staff resolved a break: 1 to :data:`MAX_REASON` characters, trimmed."""
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise BadUserInput(f"give the reason, in 1 to {MAX_REASON} characters", field="reason")
    return reason


def adjustment_request(
    chart: ChartOfAccounts, break_id: int, partner: str, counterparty: str, amount: int, now: datetime
) -> TransactionRequest:
    """The balanced two-leg transaction that resolves break ``break_id`` by adjusting: ``amount``
    added to the partner's position, taken from the counterparty's; its id makes posting it again
    a no-op."""
    return TransactionRequest(
        id=adjustment_id(break_id),
        kind=ADJUSTMENT_KIND,
        reference=adjustment_reference(break_id),
        effective_at=now,
        legs=(Leg(account_of(chart, partner), amount), Leg(account_of(chart, counterparty), -amount)),
    )


async def resolve_break(
    session: AsyncSession, ledger: Ledger, currency: Currency, request: ResolveRequest, now: datetime
) -> tuple[ReconciliationBreak, BreakResolution, str]:
    """Resolve a break of a partner's current reconciliation (see the module's docstring);
    returns the break, its resolution and the partner."""
    row = await session.get(ReconciliationBreak, request.break_id)
    if row is None:
        raise BreakNotFound(request.break_id)
    reconciliation = await session.get(Reconciliation, row.reconciliation_id)
    assert reconciliation is not None
    position = await position_of(session, reconciliation.partner, reconciliation.period, for_update=True)
    current = await current_reconciliation(session, reconciliation.partner, reconciliation.period)
    if current is None or current.id != reconciliation.id:
        raise BadUserInput(f"break {row.id} belongs to a reconciliation a later import replaced", field="breakId")
    reason = checked_reason(request.reason)
    amount: int | None = None
    counterparty: str | None = None
    if request.resolution is Resolution.ADJUST:
        amount, counterparty = await _adjustment(session, request, row, reconciliation, currency)
    elif request.amount is not None or request.counterparty is not None:
        raise BadUserInput("accepting the ledger's figure posts nothing: give no adjustment", field="adjustment")

    asked = (request.resolution.value, reason, amount, counterparty)
    existing = await session.get(BreakResolution, request.break_id)
    if existing is not None and (existing.resolution, existing.reason, existing.amount, existing.counterparty) == asked:
        return row, existing, reconciliation.partner  # the same request again, signed off since or not
    if position.signed_off_at is not None:
        raise PartnerSignedOff(reconciliation.partner, reconciliation.period)
    if existing is not None:
        raise ResolutionConflict(request.break_id)

    transaction_id = None
    if amount is not None and counterparty is not None:
        chart = ChartOfAccounts(currency.code)
        posted = await ledger.post(
            session,
            adjustment_request(chart, request.break_id, reconciliation.partner, counterparty, amount, now),
        )
        transaction_id = posted.id
    resolution = BreakResolution(
        break_id=request.break_id,
        reconciliation_id=reconciliation.id,
        resolution=request.resolution.value,
        reason=reason,
        resolved_by=request.actor,
        resolved_at=now,
        amount=amount,
        counterparty=counterparty,
        transaction_id=transaction_id,
    )
    session.add(resolution)
    await session.flush()
    await _count_resolved(session, reconciliation.id, and_(BREAKS.c.id == request.break_id, ~BREAKS.c.resolved))
    return row, resolution, reconciliation.partner


RECONCILIATIONS: Table = Reconciliation.__table__  # type: ignore[attr-defined]
BREAKS: Table = ReconciliationBreak.__table__  # type: ignore[attr-defined]
RESOLUTIONS: Table = BreakResolution.__table__  # type: ignore[attr-defined]
RESOLUTION_COLUMNS = (
    "break_id",
    "reconciliation_id",
    "resolution",
    "reason",
    "resolved_by",
    "resolved_at",
    "amount",
    "counterparty",
    "transaction_id",
)
#: What a break's adjustment is worked out from (:func:`_adjusted_by`).
BREAK_FIGURES = (
    BREAKS.c.id,
    BREAKS.c.kind,
    BREAKS.c.reference,
    BREAKS.c.partner_amount,
    BREAKS.c.ledger_amount,
    BREAKS.c.counterparty,
)
#: Ids one request may name; a larger selection is made by filters.
MAX_SELECTED_IDS = 10_000
#: Break ids per statement, and adjustments per posting batch.
BATCH = 5_000
#: The ledger's one counterparty of each reference of the reconciliation's breaks whose line
#: names none (``others`` > 1: the reference's transactions have several); of one break's
#: reference when ``break_id`` is given (``COALESCE`` lets PostgreSQL type a NULL parameter).
LEDGER_COUNTERPARTIES = text(
    f"""
    SELECT t.reference,
           min(CASE WHEN s.spoke_account = :account THEN s.hub_account ELSE s.spoke_account END) AS other,
           count(DISTINCT CASE WHEN s.spoke_account = :account THEN s.hub_account ELSE s.spoke_account END) AS others
      FROM ({SPOKES_OF_ACCOUNTS}) s JOIN ledger_transaction t ON t.seq = s.transaction_seq
     WHERE t.reference IN (SELECT b.reference FROM reconciliation_break b
                            WHERE b.reconciliation_id = :reconciliation AND b.counterparty IS NULL
                              AND b.id = COALESCE(:break_id, b.id))
     GROUP BY t.reference
    """
).bindparams(ACCOUNTS)


@dataclass(frozen=True)
class BreakSelection:
    """Breaks of a partner's current reconciliation: the ``ids`` named, or else every open
    break the filters match (no filter: every open break)."""

    ids: tuple[int, ...] | None = None
    kind: BreakKind | None = None
    counterparty: str | None = None
    """The counterparty the partner's file named on the break's line."""

    def check(self) -> None:
        if self.ids is not None:
            if self.kind is not None or self.counterparty is not None:
                raise BadUserInput("select breaks by ids or by filters, not both", field="selection.ids")
            if not self.ids or len(self.ids) > MAX_SELECTED_IDS:
                raise BadUserInput(
                    f"name 1 to {MAX_SELECTED_IDS} breaks; select more by filters", field="selection.ids"
                )
        if self.kind is BreakKind.MATCHED:
            raise BadUserInput("a matched line is not a break", field="selection.kind")


@dataclass(frozen=True)
class BulkResolveRequest:
    partner: str
    period: str
    selection: BreakSelection
    resolution: Resolution
    reason: str
    actor: str
    counterparty: str | None = None
    """ADJUST only: who takes the other side of every adjustment (default: each break's own,
    as for one break)."""
    reconciliation: str | None = None
    """The id of the reconciliation the selection was made on (a page's form): refused if a
    later import has replaced it since, rather than resolving breaks nobody looked at."""


@dataclass(frozen=True)
class BulkResolution:
    reconciliation: Reconciliation
    resolved: int
    """Breaks this request resolved."""
    unchanged: int
    """Breaks it named that were already resolved the same way."""
    unresolved: int
    """The reconciliation's breaks still open afterwards."""
    adjusted: Adjusted | None = None
    """ADJUST: the adjustments this request posted (None when it posted none)."""


@dataclass(frozen=True)
class Adjusted:
    """Adjustments a request posted: how many, what they added to the partner's position (in
    minor units, the sum of theirs), and the period the ledger posted them into."""

    count: int
    total: int
    period: str


async def resolve_breaks(
    session: AsyncSession, ledger: Ledger, currency: Currency, request: BulkResolveRequest, now: datetime
) -> BulkResolution:
    """Resolve a selection of breaks of the partner's current reconciliation the same way, for
    the same reason (see the module's docstring); all of them, or none."""
    request.selection.check()
    reason = checked_reason(request.reason)
    if request.resolution is not Resolution.ADJUST and request.counterparty is not None:
        raise BadUserInput("accepting the ledger's figure posts nothing: name no counterparty", field="adjustment")
    position = await position_of(session, request.partner, request.period, for_update=True, reconciled=True)
    reconciliation = await get_reconciliation(session, request.partner, request.period)
    require_current(request.partner, request.period, reconciliation, request.reconciliation)
    if request.counterparty is not None:
        await check_counterparty(session, request.partner, request.counterparty, field="adjustment.counterparty")
    await _check_named(session, request.selection)
    if position.signed_off_at is not None:
        return await _repeated(session, reconciliation, currency, request, reason)
    ids = request.selection.ids
    unchanged = 0
    if ids is not None:
        unchanged = await _already_resolved(session, reconciliation, currency, sorted(set(ids)), request, reason)
    open_before = await unresolved_breaks(session, reconciliation.id)
    posted: list[tuple[int, int, str]] = []
    for chunk in _batches(sorted(set(ids))) if ids is not None else [None]:
        selected = _open_breaks(reconciliation.id, request.selection, chunk)
        if request.resolution is Resolution.ACCEPT_LEDGER:
            await _accept(session, selected, reason, request.actor, now)
        else:
            posted += await _adjust(session, ledger, currency, reconciliation, selected, request, reason, now)
        await _count_resolved(session, reconciliation.id, selected)
    # The position's lock keeps anyone else from resolving these breaks meanwhile.
    open_after = await unresolved_breaks(session, reconciliation.id)
    adjusted = None
    if posted:
        first = adjustment_id(posted[0][0])
        period = (await session.exec(select(LedgerTransaction.period).where(LedgerTransaction.id == first))).one()
        adjusted = Adjusted(len(posted), sum(amount for _, amount, _ in posted), period)
    return BulkResolution(reconciliation, open_before - open_after, unchanged, open_after, adjusted)


async def _count_resolved(session: AsyncSession, reconciliation_id: str, selected: ColumnElement[bool]) -> None:
    """Mark those of the ``selected`` open breaks that now have a resolution as resolved, and
    count them into their reconciliation's ``resolved``: in the unit of work that recorded the
    resolutions, so that the two figures (what pages of open breaks and the open breaks' count
    read) never disagree with the resolutions."""
    marked = await session.exec(
        update(BREAKS).where(selected, exists().where(RESOLUTIONS.c.break_id == BREAKS.c.id)).values(resolved=True)
    )
    if marked.rowcount:
        await session.exec(
            update(RECONCILIATIONS)
            .where(RECONCILIATIONS.c.id == reconciliation_id)
            .values(resolved=RECONCILIATIONS.c.resolved + marked.rowcount)
        )


async def _check_named(session: AsyncSession, selection: BreakSelection) -> None:
    """A counterparty filter names a participant: an import refuses a line naming anyone else,
    so a filter naming no participant (a typo) would match nothing and be taken for done."""
    if selection.counterparty is not None:
        await _check_participant(session, selection.counterparty, field="selection.counterparty")


def _batches(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), BATCH):
        yield ids[start : start + BATCH]


async def _repeated(
    session: AsyncSession,
    reconciliation: Reconciliation,
    currency: Currency,
    request: BulkResolveRequest,
    reason: str,
) -> BulkResolution:
    """The answer, on a period the partner has signed off, to a request that repeats what was
    resolved before: every break it names (or its filters match, one at least) resolved as it
    would record it (:func:`_already_resolved`). Nothing is resolved now, as when it was repeated
    before the sign-off: its ids are counted unchanged. Anything else would change a final
    period: ``PartnerSignedOff``."""
    closed = PartnerSignedOff(reconciliation.partner, reconciliation.period)
    ids = request.selection.ids
    if ids is not None:
        named = sorted(set(ids))
    else:
        matched = core_select(BREAKS.c.id).where(_selected(reconciliation.id, request.selection, None))
        named = [row.id for row in await session.exec(matched.order_by(BREAKS.c.id))]  # type: ignore[call-overload]
    try:
        unchanged = await _already_resolved(session, reconciliation, currency, named, request, reason)
    except ResolutionConflict:
        raise closed from None
    if not named or unchanged < len(named):
        raise closed
    return BulkResolution(reconciliation, 0, unchanged if ids is not None else 0, 0)


def _open_breaks(reconciliation_id: str, selection: BreakSelection, ids: Sequence[int] | None) -> ColumnElement[bool]:
    """The open breaks of the reconciliation that the selection (or its batch of ids) takes."""
    return and_(_selected(reconciliation_id, selection, ids), ~BREAKS.c.resolved)


def _selected(reconciliation_id: str, selection: BreakSelection, ids: Sequence[int] | None) -> ColumnElement[bool]:
    """The breaks of the reconciliation, open or resolved, that the selection (or its batch of ids) takes."""
    clauses = [BREAKS.c.reconciliation_id == reconciliation_id]
    if ids is not None:
        clauses.append(BREAKS.c.id.in_(ids))
    if selection.kind is not None:
        clauses.append(BREAKS.c.kind == selection.kind.value)
    if selection.counterparty is not None:
        clauses.append(BREAKS.c.counterparty == selection.counterparty)
    return and_(*clauses)


async def _already_resolved(
    session: AsyncSession,
    reconciliation: Reconciliation,
    currency: Currency,
    ids: Sequence[int],
    request: BulkResolveRequest,
    reason: str,
) -> int:
    """How many of ``ids`` are resolved already as ``request`` would record them: its way, its
    reason and, adjusting, the amount and counterparty it would post for each (:func:`_adjusted_by`:
    the counterparty named, else the break's own default), compared with what was recorded;
    refused if any is not the reconciliation's, or was resolved otherwise."""
    resolved = 0
    ledgers: dict[str, str] | None = None
    for chunk in _batches(ids):
        rows = list(
            await session.exec(  # type: ignore[call-overload]
                core_select(
                    *BREAK_FIGURES,
                    RESOLUTIONS.c.break_id.label("done"),
                    RESOLUTIONS.c.resolution,
                    RESOLUTIONS.c.reason,
                    RESOLUTIONS.c.amount,
                    RESOLUTIONS.c.counterparty.label("adjusted_against"),
                )
                .select_from(BREAKS.outerjoin(RESOLUTIONS, RESOLUTIONS.c.break_id == BREAKS.c.id))
                .where(BREAKS.c.reconciliation_id == reconciliation.id, BREAKS.c.id.in_(chunk))
            )
        )
        found = {row.id for row in rows}
        if missing := [break_id for break_id in chunk if break_id not in found]:
            raise BadUserInput(
                f"break {missing[0]} is not one of the current reconciliation of {reconciliation.partner} "
                f"for {reconciliation.period}",
                field="selection.ids",
            )
        done = [row for row in rows if row.done is not None]
        if ledgers is None and request.resolution is Resolution.ADJUST and _needs_ledger(request, done):
            ledgers = await _ledger_counterparties(session, reconciliation, currency)
        for row in done:
            asked: tuple[str, str, int | None, str | None] = (request.resolution.value, reason, None, None)
            if request.resolution is Resolution.ADJUST:
                asked = (request.resolution.value, reason, *_adjusted_by(row, request, ledgers or {}))
            if (row.resolution, row.reason, row.amount, row.adjusted_against) != asked:
                raise ResolutionConflict(row.id, field="selection.ids")
            resolved += 1
    return resolved


def _adjusted_by(row: Any, request: BulkResolveRequest, ledgers: dict[str, str]) -> tuple[int | None, str | None]:
    """The amount and counterparty ``request`` adjusts the break ``row`` (its :data:`BREAK_FIGURES`)
    by: its default amount, and the counterparty named, else its line's, else the ledger's one
    for its reference (``ledgers``, :func:`_ledger_counterparties`); ``None`` where it has none."""
    return default_amount(row), request.counterparty or row.counterparty or ledgers.get(row.reference)


def _needs_ledger(request: BulkResolveRequest, rows: Sequence[Any]) -> bool:
    """Whether adjusting ``rows`` as ``request`` asks needs the ledger's counterparty of a
    reference (:func:`_ledger_counterparties`): it names none, and a break's line names none."""
    return request.counterparty is None and any(row.counterparty is None for row in rows)


async def _accept(session: AsyncSession, selected: ColumnElement[bool], reason: str, actor: str, now: datetime) -> None:
    """Accept the ledger's figure for every selected break: one statement."""
    await session.exec(
        insert(RESOLUTIONS).from_select(
            RESOLUTION_COLUMNS[:6],
            core_select(
                BREAKS.c.id,
                BREAKS.c.reconciliation_id,
                literal(Resolution.ACCEPT_LEDGER.value, RESOLUTIONS.c.resolution.type),
                literal(reason, RESOLUTIONS.c.reason.type),
                literal(actor, RESOLUTIONS.c.resolved_by.type),
                literal(now, UTCDateTime()),
            ).where(selected),
        )
    )


async def _adjust(
    session: AsyncSession,
    ledger: Ledger,
    currency: Currency,
    reconciliation: Reconciliation,
    selected: ColumnElement[bool],
    request: BulkResolveRequest,
    reason: str,
    now: datetime,
) -> list[tuple[int, int, str]]:
    """Post an adjustment for every selected break (each its default amount; its default
    counterparty unless the request names one) in batches, and record the resolutions; the
    adjustments posted: break id, amount, counterparty."""
    rows = list(await session.exec(core_select(*BREAK_FIGURES).where(selected).order_by(BREAKS.c.id)))  # type: ignore[call-overload]
    if not rows:
        return []
    if late := await _counted_elsewhere(session, currency, reconciliation, rows):
        raise CountedElsewhere(reconciliation.period, late, selected=True)
    partner = reconciliation.partner
    ledgers = await _ledger_counterparties(session, reconciliation, currency) if _needs_ledger(request, rows) else {}
    adjustments: list[tuple[int, int, str]] = []
    for row in rows:
        amount, counterparty = _adjusted_by(row, request, ledgers)
        if not amount:
            raise BadAdjustment(
                f"break {row.id} ({row.kind}) has no amount to adjust by: resolve it on its own, naming one",
                field="selection",
            )
        if counterparty is None:
            raise BadAdjustment(
                f"name the adjustments' counterparty: the reference {quoted(row.reference)} of break {row.id} "
                "does not say who it is",
                field="adjustment.counterparty",
            )
        adjustments.append((row.id, amount, counterparty))
    for counterparty in {counterparty for _, _, counterparty in adjustments}:
        await check_counterparty(session, partner, counterparty, field="adjustment.counterparty")
    chart = ChartOfAccounts(currency.code)
    for start in range(0, len(adjustments), BATCH):
        batch = adjustments[start : start + BATCH]
        await ledger.post_many(
            session,
            [adjustment_request(chart, break_id, partner, other, amount, now) for break_id, amount, other in batch],
        )
    resolutions: list[tuple[Any, ...]] = [
        (
            break_id,
            reconciliation.id,
            Resolution.ADJUST.value,
            reason,
            request.actor,
            now,
            amount,
            other,
            adjustment_id(break_id),
        )
        for break_id, amount, other in adjustments
    ]
    await bulk_insert(session, RESOLUTIONS, RESOLUTION_COLUMNS, resolutions)
    return adjustments


async def _counted_elsewhere(
    session: AsyncSession, currency: Currency, reconciliation: Reconciliation, rows: Sequence[Any]
) -> list[tuple[int, str, list[str]]]:
    """Those of the breaks ``rows`` (their :data:`BREAK_FIGURES`) that are lines the ledger has
    in another period than the reconciliation's, with the periods: the ledger counts each there
    already (:mod:`~exchange.settlement.other_periods`)."""
    missing = [row for row in rows if row.kind == BreakKind.MISSING_IN_LEDGER]
    late: list[tuple[int, str, list[str]]] = []
    for start in range(0, len(missing), BATCH):
        batch = missing[start : start + BATCH]
        periods = await ledger_periods(
            session, currency=currency, partner=reconciliation.partner, references=[row.reference for row in batch]
        )
        for row in batch:
            if others := elsewhere(row.kind, row.reference, reconciliation.period, periods):
                late.append((row.id, row.reference, others))
    return late


async def _ledger_counterparties(
    session: AsyncSession, reconciliation: Reconciliation, currency: Currency, *, break_id: int | None = None
) -> dict[str, str]:
    """Each reference (of the reconciliation's breaks whose line names no counterparty) whose
    ledger transactions have exactly one counterparty, with it."""
    chart = ChartOfAccounts(currency.code)
    account = (
        await session.exec(
            select(LedgerAccount.id).where(LedgerAccount.code == chart.clearing(reconciliation.partner).code)
        )
    ).one()
    accounts = await settled_accounts(session, currency.code)
    rows = await session.exec(  # type: ignore[call-overload]
        LEDGER_COUNTERPARTIES,
        params={
            "period": reconciliation.period,
            "unit": currency.code,
            "account": account,
            "accounts": [account],
            "reconciliation": reconciliation.id,
            "break_id": break_id,
        },
    )
    return {reference: accounts[other] for reference, other, others in rows if others == 1}


async def list_breaks(
    session: AsyncSession,
    reconciliation_id: str,
    *,
    kind: BreakKind | None = None,
    counterparty: str | None = None,
    unresolved_only: bool = False,
    first: int = 100,
    after: int | None = None,
) -> list[tuple[ReconciliationBreak, BreakResolution | None]]:
    """Breaks of a reconciliation by id, ``first`` of them after the id ``after``; of one
    class, naming one counterparty in the partner's line, still open: as asked.

    The page is chosen first, by the reconciliation's index for the filter
    (:class:`ReconciliationBreak`), and only its breaks are joined to their resolutions: joined
    before the limit, PostgreSQL merged the page with every resolution up to its first break."""
    chosen = (
        select(ReconciliationBreak)
        .where(ReconciliationBreak.reconciliation_id == reconciliation_id)
        .order_by(col(ReconciliationBreak.id))
        .limit(first)
    )
    if kind is not None:
        chosen = chosen.where(ReconciliationBreak.kind == kind.value)
    if counterparty is not None:
        chosen = chosen.where(ReconciliationBreak.counterparty == counterparty)
    if unresolved_only:
        chosen = chosen.where(~col(ReconciliationBreak.resolved))
    if after is not None:
        chosen = chosen.where(col(ReconciliationBreak.id) > after)
    page = aliased(ReconciliationBreak, chosen.subquery())
    statement = (
        select(page, BreakResolution)
        .join(BreakResolution, col(BreakResolution.break_id) == col(page.id), isouter=True)
        .order_by(col(page.id))
    )
    return list((await session.exec(statement)).all())


async def resolution_trail(
    session: AsyncSession, reconciliation_id: str, *, first: int = 50
) -> list[tuple[ReconciliationBreak, BreakResolution]]:
    """Who resolved which break of the reconciliation, when and why: the latest ``first``."""
    statement = (
        select(ReconciliationBreak, BreakResolution)
        .join(BreakResolution, col(BreakResolution.break_id) == col(ReconciliationBreak.id))
        .where(BreakResolution.reconciliation_id == reconciliation_id)
        .order_by(col(BreakResolution.resolved_at).desc(), col(BreakResolution.break_id).desc())
        .limit(first)
    )
    return list((await session.exec(statement)).all())
