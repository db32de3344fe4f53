"""Status matches: what a match would give, requesting one, the member's matches, and the target
partner's reports of challenge progress."""

from __future__ import annotations

from dataclasses import dataclass

from exchange.auth.principal import Principal
from exchange.db.database import Database
from exchange.db.paging import Page
from exchange.sagas.recovery import EVERY_ROW, RecoveryReport, recovery_report
from exchange.services.requests import idempotency_key, member_of, page_size, program_of
from exchange.tiers import matching
from exchange.tiers.expiry import MatchExpiry
from exchange.tiers.matching import Assessment, StatusMatching
from exchange.tiers.models import StatusMatch

MAX_PAGE = 200


@dataclass
class StatusMatchService:
    db: Database
    matching: StatusMatching

    async def preview(self, caller: Principal, from_program: str, to_program: str) -> Assessment:
        """What a match would give the caller now, and why (both tiers read live)."""
        return await self.matching.preview(member_of(caller), from_program, to_program)

    async def request(
        self,
        caller: Principal,
        from_program: str,
        to_program: str,
        claimed_tier: str | None,
        *,
        key: str | None = None,
    ) -> StatusMatch:
        """Verify, decide, record and push the caller's match; the match as far as it got. With
        ``key``, the same request again returns that match (:meth:`StatusMatching.request`)."""
        return await self.matching.request(
            member_of(caller),
            from_program,
            to_program,
            claimed_tier,
            idempotency_key=idempotency_key(key) if key is not None else None,
        )

    async def matches(self, caller: Principal, *, first: int, after: str | None = None) -> Page[StatusMatch]:
        """A page of the caller's status matches, newest first, after the cursor ``after``."""
        first = page_size(first, maximum=MAX_PAGE)
        async with self.db.transaction() as session:
            return await matching.member_matches(session, member_of(caller), first=first, after=after)

    async def record_activity(
        self, caller: Principal, match_id: str, points: int, activities: int, *, key: str | None = None
    ) -> StatusMatch:
        """The target partner reports challenge progress of a match into its own program; with
        an idempotency ``key``, once."""
        return await self.matching.record_activity(
            program_of(caller), match_id, points, activities, key=None if key is None else idempotency_key(key)
        )

    async def recover(self) -> RecoveryReport:
        """The status-match expiry job's pass now, over every active match whatever its next
        attempt time (after a crash): expired matches start reverting, then pushes, extensions
        and reverts left mid-way are driven on."""
        saga = self.matching.saga
        return await recovery_report(saga, await MatchExpiry(saga).run_pass(due_by=EVERY_ROW))
