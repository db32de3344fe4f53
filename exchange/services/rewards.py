"""Rewards and redemptions: the public catalog, publishing, and redeeming with any linked
program's points under the redemption saga; cancelling and confirming delivery."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal

from exchange.auth.principal import Principal
from exchange.clock import Clock
from exchange.db.database import Database
from exchange.errors import BadUserInput
from exchange.federation.accounts import Federation
from exchange.pricing.limits import MAX_POINTS
from exchange.programs import service as programs
from exchange.programs.catalog import CatalogCache
from exchange.rewards import catalog, redemption
from exchange.rewards.catalog import RewardDraft
from exchange.rewards.errors import NotYourReward
from exchange.rewards.jobs import RedemptionJob
from exchange.rewards.models import Redemption, RedemptionStatus, Reward
from exchange.rewards.redemption import RedeemRequest, RedemptionQuote, RedemptionSaga
from exchange.risk.decisions import GateRefusal, record_refusal
from exchange.sagas.recovery import EVERY_ROW, RecoveryReport, recovery_report
from exchange.services.balances import Coverage, coverage
from exchange.services.requests import debit_authority, idempotency_key, member_of, page_size, program_of

MAX_PAGE = 200
#: Rewards a listing holds unless asked for another number: GraphQL's ``rewards``, the partner
#: console's rewards page and the portal's catalog (a link lists the next ones).
REWARDS_PAGE = 100


@dataclass(frozen=True, slots=True)
class RewardPage:
    """Rewards by program and id, and the id to list the next page after (``None``: the last page)."""

    items: Sequence[Reward]
    next_after: str | None


@dataclass
class RewardService:
    db: Database
    saga: RedemptionSaga
    catalog: CatalogCache
    clock: Clock
    federation: Federation

    async def rewards(
        self, *, program_id: str | None, available_only: bool, first: int, after: str | None = None
    ) -> RewardPage:
        """Published rewards by program and id, ``first`` of them after the reward ``after``:
        only those redeemable now when ``available_only``."""
        first = page_size(first, maximum=MAX_PAGE)
        async with self.db.transaction() as session:
            rows = await catalog.list_rewards(
                session,
                first=first + 1,  # one more says whether a next page follows
                after=after,
                program_id=program_id,
                available_at=self.clock.now() if available_only else None,
            )
        return RewardPage(items=rows[:first], next_after=rows[first - 1].id if len(rows) > first else None)

    async def rewards_by_id(self, reward_ids: Collection[str]) -> dict[str, Reward]:
        """The rewards of ``reward_ids`` (those that exist), by id: what a page needs to name
        the rewards of the redemptions it shows."""
        async with self.db.transaction() as session:
            return await catalog.rewards_by_id(session, reward_ids)

    async def reward(self, reward_id: str) -> Reward:
        async with self.db.transaction() as session:
            return await catalog.get_reward(session, reward_id, field="id")

    async def publish(self, program_id: str, draft: RewardDraft) -> Reward:
        """Publish a reward of ``program_id``."""
        async with self.db.transaction() as session:
            await programs.get_program(session, program_id, field="programId")
            return await catalog.publish(session, program_id, draft, self.clock.now())

    async def reprice(self, caller: Principal, reward_id: str, price: Decimal) -> Reward:
        """A new settlement price for the caller's own reward (redemptions made keep theirs)."""
        async with self.db.transaction() as session:
            return await catalog.reprice(session, program_of(caller), reward_id, price)

    async def restock(self, caller: Principal, reward_id: str, units: int) -> Reward:
        """``units`` more of the caller's own reward in stock."""
        async with self.db.transaction() as session:
            return await catalog.restock(session, program_of(caller), reward_id, units)

    async def withdraw(self, caller: Principal, reward_id: str) -> Reward:
        """End the caller's own reward's availability now."""
        async with self.db.transaction() as session:
            return await catalog.withdraw(session, program_of(caller), reward_id, self.clock.now())

    async def quote(self, caller: Principal, reward_id: str, pay_with: str) -> RedemptionQuote:
        """What redeeming ``reward_id`` with the caller's ``pay_with`` points costs now."""
        (await self.catalog.get()).program(pay_with, field="payWith")
        return await self.saga.quote(member_of(caller), reward_id, pay_with)

    async def review(self, caller: Principal, quotes: Sequence[RedemptionQuote]) -> dict[str, Coverage]:
        """Each quote's points beside the caller's balance at its paying program, by program,
        every partner asked at once. Not part of :meth:`quote`: pricing asks no partner, and the
        paying partner's debit decides in the end; this read only tells a member who would pay
        with more than they hold."""
        return await coverage(
            self.federation, member_of(caller), {quote.paying.id: quote.price.points for quote in quotes}
        )

    async def redeem(
        self,
        caller: Principal,
        reward_id: str,
        pay_with: str,
        key: str,
        *,
        consent: str | None,
        expected_points: int | None = None,
    ) -> Redemption:
        """Redeem as far as it goes now; the same ``key`` returns the same redemption. The
        paying program's points are debited only under its authority: the caller's token
        asserted by it, or ``consent`` given through it. An unknown ``pay_with`` is not found
        before anything else. The paying program's risk gates refuse as they refuse a
        conversion out of it; a refusal changes nothing and is recorded. ``expected_points``:
        the points price the caller saw (its point value can change meanwhile); any other
        price now is refused before anything is debited."""
        loaded = await self.catalog.get()
        loaded.program(pay_with, field="payWith")
        if expected_points is not None and not 0 < expected_points <= MAX_POINTS:
            raise BadUserInput(
                f"expectedPoints must be from 1 to {MAX_POINTS:,}, got {expected_points:,}", field="expectedPoints"
            )
        request = RedeemRequest(
            member_id=member_of(caller),
            reward_id=reward_id,
            pay_with=pay_with,
            idempotency_key=idempotency_key(key),
            authority=debit_authority(caller, consent, loaded.exchange_held),
            expected_points=expected_points,
        )
        try:
            return await self.saga.redeem(request)
        except GateRefusal as refusal:
            await record_refusal(self.db, refusal.decision)
            raise

    async def cancel(
        self, caller: Principal, redemption_id: str, *, expected: RedemptionStatus | None = None
    ) -> Redemption:
        """Cancel a held redemption (it ends FAILED, nothing debited) or a paid, undelivered one
        (it is reversed): as its member, or as the publishing partner. ``expected``: the status
        the caller saw; one that moved on meanwhile is refused, not cancelled as it now is."""
        return await self.saga.cancel(
            redemption_id, member_id=caller.member_id, program_id=caller.program_id, expected=expected
        )

    async def confirm_delivery(self, caller: Principal, redemption_id: str) -> Redemption:
        """The publishing partner delivered a direct reward."""
        return await self.saga.confirm_delivery(redemption_id, program_of(caller))

    async def member_redemptions(
        self, caller: Principal, *, first: int, after: str | None = None
    ) -> Sequence[Redemption]:
        """The caller's redemptions, newest first, after their redemption ``after``."""
        first = page_size(first, maximum=MAX_PAGE)
        async with self.db.transaction() as session:
            return await redemption.member_redemptions(session, member_of(caller), first=first, after=after)

    async def awaiting_delivery(self, caller: Principal, *, first: int) -> Sequence[Redemption]:
        """The caller's paid direct redemptions awaiting its confirmation of delivery."""
        first = page_size(first, maximum=MAX_PAGE)
        async with self.db.transaction() as session:
            return await redemption.awaiting_delivery(session, program_of(caller), first=first)

    async def reward_redemptions(self, caller: Principal, reward_id: str, *, first: int) -> Sequence[Redemption]:
        """Redemptions of one of the caller's own rewards, newest first; another partner's
        reward is refused."""
        first = page_size(first, maximum=MAX_PAGE)
        async with self.db.transaction() as session:
            reward = await catalog.get_reward(session, reward_id)
            if reward.program_id != program_of(caller):
                raise NotYourReward()
            return await redemption.reward_redemptions(session, reward.id, first=first)

    async def recover(self) -> RecoveryReport:
        """The redemptions job's pass now, over every active redemption whatever its next
        attempt time (after a crash): undelivered rewards start reversing, then debits in
        doubt and reversals are driven on."""
        return await recovery_report(self.saga, await RedemptionJob(self.saga).run_pass(due_by=EVERY_ROW))
