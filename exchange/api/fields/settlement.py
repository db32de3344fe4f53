"""Settlement: periods, closing, statements, partners' records, breaks and sign-off."""

from __future__ import annotations

import io
from typing import Annotated

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.inputs import PeriodName, Text
from exchange.api.permissions import Rule, argument, authorize, own_program, requires
from exchange.api.types.settlement import (
    AdjustmentInput,
    BreakSelectionInput,
    BreaksResolved,
    BulkAdjustmentInput,
    Reconciliation,
    ReconciliationBreak,
    Resolution,
    SettlementPeriod,
    SettlementPosition,
    Statement,
    break_id_of,
)
from exchange.auth.scopes import Scope
from exchange.settlement.break_kinds import Resolution as ResolutionValue
from exchange.settlement.breaks import BulkResolveRequest, ResolveRequest
from exchange.settlement.models import NOTE_LENGTH, REASON_LENGTH

PartnerId = Annotated[
    strawberry.ID, strawberry.argument(description="The partner's program id (a partner names its own).")
]
ParticipantId = Annotated[
    strawberry.ID,
    strawberry.argument(description="A program id (a partner names its own), or EXCHANGE for the exchange's fees."),
]
Reason = Annotated[
    str, Text(REASON_LENGTH), strawberry.argument(description="Why, recorded with the resolution (not blank).")
]

OWN_PARTNER_ID = own_program(argument("partner_id"))
#: Staff, and the partner whose id the field names.
READ_OWN: Rule = requires(Scope.SETTLEMENT_READ) | requires(Scope.PARTNER_READ) & OWN_PARTNER_ID
STAFF_WRITES: Rule = requires(Scope.SETTLEMENT_WRITE)
#: Who imports a partner's records: staff, and the partner itself (also the streamed upload's rule).
IMPORTS_RECORDS: Rule = requires(Scope.PARTNER_WRITE) & OWN_PARTNER_ID | STAFF_WRITES
#: Records sent inline to importPartnerRecords; a larger file goes through the streamed
#: upload (``PUT /settlement/records/…``), which has no such limit.
INLINE_RECORDS_LENGTH = 1 << 20


@strawberry.type
class SettlementQueries:
    @strawberry.field(
        description="A settlement period (`YYYY-MM`, its first month): its state for staff and "
        "partners, its figures for staff.",
        extensions=[authorize(requires(Scope.SETTLEMENT_READ) | requires(Scope.PARTNER_READ))],
    )
    async def settlement_period(self, info: Info[Context, None], period: PeriodName) -> SettlementPeriod | None:
        settlement = info.context.services.settlement
        report = await settlement.period(period)
        calendar = settlement.calendar
        return SettlementPeriod.from_report(report, calendar.starts_at(report.period), calendar.ends_at(report.period))

    @strawberry.field(
        description="A participant's statement of a closed period, signed: staff for anyone "
        "(`EXCHANGE` for the exchange's fees), a partner for itself. A period not closed is "
        "`PERIOD_NOT_CLOSED`.",
        extensions=[authorize(READ_OWN)],
    )
    async def statement(
        self, info: Info[Context, None], partner_id: ParticipantId, period: PeriodName
    ) -> Statement | None:
        return Statement.of(await info.context.services.settlement.statement_figures(str(partner_id), period))

    @strawberry.field(
        description="The current reconciliation of a partner's records for a closed period: "
        "staff, and the partner itself. A period not closed is `PERIOD_NOT_CLOSED`.",
        extensions=[authorize(READ_OWN)],
    )
    async def reconciliation(
        self, info: Info[Context, None], partner_id: PartnerId, period: PeriodName
    ) -> Reconciliation | None:
        return Reconciliation.of(await info.context.services.settlement.reconciliation(str(partner_id), period))


@strawberry.type
class SettlementMutations:
    @strawberry.mutation(
        description="Close a period that is over, once every earlier period with postings is "
        "closed: nothing posts into it afterwards (late items go to the next open period, keeping "
        "their date), and its obligations and net positions are computed. Closing again returns "
        "the same figures. A period not over yet is `BAD_USER_INPUT` (`extensions.endsAt`); one "
        "after a period with postings that is not closed, `PERIOD_NOT_CLOSED` naming that period "
        "(`extensions.period`).",
        extensions=[authorize(STAFF_WRITES)],
    )
    async def close_period(self, info: Info[Context, None], period: PeriodName) -> SettlementPeriod | None:
        settlement = info.context.services.settlement
        report = await settlement.close(period, by=info.context.caller().client_id)
        calendar = settlement.calendar
        return SettlementPeriod.from_report(report, calendar.starts_at(report.period), calendar.ends_at(report.period))

    @strawberry.mutation(
        description="Import a partner's records of a closed period (CSV: partners/SETTLEMENT.md, "
        "'Your records (CSV)') and reconcile them against the ledger. A malformed file is refused "
        "whole: `BAD_USER_INPUT` with `extensions.line` and `extensions.reason`, and nothing is "
        "imported. Importing again replaces the reconciliation until one of its breaks is resolved (then "
        "another file is `BAD_USER_INPUT`, `extensions.field` csv: it would reopen them); the "
        "current reconciliation's very file again (a retry after a lost answer) answers it as it stands, "
        "nothing imported, even once resolved or signed off. A period not closed is `PERIOD_NOT_CLOSED`; "
        "one the partner's sign-off made final, `PERIOD_CLOSED`. While another import of the partner's "
        "period, a resolution or its sign-off holds it for more than 5 seconds: `SERVICE_UNAVAILABLE`, "
        "`extensions.reason` `POSITION_BUSY`; send it again once that has finished.",
        extensions=[authorize(IMPORTS_RECORDS)],
    )
    async def import_partner_records(
        self,
        info: Info[Context, None],
        partner_id: PartnerId,
        period: PeriodName,
        csv: Annotated[
            str,
            Text(INLINE_RECORDS_LENGTH),
            strawberry.argument(
                description="The records as CSV text (partners/SETTLEMENT.md, 'Your records (CSV)'); a "
                "larger file goes through `PUT /settlement/records/{partnerId}/{period}`."
            ),
        ],
    ) -> Reconciliation | None:
        view = await info.context.services.settlement.import_records(
            str(partner_id), period, io.BytesIO(csv.encode()), by=info.context.caller().client_id
        )
        return Reconciliation.of(view)

    @strawberry.mutation(
        description="Reconcile the coalition point of a closed period: its records are written from "
        "the exchange's own book of the point (its operations and expiries; no partner sends them) and "
        "imported as `importPartnerRecords` imports a partner's file: `importedBy` is the caller, `source` "
        "COALITION_BOOK. "
        "Then resolve its breaks and sign it off as a partner's. Records the same as the current "
        "reconciliation's (a retry) answer it as it stands, as the same file does. `NOT_FOUND` when no point "
        "is declared; `PERIOD_NOT_CLOSED` for a period not closed, `PERIOD_CLOSED` once the point's period is "
        "signed off; once a break of the current reconciliation is resolved, other records are `BAD_USER_INPUT` "
        "with no `extensions.field` (they would reopen it; no input of this mutation holds them).",
        extensions=[authorize(STAFF_WRITES)],
    )
    async def reconcile_coalition_point(self, info: Info[Context, None], period: PeriodName) -> Reconciliation | None:
        return Reconciliation.of(
            await info.context.services.settlement.import_point_records(period, by=info.context.caller().client_id)
        )

    @strawberry.mutation(
        description="Resolve a break of a current reconciliation: ACCEPT_LEDGER (the ledger's "
        "figure stands) or ADJUST (a balanced adjustment between the partner and a counterparty "
        "is posted into the next open period, referenced `break:<id>`). A line the ledger has in another "
        "period (a late item) is never adjusted: the ledger counts it there already, so ADJUST is "
        "`BAD_USER_INPUT` (`extensions.field` resolution, `extensions.breaks`). Who and why are recorded. "
        "Resolving it again the same way answers the first resolution, nothing posted twice; another "
        "way is `IDEMPOTENCY_CONFLICT`. Once the partner's period is signed off, any but such a repeat is "
        "`PERIOD_CLOSED`.",
        extensions=[authorize(STAFF_WRITES)],
    )
    async def resolve_break(
        self,
        info: Info[Context, None],
        break_id: Annotated[strawberry.ID, strawberry.argument(description="The break (`ReconciliationBreak.id`).")],
        resolution: Annotated[Resolution, strawberry.argument(description="How to resolve it.")],
        reason: Reason,
        adjustment: Annotated[
            AdjustmentInput | None,
            strawberry.argument(description="ADJUST only: the amount and counterparty, where not the default."),
        ] = None,
    ) -> ReconciliationBreak | None:
        view = await info.context.services.settlement.resolve(
            ResolveRequest(
                break_id=break_id_of(str(break_id), field="breakId"),
                resolution=ResolutionValue(resolution.value),
                reason=reason,
                actor=info.context.caller().client_id,
                amount=adjustment.amount if adjustment else None,
                counterparty=str(adjustment.counterparty) if adjustment and adjustment.counterparty else None,
            )
        )
        return ReconciliationBreak.of(view)

    @strawberry.mutation(
        description="Resolve many breaks of a partner's current reconciliation the same way, for "
        "the same reason, in one request: all of them, or none. A selection by filters takes the "
        "breaks still open (repeating it resolves nothing more); ids already resolved the same "
        "way (adjusting: by its default amount, against the counterparty named, else its own default one, as "
        "recorded) are counted as unchanged, and one resolved "
        "otherwise refuses the request (`IDEMPOTENCY_CONFLICT`, `extensions.field` selection.ids). A period "
        "not closed is `PERIOD_NOT_CLOSED`. Once the partner has signed it off, a repeat still answers, as "
        "`resolveBreak`'s does: every break its ids name (or its filters match, one at least) resolved as "
        "it asks, nothing resolved now; anything else is `PERIOD_CLOSED`. ADJUST of a selection that takes a "
        "line the ledger has in another period is `BAD_USER_INPUT` (`extensions.field` selection, "
        "`extensions.breaks` naming them), nothing resolved: accept the ledger for those first.",
        extensions=[authorize(STAFF_WRITES)],
    )
    async def resolve_breaks(
        self,
        info: Info[Context, None],
        partner_id: PartnerId,
        period: PeriodName,
        selection: Annotated[BreakSelectionInput, strawberry.argument(description="Which breaks.")],
        resolution: Annotated[Resolution, strawberry.argument(description="How to resolve every one of them.")],
        reason: Reason,
        adjustment: Annotated[
            BulkAdjustmentInput | None,
            strawberry.argument(description="ADJUST only: the counterparty, where not each break's own."),
        ] = None,
    ) -> BreaksResolved | None:
        done = await info.context.services.settlement.resolve_many(
            BulkResolveRequest(
                partner=str(partner_id),
                period=period,
                selection=selection.value(),
                resolution=ResolutionValue(resolution.value),
                reason=reason,
                actor=info.context.caller().client_id,
                counterparty=str(adjustment.counterparty) if adjustment and adjustment.counterparty else None,
            )
        )
        return BreaksResolved.of(done)

    @strawberry.mutation(
        description="Sign off a partner's closed period, once its records are imported and every "
        "break is resolved (`UNRESOLVED_BREAKS` otherwise); nothing of it changes afterwards (importing, "
        "resolving, or signing off with another note or as another caller is `PERIOD_CLOSED`; the same "
        "sign-off sent again answers it as it stands). A period not closed is `PERIOD_NOT_CLOSED`.",
        extensions=[authorize(STAFF_WRITES)],
    )
    async def sign_off_period(
        self,
        info: Info[Context, None],
        partner_id: PartnerId,
        period: PeriodName,
        note: Annotated[
            str | None,
            Text(NOTE_LENGTH),
            strawberry.argument(description="A note kept with the sign-off; null: none."),
        ] = None,
    ) -> SettlementPosition | None:
        view = await info.context.services.settlement.sign_off(
            str(partner_id), period, by=info.context.caller().client_id, note=note
        )
        return SettlementPosition.from_view(view)
