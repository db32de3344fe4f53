"""Risk review for staff: conversions held by a gate, approving or rejecting them, and the log
of every gate's decision (on links, conversions and redemptions). GraphQL and the CLI are two
front ends on these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from exchange.conversions.holds import HoldReview
from exchange.conversions.models import Conversion
from exchange.db.database import Database
from exchange.risk import decisions
from exchange.risk.models import RiskDecision


@dataclass
class RiskService:
    db: Database
    review: HoldReview

    async def held(self, *, first: int = 50) -> Sequence[Conversion]:
        """Conversions waiting for staff, oldest first."""
        return await self.review.held(first=first)

    async def approve(self, conversion_id: str, *, staff: str) -> Conversion:
        """Approve a held conversion (again: as it stands); it runs at once."""
        return await self.review.approve(conversion_id, staff=staff)

    async def reject(self, conversion_id: str, *, staff: str, reason: str) -> Conversion:
        """Reject a held conversion (again: as it stands): FAILED, nothing moved."""
        return await self.review.reject(conversion_id, staff=staff, reason=reason)

    async def decisions(
        self,
        *,
        conversion_id: str | None = None,
        redemption_id: str | None = None,
        member_id: str | None = None,
        first: int = 50,
    ) -> Sequence[RiskDecision]:
        """Gate decisions, newest first: about one conversion, one redemption, one member, or all."""
        async with self.db.transaction() as session:
            return await decisions.decisions(
                session, conversion_id=conversion_id, redemption_id=redemption_id, member_id=member_id, first=first
            )
