"""Redeeming a reward with points of any linked program: the redemption saga.

1. **Record** the redemption PENDING under the member's idempotency key, and in the same
   unit of work take one from the reward's stock (a guarded ``UPDATE … WHERE stock >= 1``:
   stock never goes below zero, however many redeem at once) and count it against the
   member's limit (the limits counters, locked in key order). A reward's minimum level is
   checked against the member's level as the partners report it, asked before this unit of
   work; the unit of work refuses the redemption if the member's tiers changed since
   (:class:`~exchange.rewards.errors.TiersChanged`), or if its publisher raised the minimum
   since (above the level read: ``TierTooLow``; from none: the level is read, and the record
   made again). A repeat of the key returns
   the same redemption. A request expecting a points price (the one its member saw) that is
   no longer the price is refused there, nothing recorded. The paying program's points are spent only under its authority
   (:mod:`exchange.members.authority`): a token it asserted, or a consent given through it,
   used in this same unit of work. The paying program's risk gates (:mod:`exchange.risk.gates`)
   screen it there too, as they screen a conversion out of it: a refusal records nothing, and
   a hold leaves it HELD (stock and count taken, nothing debited) until staff approve it (it
   goes on from step 2) or reject it, or the hold ends (:mod:`exchange.services.holds`), or
   its member or publisher cancels it: FAILED, stock and count given back.
2. **Debit** the member at the paying program (operation ``<id>:debit``).
3. **Post** the clearing transaction (:mod:`exchange.rewards.clearing`) → COMPLETED: awaiting
   delivery (direct rewards, until ``deliver_by``) or an entry in the draw (lottery).

A definite failure of the debit ends FAILED; a debit in doubt is settled by the shared rule
(:func:`exchange.sagas.doubt.settle_or_void`) as conversions do. **Reversing** a completed
redemption (cancelled by the member or the publisher before delivery, or not delivered in
time) gives the points back (``<id>:reverse-debit``), then posts the ledger reversal; stock
and the member's count come back whenever a redemption ends FAILED or REVERSED.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import Clock
from exchange.connectors.connector import PartnerConnector
from exchange.connectors.registry import ConnectorRegistry
from exchange.db import dialects, direct
from exchange.db.database import Database
from exchange.db.paging import Keyset, Page, read_page
from exchange.errors import ExchangeError
from exchange.federation.accounts import Federation, LevelRead
from exchange.idempotency import claiming, keyed, record_once, same_request
from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.models import LedgerCloseAnchor, LedgerTransactionKey
from exchange.ledger.posting import Ledger
from exchange.members import service as members
from exchange.members.authority import DebitAuthority, require_authority
from exchange.members.consents import authorize_debit
from exchange.members.models import LinkedAccount, Member
from exchange.pricing import limits
from exchange.programs import service as programs
from exchange.programs.models import CoalitionSettings, Program
from exchange.rewards import catalog
from exchange.rewards.clearing import REVERSAL_KIND, redemption_transaction
from exchange.rewards.errors import (
    ClearingArchived,
    EntryInTheDraw,
    NoLongerHeld,
    NotCancellable,
    NotDeliverable,
    OutOfStock,
    PriceChanged,
    RedemptionNotFound,
    RewardUnavailable,
    TiersChanged,
    TierTooLow,
)
from exchange.rewards.models import (
    CancelledBy,
    Redemption,
    RedemptionStatus,
    RedemptionStep,
    Reward,
    RewardKind,
)
from exchange.rewards.pricing import RedemptionPrice, redemption_price
from exchange.risk import reasons
from exchange.risk.gates import Gates, Outflow, Way
from exchange.risk.models import Decision, Subject
from exchange.risk.policy import RiskPolicy
from exchange.sagas.doubt import MemberDebit, reverse_whole
from exchange.sagas.engine import Saga, SagaPolicy, Transition
from exchange.settings import Settings
from exchange.webhooks.events import (
    Event,
    redemption_changed,
    redemption_delivered,
    redemption_failed,
    redemption_held,
)
from exchange.webhooks.outbox import emit

#: The failure code of a redemption its member or publisher cancelled while it was held.
CANCELLED_WHILE_HELD = "CANCELLED"
#: Final statuses that give back the stock and the member's count.
_RELEASES_STOCK = (RedemptionStatus.FAILED, RedemptionStatus.REVERSED)

REDEMPTIONS: Table = Redemption.__table__  # type: ignore[attr-defined]
COALITION: Table = CoalitionSettings.__table__  # type: ignore[attr-defined]
#: The currency the coalition settles in, which a redemption's posting is priced in.
_SETTLEMENT_CURRENCY = select(COALITION.c.settlement_currency).where(COALITION.c.id == 1)


@dataclass(frozen=True, slots=True)
class RedeemRequest:
    """``authority``: under whose authority the paying program's points are debited.
    ``expected_points``: the points price the member saw; a redemption that would now cost
    another number of points is refused (:class:`PriceChanged`), ``None`` takes the price as
    it is."""

    member_id: str
    reward_id: str
    pay_with: str
    idempotency_key: str
    authority: DebitAuthority
    expected_points: int | None = None

    def made(self, redemption: Redemption) -> bool:
        """Whether ``redemption`` (under this request's key) was made for this request: the
        same reward and paying program, and the points it was charged, if this request expects
        some (expecting others is another request)."""
        return (redemption.reward_id, redemption.paying_program) == (self.reward_id, self.pay_with) and (
            self.expected_points in (None, redemption.points)
        )


@dataclass(frozen=True, slots=True)
class RedemptionQuote:
    """What redeeming ``reward`` with ``paying`` points costs now."""

    reward: Reward
    paying: Program
    price: RedemptionPrice


class _LevelNowNeeded(Exception):
    """The reward read before the record needed no level, and the one the record reads needs
    ``min_level``: the level is to be read (outside the unit of work, which this rolls back)."""

    def __init__(self, reward_id: str, min_level: int) -> None:
        super().__init__(reward_id)
        self.reward_id, self.min_level = reward_id, min_level


@dataclass
class RedemptionSaga(Saga[Redemption]):
    model = Redemption
    active = (RedemptionStatus.PENDING, RedemptionStatus.REVERSING)
    label = "redemption"

    db: Database
    connector_for: Callable[[Program], PartnerConnector]
    member_level: Callable[[str], Awaitable[LevelRead]]
    """The member's coalition level, as their partners report their tiers now, and the tier
    activity marker it was read under."""
    ledger: Ledger
    clock: Clock
    policy: SagaPolicy
    delivery_window: timedelta
    gates: Gates
    """The risk gates, counting every way points leave an account."""

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        *,
        db: Database,
        connectors: ConnectorRegistry,
        federation: Federation,
        clock: Clock,
        gates: Gates,
    ) -> RedemptionSaga:
        """The saga as the gateway runs it."""
        return cls(
            db=db,
            connector_for=connectors.for_program,
            member_level=federation.level_read,
            ledger=Ledger.for_settings(settings, clock),
            clock=clock,
            policy=SagaPolicy.for_settings(settings),
            delivery_window=settings.reward_delivery_window,
            gates=gates,
        )

    def missing(self, row_id: str) -> ExchangeError:
        return RedemptionNotFound(row_id)

    # -- entry points -------------------------------------------------------------------

    async def quote(self, member_id: str, reward_id: str, pay_with: str) -> RedemptionQuote:
        """The price breakdown of a redemption, before paying."""
        async with self.db.transaction() as session:
            await self._paying_ref(session, member_id, pay_with)
            return await _quote(session, reward_id, pay_with)

    async def redeem(self, request: RedeemRequest) -> Redemption:
        """Redeem, as far as it goes now; the same key returns the same redemption."""
        async with self.db.transaction() as session:
            existing = await keyed(session, Redemption, request.member_id, request.idempotency_key)
            if existing is not None:
                return same_request(existing, request.idempotency_key, request.made)
            reward = await catalog.get_reward(session, request.reward_id)
        require_authority(request.authority, request.pay_with, field="payWith")  # before asking partners
        level = await self._level_for(reward.id, reward.min_level, request.member_id, None)
        while True:
            try:
                async with self.db.transaction() as session:
                    redemption, created = await self._record_in(session, request, level)
                break
            except _LevelNowNeeded as needed:
                # The reward came to need a level after it was read: the level is read now, and
                # the record made again (with a level read, nothing raises this again).
                level = await self._level_for(needed.reward_id, needed.min_level, request.member_id, level)
        return await self.drive(redemption) if created else redemption

    async def _level_for(
        self, reward_id: str, min_level: int, member_id: str, level: LevelRead | None
    ) -> LevelRead | None:
        """The member's level as checked against a reward's ``min_level`` (else :class:`TierTooLow`):
        ``level`` if already read, else asked of the partners, outside a unit of work (the unit of
        work that records the redemption then refuses it if the tiers changed since:
        :meth:`_record_in`); ``None`` if the reward needs none."""
        if min_level == 0:
            return level
        if level is None:
            level = await self.member_level(member_id)
        if level.level < min_level:
            raise TierTooLow(reward_id, min_level, level.level)
        return level

    async def cancel(
        self,
        redemption_id: str,
        *,
        member_id: str | None = None,
        program_id: str | None = None,
        expected: RedemptionStatus | None = None,
    ) -> Redemption:
        """Cancel a redemption as its member or the publishing partner: a HELD one ends at once,
        FAILED with nothing debited (:meth:`_withdraw`); a paid, undelivered one is reversed. A
        paid lottery entry is in the draw: only its publisher may cancel it
        (:class:`~exchange.rewards.errors.EntryInTheDraw`).

        The row is locked first, so a cancel and a staff review (a guarded update from HELD)
        of one held redemption queue, and exactly one of them ends the hold. ``expected``: the
        status the caller saw, so that a redemption staff approved or rejected meanwhile is
        refused (:class:`NoLongerHeld`) rather than reversed after all.

        Idempotent, by one rule for both ends: a cancel that repeats the one that ended the
        redemption (the same party, expecting what that cancel found, if it says) returns it as
        it stands; one that ended otherwise (rejected, expired, delivered, not delivered in
        time, cancelled by the other party) is refused, saying so."""
        by = CancelledBy.MEMBER if member_id is not None else CancelledBy.PUBLISHER
        async with self.db.transaction() as session:
            redemption = await _locked_for(session, redemption_id, member_id=member_id, program_id=program_id)
            if _ended_by_cancel(redemption, by, expected):
                return redemption
            if expected is not None and redemption.status != expected:
                if expected == RedemptionStatus.HELD:
                    raise NoLongerHeld(redemption_id, redemption.status)
                raise NotCancellable(redemption_id, redemption.status, redemption.cancelled_by)
            if redemption.status == RedemptionStatus.HELD:
                await self._withdraw(session, redemption, by)
                return redemption
            if redemption.status != RedemptionStatus.COMPLETED:
                raise NotCancellable(redemption_id, redemption.status, redemption.cancelled_by)
            if redemption.kind == RewardKind.LOTTERY and by is CancelledBy.MEMBER:
                raise EntryInTheDraw(redemption_id)
            if archived := await _archived_period_of(session, redemption.ledger_transaction_id):
                raise ClearingArchived(redemption_id, archived)
            self._start_reversal(redemption, by)
            session.add(redemption)
        return await self.drive(redemption)

    async def _withdraw(self, session: AsyncSession, redemption: Redemption, by: CancelledBy) -> None:
        """End the held (and locked) ``redemption`` FAILED, cancelled ``by`` its member or its
        publisher before staff decided: nothing was debited, so nothing is given back but its
        stock and the member's count, and nothing reaches the ledger. The risk decision log
        records the cancel (``CANCEL``), as it records a staff review or an expiry."""
        now = self.clock.now()
        redemption.status, redemption.step = RedemptionStatus.FAILED, RedemptionStep.DONE
        reason = reasons.CANCELLED_WHILE_HELD.text(by=by.value.lower())
        redemption.failure_code, redemption.failure_message = CANCELLED_WHILE_HELD, reason
        redemption.cancelled_by = by
        redemption.lease_until, redemption.updated_at, redemption.finished_at = None, now, now
        session.add(redemption)
        # The decision log tells a hold's whole story: how it ended, whoever ended it.
        session.add(outflow(redemption).verdict(Decision.CANCEL, reason, now, CANCELLED_WHILE_HELD))
        await ended_unpaid(session, redemption, now)

    async def confirm_delivery(self, redemption_id: str, program_id: str) -> Redemption:
        """The publisher delivered the reward: the redemption is final. Confirmed again (a
        retry after a lost answer), it is answered as it stands, nothing done twice."""
        async with self.db.transaction() as session:
            redemption = await _locked_for(session, redemption_id, program_id=program_id)
            if redemption.status == RedemptionStatus.DELIVERED:
                return redemption
            if redemption.status != RedemptionStatus.COMPLETED or redemption.kind != RewardKind.DIRECT:
                raise NotDeliverable(redemption_id, redemption.status)
            now = self.clock.now()
            redemption.status, redemption.delivered_at, redemption.updated_at = RedemptionStatus.DELIVERED, now, now
            session.add(redemption)
            await emit(session, redemption_delivered(redemption, now))
        return redemption

    async def start_undelivered_reversals(self, batch: int = 100) -> int:
        """Start reversing every direct redemption whose delivery was not confirmed by its
        ``deliver_by``; returns how many (the recovery worker then drives them)."""
        started = 0
        while True:
            now = self.clock.now()
            async with self.db.transaction() as session:
                due = (
                    await session.exec(
                        select(Redemption)
                        .where(Redemption.status == RedemptionStatus.COMPLETED, col(Redemption.deliver_by) <= now)
                        .order_by(col(Redemption.deliver_by))
                        .limit(batch)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
                for redemption in due:
                    self._start_reversal(redemption, CancelledBy.TIMEOUT)
                    redemption.next_attempt_at, redemption.lease_until = now, None  # due at once
                    session.add(redemption)
            started += len(due)
            if len(due) < batch:
                return started

    def _start_reversal(self, redemption: Redemption, by: CancelledBy) -> None:
        now = self.clock.now()
        redemption.status, redemption.step = RedemptionStatus.REVERSING, RedemptionStep.REVERSE_DEBIT
        redemption.cancelled_by = by
        redemption.next_attempt_at = redemption.lease_until = now + self.policy.lease
        redemption.updated_at = now

    # -- step 1: record -----------------------------------------------------------------

    async def _paying_ref(
        self, session: AsyncSession, member_id: str, pay_with: str, *, lock: bool = False, tiers: bool = False
    ) -> tuple[str, int]:
        """The member's id at the paying program, and the member's tier activity marker, in one
        statement. ``lock``: the account read under a key-share lock (the weakest that a delete
        waits for), so that an unlink of the account waits for the unit of work recording the
        redemption and then sees it (:mod:`exchange.unlinking`); with ``tiers``, the account and
        the member both under a no-key-update lock, so that whatever moves the marker (an unlink
        of any of the member's accounts, a status match's end) waits for that unit of work too,
        or it waits for them and reads the marker they moved. The account is locked first, as an
        unlink locks it before the member."""
        await programs.get_program(session, pay_with, field="payWith")
        statement = (
            select(LinkedAccount.member_ref, Member.tier_activity)
            .join(Member, col(Member.id) == col(LinkedAccount.member_id))
            .where(LinkedAccount.member_id == member_id, LinkedAccount.program_id == pay_with)
        )
        if tiers:
            statement = statement.with_for_update(key_share=True, of=[LinkedAccount, Member])
        elif lock:
            statement = statement.with_for_update(read=True, key_share=True, of=LinkedAccount)
        account = (await session.exec(statement)).first()
        if account is None:
            raise members.AccountNotLinked(pay_with, "payWith")
        return account[0], account[1]

    async def _record_in(
        self, session: AsyncSession, request: RedeemRequest, level: LevelRead | None
    ) -> tuple[Redemption, bool]:
        """Record the redemption (step 1); ``level``: the member's level as checked against the
        reward's minimum, refused (:class:`TiersChanged`) if their tiers changed since it was read,
        or (:class:`TierTooLow`) if the minimum was raised above it since."""
        now = self.clock.now()
        paying_ref, tier_activity = await self._paying_ref(
            session, request.member_id, request.pay_with, lock=True, tiers=level is not None
        )
        quote = await _quote(session, request.reward_id, request.pay_with)
        reward = quote.reward
        if level is not None and level.tier_activity != tier_activity:
            raise TiersChanged(reward.id, reward.min_level, level.level)
        if reward.min_level > 0 and level is None:
            raise _LevelNowNeeded(reward.id, reward.min_level)  # its publisher raised it since it was read
        if level is not None and level.level < reward.min_level:
            raise TierTooLow(reward.id, reward.min_level, level.level)  # raised above the level read
        if not catalog.is_available(reward, now):
            raise RewardUnavailable(reward.id, reward.available_from, reward.available_until)
        usages = _usages(reward, request.member_id)
        redemption, created = await record_once(
            session,
            Redemption,
            claiming(dialects.insert(session, REDEMPTIONS)).values(
                id=str(uuid.uuid4()),
                member_id=request.member_id,
                idempotency_key=request.idempotency_key,
                reward_id=reward.id,
                publisher=reward.program_id,
                paying_program=request.pay_with,
                paying_ref=paying_ref,
                kind=reward.kind,
                points=quote.price.points,
                price_minor=quote.price.price_minor,
                fee_minor=quote.price.fee_minor,
                currency=reward.currency,
                usages=[asdict(usage) for usage in usages],
                deliver_by=now + self.delivery_window if reward.kind == RewardKind.DIRECT else None,
                **self.policy.start(now, step=RedemptionStep.DEBIT),
            ),
            member_id=request.member_id,
            key=request.idempotency_key,
            same=request.made,
        )
        assert redemption is not None, "only the key is unique among what a redemption is inserted with"
        expected = request.expected_points
        if created and expected is not None and expected != redemption.points:
            # After the key (a repeat returns what it made, whatever the price now), before
            # anything is taken: raising rolls the row back.
            raise PriceChanged(reward.id, request.pay_with, expected, redemption.points)
        if created:
            await self.gates.screen(session, redemption, outflow(redemption), RiskPolicy.of(quote.paying.risk), now)
            taken = await session.exec(
                update(Reward).where(col(Reward.id) == reward.id, col(Reward.stock) >= 1).values(stock=Reward.stock - 1)
            )
            if taken.rowcount != 1:
                raise OutOfStock(reward.id)
            await limits.reserve(session, usages)
            # The consent is used after the row: a concurrent repeat of the key then meets the
            # unique key (and gets this redemption), not a consent this request has just used.
            await authorize_debit(
                session,
                request.authority,
                member_id=request.member_id,
                program=request.pay_with,
                points=quote.price.points,
                used_for=f"redemption:{redemption.id}",
                now=now,
                field="payWith",
            )
            if redemption.status == RedemptionStatus.HELD:
                await emit(session, redemption_held(redemption, now))
        return redemption, created

    # -- the steps ----------------------------------------------------------------------

    @staticmethod
    def debit(redemption: Redemption, paying: PartnerConnector) -> MemberDebit:
        """The redemption's debit at the paying partner, as a saga step."""
        return MemberDebit(
            paying,
            redemption.debit_operation,
            redemption.reverse_debit_operation,
            redemption.paying_ref,
            redemption.points,
            then=RedemptionStep.POST,
            done=RedemptionStep.DONE,
            failed=RedemptionStatus.FAILED,
            reversed=RedemptionStatus.REVERSED,
            partner="paying",
            waiting=RedemptionStep.AWAIT_DEBIT,
        )

    async def attempt(self, redemption: Redemption, step: str, *, in_doubt: bool) -> Transition:
        if step == RedemptionStep.POST:
            return Transition(RedemptionStep.DONE, RedemptionStatus.COMPLETED)
        if step == RedemptionStep.UNPOST:
            return Transition(RedemptionStep.DONE, RedemptionStatus.REVERSED)
        async with self.db.transaction() as session:
            paying = self.connector_for(await programs.get_program(session, redemption.paying_program))
        if step == RedemptionStep.DEBIT:
            return await self.debit(redemption, paying).attempt(in_doubt=in_doubt)
        if step == RedemptionStep.AWAIT_DEBIT:
            return await self.debit(redemption, paying).poll()
        if step == RedemptionStep.REVERSE_DEBIT:
            # Chained: after a crash, the reversal is sent again from this step (its fixed id
            # makes the partner apply it once), and the ledger reversal follows.
            await reverse_whole(paying, redemption.reverse_debit_operation, redemption.debit_operation)
            return Transition(RedemptionStep.UNPOST, chained=True)
        raise AssertionError(f"no attempt for step {step}")

    async def on_transition(
        self, session: AsyncSession, redemption: Redemption, step: str, transition: Transition
    ) -> None:
        if step == RedemptionStep.POST:
            currency = (await direct.execute(session, _SETTLEMENT_CURRENCY)).one()[0]
            await self.ledger.post(
                session,
                redemption_transaction(
                    chart=ChartOfAccounts(currency),
                    transaction_id=redemption.ledger_transaction_id,
                    redemption_id=redemption.id,
                    paying=redemption.paying_program,
                    publisher=redemption.publisher,
                    points=redemption.points,
                    price_minor=redemption.price_minor,
                    fee_minor=redemption.fee_minor,
                    effective_at=redemption.created_at,
                ),
            )
        if step == RedemptionStep.UNPOST:
            await self.ledger.reverse(
                session,
                redemption.ledger_transaction_id,
                transaction_id=redemption.reversal_transaction_id,
                effective_at=self.clock.now(),
                kind=REVERSAL_KIND,
            )
        if transition.status in _RELEASES_STOCK:
            await release(session, redemption)

    def event(self, redemption: Redemption, step: str, transition: Transition) -> Event | None:
        return redemption_changed(redemption, step, transition, self.clock.now())


async def _quote(session: AsyncSession, reward_id: str, pay_with: str) -> RedemptionQuote:
    reward = await catalog.get_reward(session, reward_id)
    paying = await programs.get_program(session, pay_with, field="payWith")
    coalition = (await programs.get_coalition(session)).settings
    currency = coalition.currency
    price = redemption_price(
        price=currency.from_minor(reward.price_minor),
        point_value=paying.point_value,
        fee_percent=coalition.fee_percent,
        fee_fixed=coalition.fee_fixed,
        currency=currency,
    )
    if price.points > limits.MAX_POINTS:
        # A reward priced far above what one program's points are worth: no answer may carry
        # more points than a request may move (nor more than an Int holds).
        raise limits.beyond_max_points(
            f"reward {reward.id} costs {price.points:,} points of {pay_with}, more than the "
            f"{limits.MAX_POINTS:,} one redemption may spend",
            field="payWith",
        )
    return RedemptionQuote(reward=reward, paying=paying, price=price)


async def _archived_period_of(session: AsyncSession, transaction_id: str) -> str | None:
    """The period ``transaction_id`` was posted into, if that period is archived (its rows have
    left the ledger, ``exchange ledger archive``); else None.

    The period's close anchor is read under a share lock, which archiving's own lock on it waits
    for: a cancel that finds the period not archived has started its reversal (REVERSING, which
    archiving refuses) before archiving reads the period's redemptions."""
    found = (
        await session.exec(
            select(LedgerCloseAnchor.period, LedgerCloseAnchor.archived_at)
            .join(LedgerTransactionKey, col(LedgerTransactionKey.period) == col(LedgerCloseAnchor.period))
            .where(LedgerTransactionKey.id == transaction_id)
            .with_for_update(read=True, of=LedgerCloseAnchor)
        )
    ).first()
    if found is None:
        return None
    period, archived_at = found
    return period if archived_at is not None else None


def _ended_by_cancel(redemption: Redemption, by: CancelledBy, expected: RedemptionStatus | None) -> bool:
    """Whether a cancel ``by`` its member or publisher ended ``redemption``, from the status
    ``expected`` (if given): while HELD (it failed, nothing debited) or once COMPLETED (it is
    reversed, or being reversed). Another such cancel is a repeat of that one."""
    if redemption.cancelled_by != by:
        return False
    if redemption.status == RedemptionStatus.FAILED and redemption.failure_code == CANCELLED_WHILE_HELD:
        found = RedemptionStatus.HELD
    elif redemption.status in (RedemptionStatus.REVERSING, RedemptionStatus.REVERSED):
        found = RedemptionStatus.COMPLETED
    else:
        return False
    return expected in (None, found)


async def ended_unpaid(session: AsyncSession, redemption: Redemption, now: datetime) -> None:
    """What a redemption that ended FAILED before any debit (a hold rejected, expired or
    cancelled) does in that unit of work: give back its stock and count, and tell
    subscribers (``redemption.failed``)."""
    await release(session, redemption)
    event = redemption_failed(redemption, redemption.status, redemption.failure_code, redemption.failure_message, now)
    await emit(session, event)


async def release(session: AsyncSession, redemption: Redemption) -> None:
    """Give back the stock and the member's count ``redemption`` took: it ended moving nothing."""
    await session.exec(update(Reward).where(col(Reward.id) == redemption.reward_id).values(stock=Reward.stock + 1))
    await limits.release(session, [limits.Usage(**usage) for usage in redemption.usages])


#: Redemptions paid with a program's points, as velocity counts them and a hold holds them.
REDEMPTIONS_OUT = Way(
    subject=Subject.REDEMPTION,
    table=Redemption,
    id=col(Redemption.id),
    member_id=col(Redemption.member_id),
    program=col(Redemption.paying_program),
    member_ref=col(Redemption.paying_ref),
    points=col(Redemption.points),
    status=col(Redemption.status),
    created_at=col(Redemption.created_at),
    moved_nothing=tuple(status.value for status in _RELEASES_STOCK),
)


def outflow(redemption: Redemption) -> Outflow:
    """What ``redemption`` takes from the member's account at the paying program, as the risk
    gates see it: its names are compared with the member's account at the publisher, where the
    reward goes, if there is one."""
    return Outflow(
        way=REDEMPTIONS_OUT,
        id=redemption.id,
        member_id=redemption.member_id,
        program_id=redemption.paying_program,
        member_ref=redemption.paying_ref,
        points=redemption.points,
        to_program=None if redemption.publisher == redemption.paying_program else redemption.publisher,
        field="payWith",
    )


def _usages(reward: Reward, member_id: str) -> list[limits.Usage]:
    if reward.per_member_limit is None:
        return []
    return [limits.Usage(f"member:{member_id}:reward:{reward.id}", "per_member_limit", reward.per_member_limit, 1)]


async def _locked_for(
    session: AsyncSession, redemption_id: str, *, member_id: str | None = None, program_id: str | None = None
) -> Redemption:
    """The redemption, locked, if it is the member's (``member_id``) or of the partner's
    reward (``program_id``); anyone else hears it does not exist."""
    redemption = (
        await session.exec(select(Redemption).where(Redemption.id == redemption_id).with_for_update())
    ).first()
    if (
        redemption is None
        or (member_id is not None and redemption.member_id != member_id)
        or (program_id is not None and redemption.publisher != program_id)
    ):
        raise RedemptionNotFound(redemption_id)
    return redemption


#: A member's redemptions, and a reward's, newest first.
MEMBER_REDEMPTIONS = Keyset("redemptions", (col(Redemption.created_at), col(Redemption.id)), descending=True)
REWARD_REDEMPTIONS = Keyset("rewardRedemptions", (col(Redemption.created_at), col(Redemption.id)), descending=True)


async def member_redemptions(
    session: AsyncSession, member_id: str, *, first: int, after: str | None = None
) -> Page[Redemption]:
    """A page of the member's redemptions, newest first, after the cursor ``after``."""
    statement = select(Redemption).where(Redemption.member_id == member_id)
    return await read_page(session, statement, MEMBER_REDEMPTIONS, scope=member_id, first=first, after=after)


async def reward_redemptions(
    session: AsyncSession, reward_id: str, *, first: int, after: str | None = None
) -> Page[Redemption]:
    """A page of one reward's redemptions, newest first (for its publisher), after ``after``."""
    statement = select(Redemption).where(Redemption.reward_id == reward_id)
    return await read_page(session, statement, REWARD_REDEMPTIONS, scope=reward_id, first=first, after=after)


async def awaiting_delivery(session: AsyncSession, publisher: str, *, first: int = 100) -> Sequence[Redemption]:
    """The publisher's paid direct redemptions whose delivery it has yet to confirm, the most
    urgent (the earliest ``deliver_by``) first."""
    return (
        await session.exec(
            select(Redemption)
            .where(
                Redemption.status == RedemptionStatus.COMPLETED,
                Redemption.kind == RewardKind.DIRECT,
                Redemption.publisher == publisher,
            )
            .order_by(col(Redemption.deliver_by), col(Redemption.id))
            .limit(first)
        )
    ).all()
