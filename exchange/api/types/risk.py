"""GraphQL types of the risk decision log (settlement staff only)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from exchange.api.permissions import authorize_fields, requires
from exchange.auth.scopes import Scope
from exchange.risk.models import RiskDecision as RiskDecisionRow


@strawberry.enum(
    description="What a risk gate (or staff reviewing a hold) decided, or how a hold ended otherwise: "
    "REJECT (rule `HOLD_EXPIRED`) when nobody reviewed it in time, CANCEL (rule `CANCELLED`) when a held "
    "redemption's member or publisher cancelled it (the reason says which)."
)
class RiskVerdict(Enum):
    ALLOW = strawberry.enum_value("ALLOW", description="A gate let it through.")
    REFUSE = strawberry.enum_value("REFUSE", description="A gate refused it; nothing was recorded or moved.")
    HOLD = strawberry.enum_value("HOLD", description="A gate held it for staff review.")
    APPROVE = strawberry.enum_value("APPROVE", description="Staff approved a hold: it went on.")
    REJECT = strawberry.enum_value(
        "REJECT", description="Staff rejected a hold, or it ended unreviewed (`HOLD_EXPIRED`): FAILED, nothing moved."
    )
    CANCEL = strawberry.enum_value("CANCEL", description="Its member or publisher cancelled a held redemption.")


@strawberry.enum(description="What a risk decision was about.")
class RiskSubject(Enum):
    LINK = strawberry.enum_value("LINK", description="Linking an account (membership validation).")
    CONVERSION = strawberry.enum_value("CONVERSION", description="A conversion.")
    REDEMPTION = strawberry.enum_value("REDEMPTION", description="A redemption.")


@authorize_fields(requires(Scope.SETTLEMENT_READ))
@strawberry.type(description="One decision of the risk gates, with its reason; newest first in lists.")
class RiskDecision:
    id: strawberry.ID = strawberry.field(description="The decision's number; later decisions have larger ones.")
    subject: RiskSubject = strawberry.field(description="What it was about.")
    decision: RiskVerdict = strawberry.field(description="What was decided.")
    rule: str | None = strawberry.field(
        description="The rule that decided: an error code (`NAME_MISMATCH`, `COOLING_PERIOD`, "
        "`ACCOUNT_SUSPENDED`, ...), `VELOCITY_MEMBER`, `VELOCITY_ACCOUNT`, `HOLD_ABOVE` (a conversion "
        "held, or a redemption refused, above `hold_above_points`), `STAFF_REVIEW`, `HOLD_EXPIRED`, "
        "`CANCELLED`; null for an allow."
    )
    reason: str = strawberry.field(description="Why, in words (for a rejection, the reason staff gave).")
    member_id: strawberry.ID = strawberry.field(description="The member's exchange id.")
    program_id: strawberry.ID = strawberry.field(description="The program whose account (or gates) it is about.")
    member_ref: str = strawberry.field(description="The member's id at that program.")
    conversion_id: strawberry.ID | None = strawberry.field(
        description="The conversion it is about (a refused one was never recorded: its id is only here); else null."
    )
    redemption_id: strawberry.ID | None = strawberry.field(
        description="The redemption it is about (a refused one was never recorded: its id is only here)."
    )
    points: int | None = strawberry.field(description="The points at stake; null for a link.")
    decided_by: str | None = strawberry.field(
        description="The staff member who approved or rejected; null: the gates, an expiry or a cancel."
    )
    decided_at: datetime = strawberry.field(description="When.")

    @classmethod
    def from_row(cls, row: RiskDecisionRow) -> RiskDecision:
        return cls(
            id=strawberry.ID(str(row.id)),
            subject=RiskSubject(row.subject),
            decision=RiskVerdict(row.decision),
            rule=row.rule,
            reason=row.reason,
            member_id=strawberry.ID(row.member_id),
            program_id=strawberry.ID(row.program_id),
            member_ref=row.member_ref,
            conversion_id=strawberry.ID(row.conversion_id) if row.conversion_id else None,
            redemption_id=strawberry.ID(row.redemption_id) if row.redemption_id else None,
            points=row.points,
            decided_by=row.decided_by,
            decided_at=row.decided_at,
        )
