"""Risk review: conversions and redemptions held by a gate, approving or rejecting them, and the
decision log."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.inputs import Text
from exchange.api.permissions import authorize, requires
from exchange.api.types.conversions import Conversion
from exchange.api.types.pages import After, Page, replaced_by_page
from exchange.api.types.rewards import Redemption
from exchange.api.types.risk import RiskDecision
from exchange.auth.scopes import Scope
from exchange.risk.decisions import MAX_PAGE as MAX_DECISIONS
from exchange.services.holds import REASON_MAX_LENGTH

HeldPage = Annotated[int, strawberry.argument(description="How many, from 1 to 500 (else `BAD_USER_INPUT`).")]
ConversionId = Annotated[strawberry.ID, strawberry.argument(description="A HELD conversion's id.")]
RedemptionId = Annotated[strawberry.ID, strawberry.argument(description="A HELD redemption's id.")]
Reason = Annotated[
    str,
    Text(REASON_MAX_LENGTH, min_length=1),
    strawberry.argument(
        description="Why, in words: the decision log keeps it, and the failure message quotes it (not blank)."
    ),
]


AboutConversion = Annotated[
    strawberry.ID | None, strawberry.argument(description="Only about this conversion; null: any.")
]
AboutRedemption = Annotated[
    strawberry.ID | None,
    strawberry.argument(description="Only about this redemption; null: any. Filters given combine."),
]
AboutMember = Annotated[
    strawberry.ID | None, strawberry.argument(description="Only about this member (exchange id); null: any.")
]
DecisionsPage = Annotated[
    int, strawberry.argument(description=f"How many, from 1 to {MAX_DECISIONS} (else `BAD_USER_INPUT`).")
]


async def _held_conversions(info: Info[Context, None], first: int, after: str | None) -> Page[Conversion]:
    page = await info.context.services.risk.held(first=first, after=after)
    currency = await info.context.currency()
    return Page.of(page, lambda row: Conversion.from_row(row, currency))


async def _held_redemptions(info: Info[Context, None], first: int, after: str | None) -> Page[Redemption]:
    page = await info.context.services.risk.held_redemptions(first=first, after=after)
    currency = await info.context.currency()
    return Page.of(page, lambda row: Redemption.from_row(row, currency))


async def _decisions(
    info: Info[Context, None],
    conversion_id: strawberry.ID | None,
    redemption_id: strawberry.ID | None,
    member_id: strawberry.ID | None,
    first: int,
    after: str | None,
) -> Page[RiskDecision]:
    page = await info.context.services.risk.decisions(
        conversion_id=None if conversion_id is None else str(conversion_id),
        redemption_id=None if redemption_id is None else str(redemption_id),
        member_id=None if member_id is None else str(member_id),
        first=first,
        after=after,
    )
    return Page.of(page, RiskDecision.from_row)


@strawberry.type
class RiskQueries:
    @strawberry.field(
        description="Conversions held by a risk gate for review, oldest first.",
        extensions=[authorize(requires(Scope.SETTLEMENT_READ))],
        deprecation_reason=replaced_by_page("heldConversionPage"),
    )
    async def held_conversions(self, info: Info[Context, None], first: HeldPage = 50) -> list[Conversion] | None:
        return (await _held_conversions(info, first, None)).items

    @strawberry.field(
        description="Conversions held by a risk gate for review, oldest first: `first` of them after the "
        "cursor `after`.",
        extensions=[authorize(requires(Scope.SETTLEMENT_READ))],
    )
    async def held_conversion_page(
        self, info: Info[Context, None], first: HeldPage = 50, after: After = None
    ) -> Page[Conversion] | None:
        return await _held_conversions(info, first, after)

    @strawberry.field(
        description="Redemptions held by the paying program's risk gates for review, oldest first.",
        extensions=[authorize(requires(Scope.SETTLEMENT_READ))],
        deprecation_reason=replaced_by_page("heldRedemptionPage"),
    )
    async def held_redemptions(self, info: Info[Context, None], first: HeldPage = 50) -> list[Redemption] | None:
        return (await _held_redemptions(info, first, None)).items

    @strawberry.field(
        description="Redemptions held by the paying program's risk gates for review, oldest first: `first` "
        "of them after the cursor `after`.",
        extensions=[authorize(requires(Scope.SETTLEMENT_READ))],
    )
    async def held_redemption_page(
        self, info: Info[Context, None], first: HeldPage = 50, after: After = None
    ) -> Page[Redemption] | None:
        return await _held_redemptions(info, first, after)

    @strawberry.field(
        description="Risk decisions (allow, refuse, hold, approve, reject) with their reasons, newest "
        "first: about one conversion, one redemption, one member, or all. A conversion or redemption id "
        "none has is `NOT_FOUND`.",
        extensions=[authorize(requires(Scope.SETTLEMENT_READ))],
        deprecation_reason=replaced_by_page("riskDecisionPage"),
    )
    async def risk_decisions(
        self,
        info: Info[Context, None],
        conversion_id: AboutConversion = None,
        member_id: AboutMember = None,
        first: DecisionsPage = 50,
        redemption_id: AboutRedemption = None,
    ) -> list[RiskDecision] | None:
        return (await _decisions(info, conversion_id, redemption_id, member_id, first, None)).items

    @strawberry.field(
        description="Risk decisions (allow, refuse, hold, approve, reject) with their reasons, newest "
        "first: `first` of them after the cursor `after`, about one conversion, one redemption, one member, "
        "or all. A conversion or redemption id none has is `NOT_FOUND`.",
        extensions=[authorize(requires(Scope.SETTLEMENT_READ))],
    )
    async def risk_decision_page(
        self,
        info: Info[Context, None],
        conversion_id: AboutConversion = None,
        redemption_id: AboutRedemption = None,
        member_id: AboutMember = None,
        first: DecisionsPage = 50,
        after: After = None,
    ) -> Page[RiskDecision] | None:
        return await _decisions(info, conversion_id, redemption_id, member_id, first, after)


@strawberry.type
class RiskMutations:
    @strawberry.mutation(
        description="Approve a HELD conversion: it goes on at once from its first debit, and the "
        "answer is where it got (as `executeConversion`'s). Approving it again returns it as it "
        "stands; one rejected already is `NOT_HELD`.",
        extensions=[authorize(requires(Scope.SETTLEMENT_WRITE))],
    )
    async def approve_conversion(self, info: Info[Context, None], id: ConversionId) -> Conversion | None:
        caller = info.context.caller()
        row = await info.context.services.risk.approve(str(id), staff=caller.subject)
        return Conversion.from_row(row, await info.context.currency())

    @strawberry.mutation(
        description="Reject a HELD conversion for `reason`: it ends FAILED (`RISK_REJECTED`) with "
        "nothing moved and its limits given back. Rejecting it again returns it as it stands; one "
        "approved already is `NOT_HELD`.",
        extensions=[authorize(requires(Scope.SETTLEMENT_WRITE))],
    )
    async def reject_conversion(
        self,
        info: Info[Context, None],
        id: ConversionId,
        reason: Reason,
    ) -> Conversion | None:
        caller = info.context.caller()
        row = await info.context.services.risk.reject(str(id), staff=caller.subject, reason=reason)
        return Conversion.from_row(row, await info.context.currency())

    @strawberry.mutation(
        description="Approve a HELD redemption: it goes on at once from its debit, and the answer is "
        "where it got (as `redeemReward`'s). Approving it again returns it as it stands; one rejected "
        "already is `NOT_HELD`.",
        extensions=[authorize(requires(Scope.SETTLEMENT_WRITE))],
    )
    async def approve_redemption(self, info: Info[Context, None], id: RedemptionId) -> Redemption | None:
        caller = info.context.caller()
        row = await info.context.services.risk.approve_redemption(str(id), staff=caller.subject)
        return Redemption.from_row(row, await info.context.currency())

    @strawberry.mutation(
        description="Reject a HELD redemption for `reason`: it ends FAILED (`RISK_REJECTED`) with "
        "nothing debited, its stock and the member's count given back. Rejecting it again returns it "
        "as it stands; one approved already is `NOT_HELD`.",
        extensions=[authorize(requires(Scope.SETTLEMENT_WRITE))],
    )
    async def reject_redemption(
        self,
        info: Info[Context, None],
        id: RedemptionId,
        reason: Reason,
    ) -> Redemption | None:
        caller = info.context.caller()
        row = await info.context.services.risk.reject_redemption(str(id), staff=caller.subject, reason=reason)
        return Redemption.from_row(row, await info.context.currency())
