"""What settlement refuses."""

from __future__ import annotations

from collections.abc import Sequence

from exchange.errors import (
    BadUserInput,
    ErrorCode,
    ExchangeError,
    IdempotencyConflict,
    NotFound,
)
from exchange.text import counted, quoted

#: The input a partner's records come in, as the API names it (``importPartnerRecords``' argument).
RECORDS_FIELD = "csv"


class SettlementInvariantBroken(Exception):
    """The ledger holds something netting cannot attribute; never expected (posting refuses
    it), so it is not a client's error: an operator must look."""


class PartnerSignedOff(ExchangeError):
    """The partner's period is signed off: its records and breaks are final."""

    code = ErrorCode.PERIOD_CLOSED

    def __init__(self, partner: str, period: str) -> None:
        super().__init__(
            f"the period {period} of {partner} is signed off: its records and breaks are final; "
            "a difference found since is reconciled in the next open period",
            field="period",
            partner=partner,
        )


class PositionBusy(ExchangeError):
    """Another unit of work holds the partner's position of the period (an import of its
    records, a resolution of its breaks, its sign-off) longer than an import waits for it."""

    code = ErrorCode.SERVICE_UNAVAILABLE

    def __init__(self, partner: str, period: str) -> None:
        super().__init__(
            f"the settlement of {partner} for {period} is busy: another import of its records, a resolution of its "
            "breaks or its sign-off is under way; send the records again once it has finished",
            reason="POSITION_BUSY",
        )


class UnresolvedBreaks(ExchangeError):
    """Said alike to GraphQL, the CLI and the settlement console: it names how on each."""

    code = ErrorCode.UNRESOLVED_BREAKS

    def __init__(self, partner: str, period: str, unresolved: int) -> None:
        super().__init__(
            f"the period {period} of {partner} has {counted(unresolved, 'unresolved break')}: resolve every break of its "
            "reconciliation first (on the settlement console's reconciliation page, with resolveBreaks, or with "
            f"exchange settle resolve; exchange settle breaks --partner {partner} --unresolved {period} lists them)",
            unresolved=unresolved,
        )


class MalformedRecords(BadUserInput):
    """A partner's file that cannot be read whole; nothing of it is imported."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}; nothing was imported", field=RECORDS_FIELD, line=line, reason=reason)
        self.line = line
        self.reason = reason


class NotReconciled(ExchangeError):
    code = ErrorCode.UNRESOLVED_BREAKS

    def __init__(self, partner: str, period: str) -> None:
        super().__init__(
            f"{partner} has no records imported for {period}: import and reconcile them before signing off"
        )


class ResolvedBreaksWouldBeLost(BadUserInput):
    """A new import would reopen breaks already resolved. ``field``: the caller's input that
    holds the records (a partner's file); ``None`` where no input does (the exchange's own book
    of the coalition point, written for the period asked): then the period's state refuses it,
    not anything the caller sent."""

    def __init__(self, partner: str, period: str, *, field: str | None) -> None:
        super().__init__(
            f"breaks of the reconciliation of {partner} for {period} are already resolved; a new import would reopen them: "
            "resolve the open breaks of the current import instead",
            field=field,
        )


#: How many of the periods a participant took part in a refusal names, latest first.
PERIODS_NAMED = 6


class NoSuchParticipant(NotFound):
    """The participant has no position in the closed period. ``took_part`` are the periods it
    has one in, latest first (one more than :data:`PERIODS_NAMED` is enough), for the next
    period to ask about is among them; ``None`` where naming them would not help (the
    exchange, which is no partner to import records for)."""

    def __init__(
        self, participant: str, period: str, *, took_part: Sequence[str] | None = None, field: str = "partnerId"
    ) -> None:
        message = f"{quoted(participant)} took no part in settling period {period}"
        if took_part is not None and not took_part:
            message += "; it has taken part in no closed period yet"
        elif took_part:
            more = ", …" if len(took_part) > PERIODS_NAMED else ""
            message += f"; the periods it took part in, latest first: {', '.join(took_part[:PERIODS_NAMED])}{more}"
        super().__init__(message, field=field)


class ReconciliationNotFound(NotFound):
    def __init__(self, partner: str, period: str) -> None:
        super().__init__(
            f"no records of {partner} are imported for {period} yet: the partner uploads them "
            f"(PUT /settlement/records/{partner}/{period}, or importPartnerRecords) or staff import them "
            f"(exchange settle reconcile --partner {partner} {period} FILE)",
            field="partnerId",
        )


class ExchangeNotReconciled(NotFound):
    """The exchange sends no records and signs nothing off: its fee and breakage lines are the
    other side of the partners' statements, reconciled with theirs. Said instead of asking it for
    records "the partner uploads" or of a position it took part in."""

    def __init__(self) -> None:
        super().__init__(
            "the exchange has no reconciliation of its own: its lines are the other side of the partners' "
            "statements, which their reconciliations compare; name a partner's program, or the coalition point",
            field="partnerId",
        )


class BreakNotFound(NotFound):
    def __init__(self, break_id: int) -> None:
        super().__init__(f"no break has id {break_id}", field="breakId")


class ReconciliationReplaced(IdempotencyConflict):
    """A page's form acted on a partner's reconciliation that a later import (by someone else,
    since the page was shown) has replaced: its breaks and figures are not what staff saw."""

    def __init__(self, partner: str, period: str) -> None:
        super().__init__(
            f"the reconciliation of {partner} for {period} was replaced by a later import since the page was shown: "
            "nothing was changed; review the breaks of the current import and try again",
            field="reconciliation",
            partner=partner,
        )


class ResolutionConflict(IdempotencyConflict):
    def __init__(self, break_id: int, *, field: str = "breakId") -> None:
        super().__init__(
            f"break {break_id} was already resolved differently: leave it out "
            "(exchange settle breaks lists how each break was resolved)",
            field=field,
        )


class BadAdjustment(BadUserInput):
    """An adjustment that cannot be posted as asked."""


class CountedElsewhere(BadAdjustment):
    """Adjusting breaks that are lines the ledger has in other periods (late items): the ledger
    counts each there already, so an adjustment would count it twice. ``late``: each such
    break's id, reference and the periods the ledger has it in."""

    def __init__(self, period: str, late: Sequence[tuple[int, str, Sequence[str]]], *, selected: bool) -> None:
        break_id, reference, periods = late[0]
        where = f"break {break_id}: the ledger has {quoted(reference)} in {', '.join(periods)}, not in {period}"
        if not selected:
            message = (
                f"{where}; the partner's line belongs in that period's records, where the ledger counts the item "
                "already, and an adjustment would count it twice: let the ledger stand (ACCEPT_LEDGER)"
            )
        else:
            more = f", and {len(late) - 1} more" if len(late) > 1 else ""
            message = (
                f"{len(late)} of the selected breaks are lines the ledger has in another period ({where}{more}): "
                "an adjustment would count each twice; let the ledger stand for them (ACCEPT_LEDGER), then "
                "adjust the others"
            )
        super().__init__(
            message, field="selection" if selected else "resolution", breaks=[row[0] for row in late[:100]]
        )


class JobNotFound(NotFound):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no settlement job has id {job_id!r}", field="jobId")


class NotArchivable(BadUserInput):
    """A period whose ledger rows cannot be detached for archive, and why."""

    def __init__(self, period: str, reason: str) -> None:
        super().__init__(f"period {period} cannot be archived: {reason}", field="period", period=period)


class ArchiveDropped(BadUserInput):
    """An export asked of a period archived earlier whose detached tables are gone."""

    def __init__(self, period: str, tables: Sequence[str]) -> None:
        super().__init__(
            f"period {period} is archived and its detached tables ({', '.join(tables)}) are no longer in the "
            "database: nothing can be exported now; its rows are in the export or dump made before they were dropped",
            field="period",
            period=period,
        )


class PeriodArchived(BadUserInput):
    """The period's ledger rows were detached for archive: its lines are in the archive."""

    def __init__(self, period: str) -> None:
        super().__init__(
            f"period {period} is archived: its ledger lines are no longer in the ledger; read them in the "
            "archive's export (exchange ledger archive --export DIR), and its statements as issued",
            field="period",
            period=period,
        )
