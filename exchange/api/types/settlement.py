"""GraphQL types of settlement: periods, positions, statements, reconciliations and breaks.

Settlement staff see every participant; a partner sees its own statement, position,
reconciliation and breaks, and of a period only its state. Money is an exact decimal string of
the settlement currency, from the participant's side: positive is owed to it, negative it owes.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.inputs import numeric_id
from exchange.api.permissions import (
    PUBLIC,
    Rule,
    argument,
    authorize,
    authorize_fields,
    own_program,
    requires,
    source,
)
from exchange.api.scalars import PointTotal
from exchange.api.types.money import Money, replaced_by_money
from exchange.api.types.pages import After, Page, replaced_by_page
from exchange.auth.scopes import Scope
from exchange.coalition.models import CoalitionLiability as CoalitionLiabilityRow
from exchange.ledger.periods import PeriodStatus as PeriodStatusValue
from exchange.money import Currency
from exchange.services.requests import page_size
from exchange.services.settlement import BreakView, PositionView, ReconciliationView, ResolvedBreaks
from exchange.settlement.break_kinds import BreakKind as BreakKindValue
from exchange.settlement.break_kinds import Resolution as ResolutionValue
from exchange.settlement.breaks import MAX_SELECTED_IDS
from exchange.settlement.breaks import BreakSelection as BreakSelectionValue
from exchange.settlement.closing import PeriodReport
from exchange.settlement.issued import IssuedFigures
from exchange.settlement.models import IssuedStatement as IssuedStatementRow
from exchange.settlement.models import RecordsSource as RecordsSourceValue
from exchange.settlement.models import SettlementPosition as PositionRow
from exchange.settlement.netting import Payments as PaymentsValue
from exchange.settlement.statements import CounterpartyTotals as CounterpartyTotalsValue
from exchange.settlement.statements import Statement as StatementValue
from exchange.settlement.statements import StatementLine as StatementLineValue

#: Staff, with either settlement scope (a write-only tool reads what it changed).
STAFF: Rule = requires(Scope.SETTLEMENT_READ, Scope.SETTLEMENT_WRITE)
#: Staff, and the partner the object belongs to.
STAFF_OR_OWNER: Rule = STAFF | requires(Scope.PARTNER_READ, Scope.PARTNER_WRITE) & own_program(source("partner_id"))
#: Staff, and any partner (the state of a period is no partner's secret).
STAFF_OR_PARTNER: Rule = STAFF | requires(Scope.PARTNER_READ, Scope.PARTNER_WRITE)

MAX_PAGE = 1000
#: How many of a statement's lines a page holds.
LinesFirst = Annotated[int, strawberry.argument(description=f"How many, from 1 to {MAX_PAGE} (else `BAD_USER_INPUT`).")]


def _money(currency: Currency, minor: int | None) -> Decimal | None:
    return None if minor is None else currency.from_minor(minor)


def _as_money(currency: Currency, minor: int | None) -> Money | None:
    return None if minor is None else Money.of_minor(minor, currency)


def break_id_of(value: str, *, field: str) -> int:
    """A break's id from its GraphQL ID."""
    return numeric_id(value, what="a break id", field=field)


@strawberry.enum(
    description="Where a settlement period stands: OPEN, CLOSING, CLOSED; and, for one partner, "
    "SIGNED_OFF once staff have signed it off. An archived period stays CLOSED (`SettlementPeriod.archivedAt`)."
)
class PeriodStatus(Enum):
    OPEN = strawberry.enum_value(PeriodStatusValue.OPEN.value, description="Postings go into it.")
    CLOSING = strawberry.enum_value(
        PeriodStatusValue.CLOSING.value,
        description="Being closed: nothing more posts into it while its figures are computed (closing it again finishes the job if a closing stopped half-way).",
    )
    CLOSED = strawberry.enum_value(
        PeriodStatusValue.CLOSED.value,
        description="Closed: nothing more is posted into it; its positions and statements are final.",
    )
    SIGNED_OFF = strawberry.enum_value(
        "SIGNED_OFF",
        description="For one partner: settlement staff signed off its reconciliation; its period is final.",
    )


@strawberry.enum(description="How a partner's line, or a reference of the ledger, failed to match.")
class BreakKind(Enum):
    _value_: str  # .value is the string: strawberry unwraps enum_value (mypy would see its wrapper)
    MISSING_IN_LEDGER = strawberry.enum_value(
        BreakKindValue.MISSING_IN_LEDGER.value,
        description="A line of the partner's file names a reference the ledger does not have in the period.",
    )
    MISSING_IN_PARTNER = strawberry.enum_value(
        BreakKindValue.MISSING_IN_PARTNER.value,
        description="The ledger has a reference in the period that no line of the partner's file names.",
    )
    AMOUNT_MISMATCH = strawberry.enum_value(
        BreakKindValue.AMOUNT_MISMATCH.value, description="Both have the reference, with different amounts."
    )
    DUPLICATE = strawberry.enum_value(
        BreakKindValue.DUPLICATE.value,
        description="The partner's file names the reference again: each line after its first is a break.",
    )


@strawberry.enum(description="Where an import's records came from.")
class RecordsSource(Enum):
    _value_: str  # .value is the string: strawberry unwraps enum_value (mypy would see its wrapper)
    PARTNER_FILE = strawberry.enum_value(
        RecordsSourceValue.PARTNER_FILE.value, description="The partner's file, imported by `importedBy`."
    )
    COALITION_BOOK = strawberry.enum_value(
        RecordsSourceValue.COALITION_BOOK.value,
        description="The coalition point's records, written from the exchange's own book of the point "
        "(`reconcileCoalitionPoint`) at `importedBy`'s request.",
    )


@strawberry.enum(description="How settlement staff resolve a break.")
class Resolution(Enum):
    _value_: str  # .value is the string: strawberry unwraps enum_value (mypy would see its wrapper)
    ACCEPT_LEDGER = strawberry.enum_value(
        ResolutionValue.ACCEPT_LEDGER.value, description="The ledger is right; nothing is posted."
    )
    ADJUST = strawberry.enum_value(
        ResolutionValue.ADJUST.value,
        description="The partner's figure is right: the difference is posted into the next open period.",
    )


@strawberry.input(description="The adjustment to post when resolving a break with ADJUST.")
class AdjustmentInput:
    amount: Decimal | None = strawberry.field(
        default=None,
        description="Added to the partner's position (negative: the partner owes more). Default: "
        "what makes the ledger agree with the partner's line.",
    )
    counterparty: strawberry.ID | None = strawberry.field(
        default=None,
        description="Who takes the other side: a program id, or EXCHANGE. Default: the partner "
        "line's counterparty, else the only one the reference's transactions have.",
    )


@strawberry.input(
    description="Breaks of a partner's current reconciliation: the `ids` named, or else every open "
    "break the filters match (no filter: every open break)."
)
class BreakSelectionInput:
    ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description=f"At most {MAX_SELECTED_IDS} break ids; not with filters."
    )
    kind: BreakKind | None = strawberry.field(default=None, description="Only open breaks of this class.")
    counterparty: strawberry.ID | None = strawberry.field(
        default=None,
        description="Only open breaks whose line in the partner's file names this counterparty: a program id, or "
        "EXCHANGE (any other is refused).",
    )

    def value(self) -> BreakSelectionValue:
        return BreakSelectionValue(
            ids=None if self.ids is None else tuple(break_id_of(str(i), field="selection.ids") for i in self.ids),
            kind=BreakKindValue(self.kind.value) if self.kind else None,
            counterparty=str(self.counterparty) if self.counterparty is not None else None,
        )


@strawberry.input(description="The adjustments to post when resolving many breaks with ADJUST.")
class BulkAdjustmentInput:
    counterparty: strawberry.ID | None = strawberry.field(
        default=None,
        description="Who takes the other side of every adjustment: a program id, or EXCHANGE. Default: "
        "each break's own, as for resolveBreak. Each adjustment's amount is what makes the ledger agree "
        "with the partner's line.",
    )


@authorize_fields(STAFF_OR_OWNER)
@strawberry.type(description="A participant's figures for a closed period, and its sign-off.")
class SettlementPosition:
    partner_id: strawberry.ID = strawberry.field(description="A program id, or EXCHANGE for the exchange's fees.")
    status: PeriodStatus = strawberry.field(description="CLOSED, or SIGNED_OFF for this partner.")
    opening_position: Decimal = strawberry.field(
        description="Carried in: the net positions of every earlier period.",
        deprecation_reason=replaced_by_money("opening"),
    )
    payable: Decimal = strawberry.field(
        description="What it owed its counterparties in the period, gross.",
        deprecation_reason=replaced_by_money("grossPayable"),
    )
    receivable: Decimal = strawberry.field(
        description="What its counterparties owed it in the period, gross.",
        deprecation_reason=replaced_by_money("grossReceivable"),
    )
    net_position: Decimal = strawberry.field(
        description="receivable − payable: what it settles for the period.",
        deprecation_reason=replaced_by_money("netAmount"),
    )
    closing_position: Decimal = strawberry.field(
        description="openingPosition + netPosition.", deprecation_reason=replaced_by_money("closing")
    )
    opening: Money = strawberry.field(description="Carried in: the net positions of every earlier period.")
    gross_payable: Money = strawberry.field(description="What it owed its counterparties in the period, gross.")
    gross_receivable: Money = strawberry.field(description="What its counterparties owed it in the period, gross.")
    net_amount: Money = strawberry.field(
        description="grossReceivable − grossPayable: its net position, what it settles for the period."
    )
    closing: Money = strawberry.field(description="opening + netAmount.")
    signed_off_at: datetime | None = strawberry.field(description="When staff signed the period off for it.")
    sign_off_note: str | None = strawberry.field(
        description="The note staff kept with the sign-off (at most 500 characters), as they wrote it; "
        "the partner reads it too (its console's statements list shows it). Null without one."
    )
    signed_off_by_client: strawberry.Private[str | None]

    @strawberry.field(description="Who signed it off (staff only).", extensions=[authorize(STAFF)])
    def signed_off_by(self) -> str | None:
        return self.signed_off_by_client

    @classmethod
    def from_row(cls, row: PositionRow, currency: Currency) -> SettlementPosition:
        money = currency.from_minor
        return cls(
            partner_id=strawberry.ID(row.participant),
            status=PeriodStatus.CLOSED if row.signed_off_at is None else PeriodStatus.SIGNED_OFF,
            opening_position=money(row.opening),
            payable=money(row.payable),
            receivable=money(row.receivable),
            net_position=money(row.net),
            closing_position=money(row.opening + row.net),
            opening=Money.of_minor(row.opening, currency),
            gross_payable=Money.of_minor(row.payable, currency),
            gross_receivable=Money.of_minor(row.receivable, currency),
            net_amount=Money.of_minor(row.net, currency),
            closing=Money.of_minor(row.opening + row.net, currency),
            signed_off_at=row.signed_off_at,
            sign_off_note=row.sign_off_note,
            signed_off_by_client=row.signed_off_by,
        )

    @classmethod
    def from_view(cls, view: PositionView) -> SettlementPosition:
        return cls.from_row(view.position, view.currency)


@authorize_fields(STAFF)
@strawberry.type(description="What one participant owed another over a closed period, gross.")
class Obligation:
    debtor: strawberry.ID = strawberry.field(description="Who owed: a program id, or EXCHANGE.")
    creditor: strawberry.ID = strawberry.field(description="Whom it owed: a program id, or EXCHANGE.")
    amount: Decimal = strawberry.field(
        description="What the debtor owed the creditor, in the settlement currency.",
        deprecation_reason=replaced_by_money("value"),
    )
    value: Money = strawberry.field(description="What the debtor owed the creditor.")


@authorize_fields(STAFF)
@strawberry.type(description="A number of payments and the money they move.")
class Payments:
    count: int = strawberry.field(description="How many payments.")
    total: Decimal = strawberry.field(
        description="The money they move, in the settlement currency.",
        deprecation_reason=replaced_by_money("totalValue"),
    )
    total_value: Money = strawberry.field(description="The money they move.")

    @classmethod
    def of(cls, payments: PaymentsValue, currency: Currency) -> Payments:
        return cls(
            count=payments.count,
            total=currency.from_minor(payments.total),
            total_value=Money.of_minor(payments.total, currency),
        )


@authorize_fields(STAFF)
@strawberry.type(
    description="What netting saves: the payments that settle the period gross, with bilateral "
    "netting (each pair pays its difference) and with multilateral netting (each participant "
    "pays or is paid its net position once)."
)
class NettingSaving:
    gross: Payments = strawberry.field(description="One payment per obligation.")
    bilateral: Payments = strawberry.field(description="One payment per pair of participants: their difference.")
    multilateral: Payments = strawberry.field(description="One payment per participant with a net position.")


@authorize_fields(PUBLIC)
@strawberry.type(
    description="The coalition point's outstanding liability at the end of a closed period: the points "
    "members held (the ledger's member-points balance of the point) times the value of a point, "
    "rounded half-even to the currency's minor unit."
)
class CoalitionLiability:
    program_id: strawberry.ID = strawberry.field(description="The coalition point's program.")
    points: PointTotal = strawberry.field(description="Coalition points outstanding at the period's end.")
    point_value: Decimal = strawberry.field(description="The value of one point at the closing.")
    liability: Money = strawberry.field(description="points × pointValue.")

    @classmethod
    def of(cls, row: CoalitionLiabilityRow, currency: Currency) -> CoalitionLiability:
        return cls(
            program_id=strawberry.ID(row.program_id),
            points=PointTotal(row.points),
            point_value=row.point_value,
            liability=Money.of_minor(row.liability_minor, currency),
        )


@authorize_fields(STAFF_OR_PARTNER)
@strawberry.type(description="A settlement period and, once closed, its figures.")
class SettlementPeriod:
    period: str = strawberry.field(description="YYYY-MM: the period's first month.")
    status: PeriodStatus = strawberry.field(description="Where it stands.")
    starts_at: datetime = strawberry.field(description="Its first instant (in the settlement time zone's calendar).")
    ends_at: datetime = strawberry.field(description="The first instant after it.")
    closing_started_at: datetime | None = strawberry.field(
        description="When closing started (`closePeriod`); null while OPEN."
    )
    closed_at: datetime | None = strawberry.field(
        description="When it closed; null until CLOSED, and for a period nothing was posted into "
        "before one that closed, which counts as CLOSED without closing."
    )
    archived_at: datetime | None = strawberry.field(
        description="When it was archived (`exchange ledger archive`, once every partner signed it off): its "
        "ledger lines left the ledger, its figures and statements stay as issued, and nothing of it changes "
        "any more; `status` stays CLOSED (the console shows it as Archived). Null: not archived."
    )
    report: strawberry.Private[PeriodReport]

    @strawberry.field(description="Who started closing it (staff only).", extensions=[authorize(STAFF)])
    def closed_by(self) -> str | None:
        return self.report.row.closed_by if self.report.row else None

    @strawberry.field(description="Every participant's position (staff only).", extensions=[authorize(STAFF)])
    def positions(self) -> list[SettlementPosition] | None:
        return [SettlementPosition.from_row(row, self.report.currency) for row in self.report.positions]

    @strawberry.field(
        description="One participant's position: staff, and the partner itself.",
        extensions=[
            authorize(STAFF | requires(Scope.PARTNER_READ, Scope.PARTNER_WRITE) & own_program(argument("partner_id")))
        ],
    )
    def position(
        self,
        partner_id: Annotated[
            strawberry.ID, strawberry.argument(description="A program id (a partner names its own), or EXCHANGE.")
        ],
    ) -> SettlementPosition | None:
        found = [row for row in self.report.positions if row.participant == str(partner_id)]
        return SettlementPosition.from_row(found[0], self.report.currency) if found else None

    @strawberry.field(description="Who owed whom, gross, before netting (staff only).", extensions=[authorize(STAFF)])
    def obligations(self) -> list[Obligation] | None:
        money = self.report.currency.from_minor
        return [
            Obligation(
                debtor=strawberry.ID(o.debtor),
                creditor=strawberry.ID(o.creditor),
                amount=money(o.amount),
                value=Money.of_minor(o.amount, self.report.currency),
            )
            for o in self.report.obligations
        ]

    @strawberry.field(
        description="The participants whose statement is not issued yet (staff only): empty once every "
        "statement is issued, null until the period is CLOSED. Closing issues the statements once the period "
        "is CLOSED; after a closing cut while issuing, the rest stay listed here until `closePeriod` is asked "
        "again or each one's first download (`statement`) issues it.",
        extensions=[authorize(STAFF)],
    )
    def statements_not_issued(self) -> list[strawberry.ID] | None:
        if self.report.status is not PeriodStatusValue.CLOSED:
            return None
        return [strawberry.ID(participant) for participant in self.report.not_issued]

    @strawberry.field(description="The payments netting saves (staff only).", extensions=[authorize(STAFF)])
    def netting(self) -> NettingSaving | None:
        saving = self.report.saving
        if saving is None:
            return None
        currency = self.report.currency
        return NettingSaving(
            gross=Payments.of(saving.gross, currency),
            bilateral=Payments.of(saving.bilateral, currency),
            multilateral=Payments.of(saving.multilateral, currency),
        )

    @strawberry.field(
        description="The coalition point's outstanding liability at the period's end, recorded at its "
        "closing (null before, or when the coalition has no point)."
    )
    def coalition_liability(self) -> CoalitionLiability | None:
        row = self.report.coalition_liability
        return None if row is None else CoalitionLiability.of(row, self.report.currency)

    @classmethod
    def from_report(cls, report: PeriodReport, starts_at: datetime, ends_at: datetime) -> SettlementPeriod:
        return cls(
            period=report.period,
            status=PeriodStatus(report.status.value),
            starts_at=starts_at,
            ends_at=ends_at,
            closing_started_at=report.row.closing_started_at if report.row else None,
            closed_at=report.row.closed_at if report.row else None,
            archived_at=report.archived_at,
            report=report,
        )


@authorize_fields(STAFF_OR_OWNER)
@strawberry.type(
    description="One line of a statement: what one transaction did between the partner and one counterparty."
)
class StatementLine:
    transaction_id: strawberry.ID = strawberry.field(description="The ledger transaction's id.")
    reference: str = strawberry.field(description="Its business reference: what the partner's records name it by.")
    kind: str = strawberry.field(description="conversion, redemption, adjustment, reversal, …")
    category: str = strawberry.field(
        description="The kind, or `fee` for what is owed between a partner and the exchange."
    )
    effective_at: datetime = strawberry.field(description="When it happened (a late item keeps its date).")
    effective_period: str = strawberry.field(
        description="The period effectiveAt falls in: the statement's own, or an earlier one for a late item "
        "(one that happened in a period already closed when it was posted)."
    )
    reverses: strawberry.ID | None = strawberry.field(
        description="The transaction this line's transaction reverses (a cancelled redemption's), or null."
    )
    reverses_period: str | None = strawberry.field(
        description="The period the reversed transaction was posted into, or null: where its line is."
    )
    counterparty: strawberry.ID = strawberry.field(description="The other side: a program id, or EXCHANGE.")
    amount: Decimal = strawberry.field(
        description="What the line moves, from the partner's side (positive: owed to it), in the settlement currency.",
        deprecation_reason=replaced_by_money("value"),
    )
    value: Money = strawberry.field(description="What the line moves, from the partner's side (positive: owed to it).")
    partner_id: strawberry.Private[str]

    @classmethod
    def of(cls, line: StatementLineValue, statement: StatementValue) -> StatementLine:
        currency, reverses = statement.currency, line.reverses
        return cls(
            transaction_id=strawberry.ID(line.transaction_id),
            reference=line.reference,
            kind=line.kind,
            category=line.category,
            effective_at=line.effective_at,
            effective_period=statement.effective_period(line),
            reverses=None if reverses is None else strawberry.ID(reverses.transaction_id),
            reverses_period=None if reverses is None else reverses.period,
            counterparty=strawberry.ID(line.counterparty),
            amount=currency.from_minor(line.amount),
            value=Money.of_minor(line.amount, currency),
            partner_id=statement.participant,
        )


@authorize_fields(STAFF_OR_OWNER)
@strawberry.type(description="A statement's totals with one counterparty.")
class CounterpartyTotals:
    counterparty: strawberry.ID = strawberry.field(description="The other side: a program id, or EXCHANGE.")
    payable: Decimal = strawberry.field(
        description="What the partner owed the counterparty, gross, in the settlement currency.",
        deprecation_reason=replaced_by_money("grossPayable"),
    )
    receivable: Decimal = strawberry.field(
        description="What the counterparty owed the partner, gross, in the settlement currency.",
        deprecation_reason=replaced_by_money("grossReceivable"),
    )
    net: Decimal = strawberry.field(
        description="receivable − payable, in the settlement currency.",
        deprecation_reason=replaced_by_money("netAmount"),
    )
    gross_payable: Money = strawberry.field(description="What the partner owed the counterparty, gross.")
    gross_receivable: Money = strawberry.field(description="What the counterparty owed the partner, gross.")
    net_amount: Money = strawberry.field(description="grossReceivable − grossPayable.")
    partner_id: strawberry.Private[str]

    @classmethod
    def of(cls, totals: CounterpartyTotalsValue, partner_id: str, currency: Currency) -> CounterpartyTotals:
        money = currency.from_minor
        return cls(
            counterparty=strawberry.ID(totals.counterparty),
            payable=money(totals.payable),
            receivable=money(totals.receivable),
            net=money(totals.net),
            gross_payable=Money.of_minor(totals.payable, currency),
            gross_receivable=Money.of_minor(totals.receivable, currency),
            net_amount=Money.of_minor(totals.net, currency),
            partner_id=partner_id,
        )


@authorize_fields(STAFF_OR_OWNER)
@strawberry.type(description="A participant's statement of a closed period.")
class Statement:
    partner_id: strawberry.ID = strawberry.field(description="A program id, or EXCHANGE for the exchange's fees.")
    period: str = strawberry.field(description="YYYY-MM.")
    currency: str = strawberry.field(
        description="ISO 4217 code of its bare decimal amounts.", deprecation_reason="Every Money names its currency."
    )
    starts_at: datetime = strawberry.field(description="The period's first instant (the JSON's `period.start`).")
    ends_at: datetime = strawberry.field(description="The first instant after the period (`period.end`).")
    time_zone: str = strawberry.field(
        description="The IANA time zone whose calendar months cut the period (`period.timeZone`), e.g. Asia/Taipei."
    )
    closed_at: datetime = strawberry.field(description="When the period closed.")
    opening_position: Decimal = strawberry.field(
        description="Carried in: the net positions of every earlier period.",
        deprecation_reason=replaced_by_money("opening"),
    )
    payable: Decimal = strawberry.field(
        description="What it owed its counterparties in the period, gross, in the settlement currency.",
        deprecation_reason=replaced_by_money("grossPayable"),
    )
    receivable: Decimal = strawberry.field(
        description="What its counterparties owed it in the period, gross, in the settlement currency.",
        deprecation_reason=replaced_by_money("grossReceivable"),
    )
    net_position: Decimal = strawberry.field(
        description="receivable − payable: the multilateral net position.",
        deprecation_reason=replaced_by_money("netAmount"),
    )
    closing_position: Decimal = strawberry.field(
        description="openingPosition + netPosition.", deprecation_reason=replaced_by_money("closing")
    )
    opening: Money = strawberry.field(description="Carried in: the net positions of every earlier period.")
    gross_payable: Money = strawberry.field(description="What it owed its counterparties in the period, gross.")
    gross_receivable: Money = strawberry.field(description="What its counterparties owed it in the period, gross.")
    net_amount: Money = strawberry.field(description="grossReceivable − grossPayable: the multilateral net position.")
    closing: Money = strawberry.field(description="opening + netAmount.")
    counterparties: list[CounterpartyTotals] = strawberry.field(description="Its totals with each counterparty.")
    coalition_liability: CoalitionLiability | None = strawberry.field(
        description="The coalition point's outstanding liability at the period's end, coalition-wide "
        "(null when the coalition has no point)."
    )
    issued_at: datetime = strawberry.field(
        description="When the exchange issued it: at the period's closing (for a period closed before "
        "statements were kept, at its first download). What it shows, `json` and `csv` never change after; `jws` "
        "neither, unless the key that signed it is withdrawn as compromised (`resignedAt`)."
    )
    resigned_at: datetime | None = strawberry.field(
        description="When `jws` was replaced by the signature of the key that replaced a statement-signing key "
        "withdrawn as compromised (whose signatures no longer verify); `json` is the same bytes. Null: signed "
        "once, when issued."
    )
    document_version: int = strawberry.field(
        description="The `version` of `json` as issued: a statement keeps the version it was issued with."
    )
    statement: strawberry.Private[IssuedFigures]

    @strawberry.field(description="How many lines it has (`linePage` pages through them).")
    async def line_count(self, info: Info[Context, None]) -> int:
        return await info.context.services.settlement.statement_line_count(self.statement.participant, self.period)

    @strawberry.field(
        description=f"Its lines in order, `first` (at most {MAX_PAGE}) from `offset`.",
        deprecation_reason=replaced_by_page("linePage"),
    )
    async def lines(
        self,
        info: Info[Context, None],
        first: LinesFirst = 100,
        offset: Annotated[
            int, strawberry.argument(description="Lines to skip first (0, or less: from the first line).")
        ] = 0,
    ) -> list[StatementLine]:
        chosen = await info.context.services.settlement.statement_lines_after(
            self.statement.participant, self.period, number=max(0, offset), first=page_size(first, maximum=MAX_PAGE)
        )
        return [StatementLine.of(line, self.statement) for line in chosen]

    @strawberry.field(
        description="Its lines in order, as `json` lists them: `first` of them after the cursor `after` (one "
        "given out for this statement)."
    )
    async def line_page(
        self, info: Info[Context, None], first: LinesFirst = 100, after: After = None
    ) -> Page[StatementLine]:
        page = await info.context.services.settlement.statement_lines(
            self.statement.participant, self.period, first=page_size(first, maximum=MAX_PAGE), after=after
        )
        return Page.of(page, lambda line: StatementLine.of(line, self.statement))

    @strawberry.field(
        description="The canonical JSON document (keys sorted, no spaces) as issued: what `jws` signs, "
        "the same bytes at every download."
    )
    async def json(self, info: Info[Context, None]) -> str:
        return (await self._stored(info)).document

    @strawberry.field(
        description="Every figure of `json` as CSV (RFC 4180, one row per figure; partners/SETTLEMENT.md "
        "names its records). A text field a spreadsheet would run as a formula (beginning with `=`, `+`, `-`, "
        "`@`, a tab or a carriage return), or beginning with `'`, has one `'` added before it; figures never do."
    )
    async def csv(self, info: Info[Context, None]) -> str:
        # From the statement's head and lines table, not by parsing its whole stored document.
        pieces = await info.context.services.settlement.statement_csv(self.statement.participant, self.period)
        return "".join([piece async for piece in pieces])

    @strawberry.field(
        description="`json` signed (RS256, compact serialization, `typ` settlement-statement+json) when "
        "it was issued, with the exchange's statement-signing key `keyId` active then: the same signature at "
        "every download. Anyone verifies it with the statement keys published at "
        "/.well-known/statement-keys.json alone, for as long as the exchange keeps statements (seven years "
        "at least), whatever keys were rotated since; only if that key is withdrawn as compromised is the "
        "document signed again, by the key that replaced it (`resignedAt`)."
    )
    async def jws(self, info: Info[Context, None]) -> str:
        return (await self._stored(info)).jws

    @strawberry.field(description="The `kid` of the statement-signing key that signed `jws`.")
    def key_id(self) -> str:
        return self.statement.key_id

    async def _stored(self, info: Info[Context, None]) -> IssuedStatementRow:
        """The stored document and signature, read when a field asks for them."""
        return await info.context.loaders.issued_statements.load((self.statement.participant, self.period))

    @classmethod
    def of(cls, statement: IssuedFigures) -> Statement:
        """The statement as issued: its figures are read from the stored document."""
        money = statement.currency.from_minor
        return cls(
            partner_id=strawberry.ID(statement.participant),
            period=statement.period,
            currency=statement.currency.code,
            starts_at=statement.starts_at,
            ends_at=statement.ends_at,
            time_zone=statement.calendar.timezone.key,
            closed_at=statement.closed_at,
            opening_position=money(statement.opening),
            payable=money(statement.payable),
            receivable=money(statement.receivable),
            net_position=money(statement.net),
            closing_position=money(statement.closing),
            opening=Money.of_minor(statement.opening, statement.currency),
            gross_payable=Money.of_minor(statement.payable, statement.currency),
            gross_receivable=Money.of_minor(statement.receivable, statement.currency),
            net_amount=Money.of_minor(statement.net, statement.currency),
            closing=Money.of_minor(statement.closing, statement.currency),
            counterparties=[
                CounterpartyTotals.of(t, statement.participant, statement.currency) for t in statement.counterparties
            ],
            coalition_liability=None
            if statement.coalition_liability is None
            else CoalitionLiability.of(statement.coalition_liability, statement.currency),
            issued_at=statement.issued_at,
            resigned_at=statement.resigned_at,
            document_version=statement.version,
            statement=statement,
        )


@authorize_fields(STAFF_OR_OWNER)
@strawberry.type(description="How staff resolved a break.")
class BreakResolution:
    resolution: Resolution = strawberry.field(description="How it was resolved.")
    reason: str = strawberry.field(description="Why, as staff wrote it.")
    resolved_at: datetime = strawberry.field(description="When.")
    adjustment: Decimal | None = strawberry.field(
        description="ADJUST: what was added to the partner's position.",
        deprecation_reason=replaced_by_money("adjustmentValue"),
    )
    adjustment_value: Money | None = strawberry.field(description="ADJUST: what was added to the partner's position.")
    counterparty: strawberry.ID | None = strawberry.field(description="ADJUST: who took the other side.")
    transaction_id: strawberry.ID | None = strawberry.field(
        description="ADJUST: the adjustment's ledger transaction (reference `break:<id>`), in the next open period."
    )
    partner_id: strawberry.Private[str]
    resolved_by_client: strawberry.Private[str]

    @strawberry.field(description="Who resolved it (staff only).", extensions=[authorize(STAFF)])
    def resolved_by(self) -> str | None:
        return self.resolved_by_client


@authorize_fields(STAFF_OR_OWNER)
@strawberry.type(description="A line of the partner's records, or a reference of the ledger, that did not match.")
class ReconciliationBreak:
    id: strawberry.ID = strawberry.field(description="The break's number: `breakId` in `resolveBreak`.")
    kind: BreakKind = strawberry.field(description="How it failed to match.")
    reference: str = strawberry.field(description="The business reference (`conversion:<id>`, ...) it is about.")
    line: int | None = strawberry.field(description="Its line in the partner's file (none: MISSING_IN_PARTNER).")
    partner_amount: Decimal | None = strawberry.field(
        description="The amount on the partner's line, in the settlement currency.",
        deprecation_reason=replaced_by_money("partnerValue"),
    )
    ledger_amount: Decimal | None = strawberry.field(
        description="The partner's legs for the reference, summed.", deprecation_reason=replaced_by_money("ledgerValue")
    )
    difference: Decimal = strawberry.field(
        description="What the break puts between `recordsTotal` and `ledgerTotal`, as `differenceValue`.",
        deprecation_reason=replaced_by_money("differenceValue"),
    )
    partner_value: Money | None = strawberry.field(description="The amount on the partner's line.")
    ledger_value: Money | None = strawberry.field(description="The partner's legs for the reference, summed.")
    difference_value: Money = strawberry.field(
        description=(
            "What the break puts between the reconciliation's `recordsTotal` and `ledgerTotal`, from the "
            "partner's side: partnerValue − ledgerValue for an AMOUNT_MISMATCH, partnerValue for a "
            "MISSING_IN_LEDGER or DUPLICATE line (a line too many), − ledgerValue for a MISSING_IN_PARTNER "
            "reference. The breaks' differences sum to exactly `totalDifference`."
        )
    )
    counterparty: strawberry.ID | None = strawberry.field(description="As the partner's line named it.")
    partner_date: date | None = strawberry.field(description="As the partner's line dated it.")
    resolution: BreakResolution | None = strawberry.field(description="How staff resolved it; null while open.")
    next_step: str = strawberry.field(
        description=(
            "What to do next about it, as the break report's `next_step` column says it in English: for a "
            "partner's records, what its finance team does (and, once resolved, how its own records follow); "
            "for the coalition point's (`COALITION_BOOK`), what settlement staff do."
        )
    )
    partner_id: strawberry.Private[str]

    @classmethod
    def of(cls, view: BreakView) -> ReconciliationBreak:
        row, currency, done = view.row, view.currency, view.resolution
        difference = view.difference
        return cls(
            id=strawberry.ID(str(row.id)),
            kind=BreakKind(row.kind),
            reference=row.reference,
            line=row.line,
            partner_amount=_money(currency, row.partner_amount),
            ledger_amount=_money(currency, row.ledger_amount),
            difference=currency.from_minor(difference),
            partner_value=_as_money(currency, row.partner_amount),
            ledger_value=_as_money(currency, row.ledger_amount),
            difference_value=Money.of_minor(difference, currency),
            counterparty=strawberry.ID(row.counterparty) if row.counterparty else None,
            partner_date=row.partner_date,
            resolution=None
            if done is None
            else BreakResolution(
                resolution=Resolution(done.resolution),
                reason=done.reason,
                resolved_at=done.resolved_at,
                adjustment=_money(currency, done.amount),
                adjustment_value=_as_money(currency, done.amount),
                counterparty=strawberry.ID(done.counterparty) if done.counterparty else None,
                transaction_id=strawberry.ID(done.transaction_id) if done.transaction_id else None,
                partner_id=view.partner,
                resolved_by_client=done.resolved_by,
            ),
            next_step=view.next_step.english,
            partner_id=view.partner,
        )


@authorize_fields(STAFF_OR_OWNER)
@strawberry.type(
    description="The current import of a partner's records for a closed period, and how its lines compared."
)
class Reconciliation:
    id: strawberry.ID = strawberry.field(description="The import's id.")
    partner_id: strawberry.ID = strawberry.field(description="The partner whose records these are.")
    period: str = strawberry.field(description="YYYY-MM: the closed period the records are of.")
    sequence: int = strawberry.field(description="1 for the first import, then 2, … (the latest counts).")
    imported_at: datetime = strawberry.field(description="When the file was imported.")
    imported_by: str = strawberry.field(
        description="Who imported it: the OAuth client, the staff member in the console, or on the command line "
        "the name given with `--as` (by default `cli:<user name>`)."
    )
    source: RecordsSource = strawberry.field(description="Where the records came from.")
    file_sha256: str = strawberry.field(
        description="SHA-256 of the file as uploaded (as written from the book, for COALITION_BOOK)."
    )
    lines: int = strawberry.field(description="Records in the file.")
    matched: int = strawberry.field(description="Lines that matched the ledger by reference and amount.")
    missing_in_ledger: int = strawberry.field(description="Breaks of kind MISSING_IN_LEDGER.")
    missing_in_partner: int = strawberry.field(description="Breaks of kind MISSING_IN_PARTNER.")
    amount_mismatch: int = strawberry.field(description="Breaks of kind AMOUNT_MISMATCH.")
    duplicate: int = strawberry.field(description="Breaks of kind DUPLICATE.")
    unresolved_breaks: int = strawberry.field(description="Breaks not resolved yet: `signOffPeriod` needs 0.")
    records_total: Money = strawberry.field(
        description="The sum of every amount in the partner's file, duplicates included, from its side."
    )
    ledger_total: Money = strawberry.field(
        description="The ledger's figure for the partner and period: the statement's `netAmount`, to the cent."
    )
    total_difference: Money = strawberry.field(
        description=(
            "`recordsTotal` − `ledgerTotal`: the sum of the breaks' `differenceValue`, exactly (an AMOUNT_MISMATCH "
            "its difference, a MISSING_IN_LEDGER or DUPLICATE line its amount, a MISSING_IN_PARTNER reference "
            "minus the ledger's amount). Sums of exact amounts: nothing is rounded."
        )
    )
    view: strawberry.Private[ReconciliationView]

    @strawberry.field(description=f"Its breaks by id: `first` (at most {MAX_PAGE}) after the id `after`.")
    async def breaks(
        self,
        info: Info[Context, None],
        kind: Annotated[BreakKind | None, strawberry.argument(description="Only of this kind; null: all.")] = None,
        unresolved_only: Annotated[bool, strawberry.argument(description="Only those not resolved yet.")] = False,
        first: Annotated[
            int,
            strawberry.argument(description=f"How many, from 1 to {MAX_PAGE} (else `BAD_USER_INPUT`)."),
        ] = 100,
        after: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="The last break id of the previous page; null: from the first."),
        ] = None,
    ) -> list[ReconciliationBreak]:
        views = await info.context.services.settlement.breaks(
            self.view.reconciliation,
            kind=BreakKindValue(kind.value) if kind else None,
            unresolved_only=unresolved_only,
            first=page_size(first, maximum=MAX_PAGE),
            after=break_id_of(after, field="after") if after is not None else None,
        )
        return [ReconciliationBreak.of(view) for view in views]

    @classmethod
    def of(cls, view: ReconciliationView) -> Reconciliation:
        row = view.reconciliation
        return cls(
            id=strawberry.ID(row.id),
            partner_id=strawberry.ID(row.partner),
            period=row.period,
            sequence=row.sequence,
            imported_at=row.imported_at,
            imported_by=row.imported_by,
            source=RecordsSource(row.source),
            file_sha256=row.file_sha256,
            lines=row.lines,
            matched=row.matched,
            missing_in_ledger=row.missing_in_ledger,
            missing_in_partner=row.missing_in_partner,
            amount_mismatch=row.amount_mismatch,
            duplicate=row.duplicate,
            unresolved_breaks=view.unresolved,
            records_total=Money.of_minor(view.totals.records, view.currency),
            ledger_total=Money.of_minor(view.totals.ledger, view.currency),
            total_difference=Money.of_minor(view.totals.difference, view.currency),
            view=view,
        )


@authorize_fields(STAFF)
@strawberry.type(description="What resolving many breaks did.")
class BreaksResolved:
    resolved: int = strawberry.field(description="Breaks this request resolved.")
    unchanged: int = strawberry.field(description="Breaks it named that were already resolved the same way.")
    reconciliation: Reconciliation = strawberry.field(description="The reconciliation as it stands now.")

    @classmethod
    def of(cls, done: ResolvedBreaks) -> BreaksResolved:
        return cls(
            resolved=done.resolved, unchanged=done.unchanged, reconciliation=Reconciliation.of(done.reconciliation)
        )
