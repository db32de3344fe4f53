"""Status matching as members ask for it: preview, request, and the challenge's progress.

A preview and a request both read the member's tier **live** from the source partner (and
the tier they hold now at the target), never from what the member says. A request then
records the match under row locks on the member's accounts at both programs, taken in program
order (the target's for update, the source's key-share) — so two requests cannot both pass the
one-match-a-year rule, and an unlink of either account meanwhile is seen (an unlink waits for
either lock, and refuses while the match it then sees is unfinished) — and pushes the tier to
the target partner through its saga (:mod:`exchange.tiers.saga`).

Two matches between the same programs in opposite directions need no lock between their live
reads: each is granted only above the tier the member holds at its target, so of A into B and
B into A at most one can raise a tier. A match out of a program whose tier another match is
raising reads either the tier the member earned there or, once pushed, the matched tier, which
the partner reports with its end (``SOURCE_IS_MATCHED``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import Clock
from exchange.connectors.connector import PartnerConnector
from exchange.connectors.registry import ConnectorRegistry
from exchange.db import dialects
from exchange.db.database import Database
from exchange.db.paging import Keyset, Page, read_page
from exchange.db.types import MAX_INTEGER
from exchange.errors import BadUserInput, IdempotencyConflict
from exchange.idempotency import claiming, keyed, record_once, same_request
from exchange.members.models import LinkedAccount
from exchange.members.service import AccountNotLinked
from exchange.programs import service as programs
from exchange.programs.models import Program
from exchange.sagas.engine import SagaPolicy
from exchange.settings import Settings
from exchange.tiers.errors import (
    MatchNotGranted,
    MatchTooSoon,
    SameProgram,
    StatusMatchNotFound,
    TierNotVerified,
    UnknownTierName,
)
from exchange.tiers.levels import rung_of, rungs
from exchange.tiers.models import COUNTED, MatchStatus, MatchStep, StatusMatch, StatusMatchReport
from exchange.tiers.policy import (
    Challenge,
    Decision,
    MatchPolicy,
    Rung,
    decide,
    next_match_allowed,
)
from exchange.tiers.saga import MatchSaga


@dataclass(frozen=True, slots=True)
class Assessment:
    """What a match from one program into another would give the member now, and why."""

    from_program: str
    to_program: str
    source_ref: str
    target_ref: str
    source: Rung
    current: Rung
    decision: Decision
    policy: MatchPolicy | None
    expires_at: datetime | None
    """When the match would end, if granted now."""
    possible_at: datetime | None
    """When the member may next be matched into the target, if not now."""

    @property
    def challenge(self) -> Challenge | None:
        return self.policy.challenge if self.policy is not None else None


@dataclass(frozen=True, slots=True)
class _MatchRequest:
    """What a status-match request asks, as its idempotency key names it."""

    from_program: str
    to_program: str
    claimed_tier: str | None

    def made(self, match: StatusMatch) -> bool:
        """Whether ``match`` (under this request's key) was made for this request: the same
        pair, and the same tier claimed (or none claimed, both times)."""
        return (match.from_program, match.to_program, match.claimed_tier) == (
            self.from_program,
            self.to_program,
            self.claimed_tier,
        )

    async def answered(self, session: AsyncSession, member_id: str, key: str) -> StatusMatch | None:
        """The match the member's ``key`` holds, if it was made for this request
        (``IDEMPOTENCY_CONFLICT`` if for another); ``None`` if the key holds none yet."""
        existing = await keyed(session, StatusMatch, member_id, key)
        return same_request(existing, key, self.made) if existing is not None else None


STATUS_MATCHES: Table = StatusMatch.__table__  # type: ignore[attr-defined]


@dataclass
class StatusMatching:
    db: Database
    connector_for: Callable[[Program], PartnerConnector]
    saga: MatchSaga
    clock: Clock

    @classmethod
    def for_settings(
        cls, settings: Settings, *, db: Database, connectors: ConnectorRegistry, clock: Clock
    ) -> StatusMatching:
        """Status matching as the gateway runs it."""
        saga = MatchSaga(
            db=db, connector_for=connectors.for_program, clock=clock, policy=SagaPolicy.for_settings(settings)
        )
        return cls(db=db, connector_for=connectors.for_program, saga=saga, clock=clock)

    async def preview(self, member_id: str, from_program: str, to_program: str) -> Assessment:
        """What :meth:`request` would grant now (the member's tiers read live)."""
        return await self._assess(member_id, from_program, to_program)

    async def request(
        self,
        member_id: str,
        from_program: str,
        to_program: str,
        claimed_tier: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> StatusMatch:
        """Verify, decide, record and push a match; the match as far as it got.

        ``claimed_tier``, when given, is the tier the member says they hold at the source: a
        lower tier reported by the source partner refuses the request (``TIER_NOT_VERIFIED``).
        ``idempotency_key``, when given, names the request (:mod:`exchange.idempotency`):
        the same key again returns the match it made, as it stands now (no partner asked, no
        rule applied again), and the same key with another pair or claim is
        ``IDEMPOTENCY_CONFLICT``. Without a key a request sent twice is refused the second
        time by the one-match-a-year rule.
        """
        request = _MatchRequest(from_program, to_program, claimed_tier)
        if (answered := await self._answered(request, member_id, idempotency_key)) is not None:
            return answered
        assessment = await self._assess(member_id, from_program, to_program, claimed_tier=claimed_tier)
        if assessment.possible_at is not None:
            # The same key's request that recorded while this one asked the partners: the match
            # it made is the answer, not a refusal of this one as too soon.
            if (answered := await self._answered(request, member_id, idempotency_key)) is not None:
                return answered
            raise MatchTooSoon(to_program, assessment.possible_at)
        decision = assessment.decision
        if not decision.granted:
            raise MatchNotGranted(decision.reason, decision.outcome.value)
        assert decision.tier is not None and decision.level is not None and assessment.policy is not None
        now = self.clock.now()
        async with self.db.transaction() as session:
            await _lock_accounts(session, member_id, assessment)
            # The same key's request that recorded while this one asked the partners (it held the
            # lock first): its match is the answer, not a refusal of this one as too soon.
            if (
                idempotency_key is not None
                and (answered := await request.answered(session, member_id, idempotency_key)) is not None
            ):
                return answered
            last = await _last_counted(session, member_id, to_program)
            if last is not None and next_match_allowed(last) > now:
                raise MatchTooSoon(to_program, next_match_allowed(last))
            challenge = assessment.policy.challenge
            match_id = str(uuid.uuid4())
            match, created = await record_once(
                session,
                StatusMatch,
                claiming(dialects.insert(session, STATUS_MATCHES)).values(
                    id=match_id,
                    member_id=member_id,
                    idempotency_key=idempotency_key,
                    from_program=from_program,
                    to_program=to_program,
                    claimed_tier=claimed_tier,
                    source_ref=assessment.source_ref,
                    target_ref=assessment.target_ref,
                    source_tier=assessment.source.name,
                    source_level=assessment.source.level,
                    tier=decision.tier.name,
                    level=decision.level,
                    expires_at=now + assessment.policy.validity,
                    tier_operation=f"{match_id}:match",
                    challenge_points=challenge.points if challenge else None,
                    challenge_activities=challenge.activities if challenge else None,
                    extend_days=challenge.extend_days if challenge else None,
                    points_earned=0,
                    activities_done=0,
                    extended=False,
                    **self.saga.policy.start(now, step=MatchStep.PUSH, status=MatchStatus.PENDING),
                ),
                member_id=member_id,
                key=idempotency_key or "",  # without a key nothing conflicts: the row is always made
                same=request.made,
            )
            assert match is not None, "only the key is unique among what a match is inserted with"
        return await self.saga.drive(match) if created else match

    async def record_activity(
        self, program_id: str, match_id: str, points: int, activities: int, *, key: str | None = None
    ) -> StatusMatch:
        """The target partner reports what a matched member earned or did towards the challenge.

        Only while the match is ACTIVE and before it expires. The report that meets the
        challenge starts the extension at once. A report sent with the idempotency ``key`` of
        one counted already (a retry after a lost answer) answers the match as it stands,
        counting nothing; with other figures it is ``IdempotencyConflict``.
        """
        for name, value in (("points", points), ("activities", activities)):
            if value < 0:
                raise BadUserInput(f"{name} cannot be negative", field=name)
        if points == activities == 0:
            raise BadUserInput("report some points or activities", field="points")
        now = self.clock.now()
        async with self.db.transaction() as session:
            match = (
                await session.exec(select(StatusMatch).where(StatusMatch.id == match_id).with_for_update())
            ).first()
            if match is None or match.to_program != program_id:
                raise StatusMatchNotFound(match_id)
            if key is not None:
                counted = await session.get(StatusMatchReport, (match_id, key))
                if counted is not None:
                    if (counted.points, counted.activities) != (points, activities):
                        raise IdempotencyConflict(
                            f"idempotencyKey {key!r} reported other figures for status match {match_id}",
                            field="idempotencyKey",
                        )
                    return match
                session.add(
                    StatusMatchReport(
                        match_id=match_id, idempotency_key=key, points=points, activities=activities, recorded_at=now
                    )
                )
            if match.status != MatchStatus.ACTIVE or match.expires_at <= now:
                raise BadUserInput(f"status match {match_id} is not active", field="matchId")
            challenge = match.challenge
            was_met = challenge is not None and challenge.met(match.points_earned, match.activities_done)
            # The counters are 32-bit columns: past their top they stop (no challenge needs more).
            match.points_earned = min(match.points_earned + points, MAX_INTEGER)
            match.activities_done = min(match.activities_done + activities, MAX_INTEGER)
            start_extension = (
                challenge is not None
                and not was_met
                and not match.extended
                and challenge.met(match.points_earned, match.activities_done)
            )
            if start_extension:
                match.status, match.step = MatchStatus.UPDATING, MatchStep.EXTEND
                match.next_attempt_at = match.lease_until = now + self.saga.policy.lease
            match.updated_at = now
            session.add(match)
        return await self.saga.drive(match) if start_extension else match

    # -- assessing ----------------------------------------------------------------------

    async def _assess(
        self, member_id: str, from_program: str, to_program: str, *, claimed_tier: str | None = None
    ) -> Assessment:
        if from_program == to_program:
            raise SameProgram()
        async with self.db.transaction() as session:
            source_program = await programs.get_program(session, from_program, field="fromProgram")
            target_program = await programs.get_program(session, to_program, field="toProgram")
            links = await _links(session, member_id, (from_program, to_program))
            tiers = await programs.tiers_by_program(session, (from_program, to_program))
            last = await _last_counted(session, member_id, to_program)
        if from_program not in links:
            raise AccountNotLinked(from_program, "fromProgram")
        if to_program not in links:
            raise AccountNotLinked(to_program, "toProgram")
        claimed = None
        if claimed_tier is not None:
            if claimed_tier not in {tier.name for tier in tiers.get(from_program, [])}:
                raise UnknownTierName(from_program, claimed_tier, "claimedTier")
            claimed = rung_of(claimed_tier, tiers.get(from_program, []))
        source_account, target_account = await asyncio.gather(
            self.connector_for(source_program).account(links[from_program]),
            self.connector_for(target_program).account(links[to_program]),
        )
        source = rung_of(source_account.tier, tiers.get(from_program, []))
        current = rung_of(target_account.tier, tiers.get(to_program, []))
        if claimed is not None and source.level < claimed.level:
            raise TierNotVerified(from_program, claimed.name, source.name)
        policy = MatchPolicy.from_stored(target_program.status_match)
        decision = decide(
            source_program=from_program,
            source=source,
            source_is_matched=source_account.tier_expires_at is not None,
            target_program=to_program,
            target_tiers=rungs(tiers.get(to_program, [])),
            current=current,
            policy=policy,
        )
        now = self.clock.now()
        possible_at = next_match_allowed(last) if last is not None else None
        return Assessment(
            from_program=from_program,
            to_program=to_program,
            source_ref=links[from_program],
            target_ref=links[to_program],
            source=source,
            current=current,
            decision=decision,
            policy=policy,
            expires_at=now + policy.validity if decision.granted and policy is not None else None,
            possible_at=possible_at if possible_at is not None and possible_at > now else None,
        )

    async def _answered(self, request: _MatchRequest, member_id: str, key: str | None) -> StatusMatch | None:
        """The match the member's ``key`` holds for ``request``, if any (none without a key)."""
        if key is None:
            return None
        async with self.db.transaction() as session:
            return await request.answered(session, member_id, key)


#: A member's status matches, newest first.
MEMBER_MATCHES = Keyset("statusMatches", (col(StatusMatch.created_at), col(StatusMatch.id)), descending=True)


async def member_matches(
    session: AsyncSession, member_id: str, *, first: int, after: str | None = None
) -> Page[StatusMatch]:
    """A page of the member's status matches, newest first, after the cursor ``after``."""
    statement = select(StatusMatch).where(StatusMatch.member_id == member_id)
    return await read_page(session, statement, MEMBER_MATCHES, scope=member_id, first=first, after=after)


async def _lock_accounts(session: AsyncSession, member_id: str, assessment: Assessment) -> None:
    """Lock the member's accounts at the match's source and target, in program order, each of
    which must still be the account assessed: one unlinked since (an unlink locks it to delete
    it) is refused as an account never linked is. The target is locked for update, so that two
    matches into it take turns at the one-match-a-year rule; the source under a key-share lock,
    as a conversion locks both its accounts: the weakest an unlink waits for, which neither a
    conversion nor a match out of the same account waits for, so none of them deadlocks with
    a match locking its two accounts."""
    fields = {assessment.from_program: "fromProgram", assessment.to_program: "toProgram"}
    refs = {assessment.from_program: assessment.source_ref, assessment.to_program: assessment.target_ref}
    for program_id in sorted(fields):
        statement = select(LinkedAccount).where(
            LinkedAccount.member_id == member_id, LinkedAccount.program_id == program_id
        )
        target = program_id == assessment.to_program
        locked = (
            await session.exec(
                statement.with_for_update() if target else statement.with_for_update(read=True, key_share=True)
            )
        ).first()
        if locked is None or locked.member_ref != refs[program_id]:
            raise AccountNotLinked(program_id, fields[program_id])


async def _links(session: AsyncSession, member_id: str, program_ids: Sequence[str]) -> dict[str, str]:
    rows = await session.exec(
        select(LinkedAccount).where(
            LinkedAccount.member_id == member_id, col(LinkedAccount.program_id).in_(list(program_ids))
        )
    )
    return {row.program_id: row.member_ref for row in rows}


async def _last_counted(session: AsyncSession, member_id: str, program_id: str) -> datetime | None:
    """When the member's latest match into ``program_id`` that counts was made."""
    return (
        await session.exec(
            select(StatusMatch.created_at)
            .where(
                StatusMatch.member_id == member_id,
                StatusMatch.to_program == program_id,
                col(StatusMatch.status).in_(list(COUNTED)),
            )
            .order_by(col(StatusMatch.created_at).desc())
            .limit(1)
        )
    ).first()
