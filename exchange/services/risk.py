"""Risk review for staff: conversions and redemptions held by a gate, approving or rejecting them, and the log
of every gate's decision (on links, conversions and redemptions). GraphQL and the CLI are two
front ends on these."""

from __future__ import annotations

from dataclasses import dataclass

from exchange.conversions.models import Conversion
from exchange.db.database import Database
from exchange.db.paging import Page
from exchange.errors import NotFound
from exchange.members.models import Member
from exchange.rewards.models import Redemption
from exchange.risk import decisions
from exchange.risk.models import RiskDecision
from exchange.services.holds import HoldReview


@dataclass
class RiskService:
    db: Database
    review: HoldReview

    async def held(self, *, first: int = 50, after: str | None = None) -> Page[Conversion]:
        """A page of the conversions waiting for staff, oldest first."""
        return await self.review.held(self.review.conversions, first=first, after=after)

    async def approve(self, conversion_id: str, *, staff: str) -> Conversion:
        """Approve a held conversion (again: as it stands); it runs at once."""
        return await self.review.approve(self.review.conversions, conversion_id, staff=staff)

    async def reject(self, conversion_id: str, *, staff: str, reason: str) -> Conversion:
        """Reject a held conversion (again: as it stands): FAILED, nothing moved."""
        return await self.review.reject(self.review.conversions, conversion_id, staff=staff, reason=reason)

    async def held_redemptions(self, *, first: int = 50, after: str | None = None) -> Page[Redemption]:
        """A page of the redemptions waiting for staff, oldest first."""
        return await self.review.held(self.review.redemptions, first=first, after=after)

    async def approve_redemption(self, redemption_id: str, *, staff: str) -> Redemption:
        """Approve a held redemption (again: as it stands); it runs at once."""
        return await self.review.approve(self.review.redemptions, redemption_id, staff=staff)

    async def reject_redemption(self, redemption_id: str, *, staff: str, reason: str) -> Redemption:
        """Reject a held redemption (again: as it stands): FAILED, nothing debited, stock given back."""
        return await self.review.reject(self.review.redemptions, redemption_id, staff=staff, reason=reason)

    async def decisions(
        self,
        *,
        conversion_id: str | None = None,
        redemption_id: str | None = None,
        member_id: str | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Page[RiskDecision]:
        """A page of gate decisions, newest first, after the cursor ``after``: about one
        conversion, one redemption, one member, or all.

        An id of none (a mistyped one) is ``NOT_FOUND`` naming its argument, not an empty log that
        reads as "nothing was decided about it"."""
        async with self.db.transaction() as session:
            for model, row_id, noun, field in (
                (Conversion, conversion_id, "conversion", "conversionId"),
                (Redemption, redemption_id, "redemption", "redemptionId"),
                (Member, member_id, "member", "memberId"),
            ):
                if row_id is not None and await session.get(model, row_id) is None:
                    raise NotFound(f"no {noun} has id {row_id!r}", field=field)
            return await decisions.decisions(
                session,
                conversion_id=conversion_id,
                redemption_id=redemption_id,
                member_id=member_id,
                first=first,
                after=after,
            )
