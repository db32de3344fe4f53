"""A member's accounts at every linked partner, fetched concurrently.

The view takes as long as the slowest partner, not the sum of them: every partner is asked
at once. A partner that cannot answer yields that account's error, and the others still
show. The member's coalition level (for the tier bonus) is the highest level among their
accounts' current tiers, as the partners report them (a status match shows there too).

Answers are cached for a few seconds (:mod:`exchange.federation.cache`), against the member's
activity markers, which the database moves: ``member.activity`` whenever one of the member's
sagas — a conversion, a redemption, a status match — records a step or falls in doubt
(balances may be stale then: a partner's write may have applied),
``member.tier_activity`` whenever a status match finishes a run (tiers are stale then); both when
the member unlinks an account (:mod:`exchange.unlinking.service`). The markers are
read with the member's links, in the same statement.

Lookups of one account under the same markers that are in flight at once share one call to
the partner: a document that repeats ``me { accounts }`` under many aliases (or requests
arriving together) costs each partner one call, not one per alias.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.connectors.connector import PartnerConnector
from exchange.connectors.contract import MemberAccount
from exchange.connectors.errors import PartnerError, UnknownMember
from exchange.db.database import Database
from exchange.federation.answer_times import AnswerTimes
from exchange.federation.cache import SnapshotCache
from exchange.federation.link_attempts import VerificationFailed
from exchange.members import service as members
from exchange.members.models import ActivityMarkers, LinkedAccount, LinkMethod, Member
from exchange.members.validation import MembershipRefused, check_name_given, validate_membership
from exchange.programs import service as programs
from exchange.programs.catalog import Catalog, CatalogCache
from exchange.programs.models import Program, ProgramKind
from exchange.risk import reasons
from exchange.risk.decisions import decision, record_refusal
from exchange.risk.models import Decision, RiskDecision, Subject
from exchange.risk.policy import RiskPolicy


@dataclass(frozen=True, slots=True)
class AccountView:
    """One linked account as the partner reports it now, or the error that prevented it."""

    link: LinkedAccount
    program: Program
    account: MemberAccount | None
    level: int | None
    error: PartnerError | None


_LINKS_AND_ACTIVITY = (
    select(LinkedAccount, Member.activity, Member.tier_activity)
    .join(Member, col(Member.id) == col(LinkedAccount.member_id))
    .where(LinkedAccount.member_id == bindparam("member_id"))
    .order_by(col(LinkedAccount.program_id))
)


async def links_and_activity(session: AsyncSession, member_id: str) -> tuple[list[LinkedAccount], ActivityMarkers]:
    """The member's linked accounts (by program) and activity markers, in one query."""
    rows = (await session.exec(_LINKS_AND_ACTIVITY, params={"member_id": member_id})).all()
    if not rows:
        return [], ActivityMarkers(balances=0, tiers=0)
    return [link for link, _, _ in rows], ActivityMarkers(balances=rows[0][1], tiers=rows[0][2])


@dataclass(frozen=True, slots=True)
class LevelRead:
    """A member's coalition ``level`` and their tier activity marker (``member.tier_activity``)
    as it stood when the level was read: the level stands while the marker does (an unlink, or
    a status match's end, moves it)."""

    level: int
    tier_activity: int


class Federation:
    def __init__(
        self,
        db: Database,
        connector_for: Callable[[Program], PartnerConnector],
        catalog: CatalogCache,
        *,
        balance_ttl: float,
        tier_ttl: float,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.connector_for = connector_for
        self.catalog = catalog
        self.cache = SnapshotCache(balance_ttl=balance_ttl, tier_ttl=tier_ttl, timer=timer)
        self.answer_times = AnswerTimes()
        self._timer = timer
        self._fetching: dict[tuple[tuple[str, str], ActivityMarkers], asyncio.Future[MemberAccount]] = {}

    async def accounts(
        self,
        member_id: str,
        *,
        links: Sequence[LinkedAccount] | None = None,
        activity: ActivityMarkers | None = None,
    ) -> list[AccountView]:
        """Every linked account of the member, each fetched live (or from a cache entry taken
        since their last activity). ``links`` and ``activity``, when the caller read them
        already (both, in one statement: ``links_and_activity``), save the query."""
        if links is None or activity is None:
            async with self.db.transaction() as session:
                links, activity = await links_and_activity(session, member_id)
        return await self._views(links, activity, for_tiers=False)

    async def accounts_as_answered(
        self, links: Sequence[LinkedAccount], activity: ActivityMarkers
    ) -> list[asyncio.Future[AccountView]]:
        """:meth:`accounts`, each account's view a future that is done when its partner answers
        (or at once, from the cache), in the order of ``links``: for a caller that shows each
        account as it comes, instead of all of them once the slowest partner has answered."""
        return await self._pending_views(links, activity, for_tiers=False)

    async def accounts_at(self, member_id: str, program_ids: Collection[str]) -> list[AccountView]:
        """The member's accounts at ``program_ids`` as :meth:`accounts` shows them (only their
        partners asked, at once, or their cached answers); a program where the member has no
        account is left out."""
        async with self.db.transaction() as session:
            links, activity = await links_and_activity(session, member_id)
        return await self._views([link for link in links if link.program_id in program_ids], activity, for_tiers=False)

    async def coalition_level(self, member_id: str) -> int:
        """The highest coalition level among the member's reachable accounts (0 if none)."""
        return (await self.level_read(member_id)).level

    async def level_read(self, member_id: str) -> LevelRead:
        """:meth:`coalition_level`, with the tier activity marker it was read under."""
        async with self.db.transaction() as session:
            links, activity = await links_and_activity(session, member_id)
        return LevelRead(await self.level(links, activity), activity.tiers)

    async def level(self, links: Sequence[LinkedAccount], activity: ActivityMarkers) -> int:
        """The coalition level of the member with ``links`` and activity markers ``activity``:
        tiers from the tier cache, and from the partners for those it lacks."""
        views = await self._views(links, activity, for_tiers=True)
        return max((view.level for view in views if view.level is not None), default=0)

    def cached_level(self, catalog: Catalog, links: Sequence[LinkedAccount], activity: ActivityMarkers) -> int | None:
        """:meth:`level` if every tier it needs is cached (no partner asked), else ``None``; the
        tiers' levels from ``catalog``, as the caller read it: asked inside a unit of work, this
        reads nothing (on SQLite a catalog read there would wait for the one connection, which
        that unit of work holds, until it timed out)."""
        levels = []
        for link in links:
            account = self.cache.tier((link.member_id, link.program_id), activity)
            if account is None:
                return None
            levels.append(catalog.tier_levels.get(link.program_id, {}).get(account.tier))
        return max((level for level in levels if level is not None), default=0)

    async def _views(
        self, links: Sequence[LinkedAccount], activity: ActivityMarkers, *, for_tiers: bool
    ) -> list[AccountView]:
        """Each link's view, for balances or (``for_tiers``, cached longer) for tiers, in the
        order of ``links``."""
        return list(await asyncio.gather(*await self._pending_views(links, activity, for_tiers=for_tiers)))

    async def _pending_views(
        self, links: Sequence[LinkedAccount], activity: ActivityMarkers, *, for_tiers: bool
    ) -> list[asyncio.Future[AccountView]]:
        """:meth:`_views`, each view a future, in the order of ``links``. Every call a view
        needs is begun here, before this returns (not from a task of the view's own, a turn of
        the event loop later). The partners are asked first, the slowest lately first
        (:mod:`~exchange.federation.answer_times`), and the coalition point, which is a read of
        the exchange's own database, last: that read then overlaps the partners' answers instead
        of delaying every request to them."""
        catalog = await self.catalog.get()
        programs = {link.program_id: catalog.program(link.program_id) for link in links}
        asked = sorted(
            links,
            key=lambda link: (
                programs[link.program_id].kind == ProgramKind.COALITION,
                -self.answer_times.expected(link.program_id),
            ),
        )
        calls_begun = itertools.count()
        by_program = {
            link.program_id: self._view(
                link,
                programs[link.program_id],
                catalog.tier_levels.get(link.program_id, {}),
                activity,
                calls_begun,
                for_tiers=for_tiers,
            )
            for link in asked
        }
        return [by_program[link.program_id] for link in links]

    def _view(
        self,
        link: LinkedAccount,
        program: Program,
        levels: dict[str, int],
        activity: ActivityMarkers,
        calls_begun: Iterator[int],
        *,
        for_tiers: bool,
    ) -> asyncio.Future[AccountView]:
        """The view of ``link``: at once from the cache, else once its partner's answer (or
        error) comes, the call to the partner begun now (``calls_begun`` counts the view's)."""
        key = (link.member_id, link.program_id)
        account = self.cache.tier(key, activity) if for_tiers else self.cache.balance(key, activity)
        if account is not None:
            cached: asyncio.Future[AccountView] = asyncio.get_running_loop().create_future()
            cached.set_result(AccountView(link, program, account, levels.get(account.tier), None))
            return cached
        return asyncio.ensure_future(
            self._answered(
                link, program, levels, activity, self._fetch(key, program, link.member_ref, activity, calls_begun)
            )
        )

    async def _answered(
        self,
        link: LinkedAccount,
        program: Program,
        levels: dict[str, int],
        activity: ActivityMarkers,
        call: asyncio.Future[MemberAccount],
    ) -> AccountView:
        """The view of ``link`` once ``call`` to its partner ends, the answer cached."""
        try:
            account = await asyncio.shield(call)
        except PartnerError as error:
            return AccountView(link, program, None, None, error)
        self.cache.put((link.member_id, link.program_id), account, activity)
        return AccountView(link, program, account, levels.get(account.tier), None)

    def _fetch(
        self,
        key: tuple[str, str],
        program: Program,
        member_ref: str,
        activity: ActivityMarkers,
        calls_begun: Iterator[int],
    ) -> asyncio.Future[MemberAccount]:
        """The partner's answer for one account: the call already in flight for it under the
        same markers, if any (a later marker never joins an earlier call's answer), else a new
        one, begun now. A waiter that is cancelled leaves the call to the others (each waits
        through :func:`asyncio.shield`)."""
        flight = (key, activity)
        call = self._fetching.get(flight)
        if call is None:
            call = asyncio.ensure_future(self._ask(program, member_ref, first=next(calls_begun) == 0))
            self._fetching[flight] = call
            asked_at = self._timer()
            call.add_done_callback(lambda done: self._landed(flight, done, asked_at))
        return call

    async def _ask(self, program: Program, member_ref: str, *, first: bool) -> MemberAccount:
        """The partner's account call (a partner that cannot be called fails it, as an answer
        would); all but the ``first`` of a view's calls begin a turn of the event loop later.
        aiohttp writes a request's body in a task of its own, a turn after the call begins: the
        first partner asked (the slowest lately) had its request written only after every other
        partner's was prepared (about 0.4 ms of CPU each) and the coalition point's read sent."""
        if not first:
            await asyncio.sleep(0)
        return await self.connector_for(program).account(member_ref)

    def _landed(
        self, flight: tuple[tuple[str, str], ActivityMarkers], call: asyncio.Future[MemberAccount], asked_at: float
    ) -> None:
        self._fetching.pop(flight, None)
        if not call.cancelled():
            call.exception()  # retrieved, also when every waiter was cancelled
            self.answer_times.record(flight[0][1], self._timer() - asked_at)

    async def link(
        self,
        member_id: str,
        program_id: str,
        member_ref: str,
        verification: str,
        now: datetime,
        *,
        name: str | None = None,
    ) -> LinkedAccount:
        """Link the member's account at a program once its partner confirms it is theirs, is
        eligible, and (if the member gave ``name``) has that name on record
        (:mod:`exchange.members.validation`). The verdict is recorded in the risk decision log:
        an allow with the link, a refusal on its own after nothing else was written."""
        members.check_member_ref(member_ref)
        async with self.db.transaction() as session:
            program = await programs.get_program(session, program_id, field="programId")
        policy = RiskPolicy.of(program.risk)
        name_required = policy is not None and policy.refuse_name_mismatch
        name = check_name_given(program_id, name, required=name_required)
        try:
            answer = await self.connector_for(program).verify_member(member_ref, verification)
        except UnknownMember:
            # Refused as a wrong verification is: which member ids a partner has is not for a
            # caller to find out by trying them (and the refusal names the field to check).
            raise VerificationFailed(program_id) from None
        if not answer.verified:
            raise VerificationFailed(program_id)

        def verdict(kind: Decision, reason: str, rule: str | None = None) -> RiskDecision:
            return decision(
                Subject.LINK,
                kind,
                reason=reason,
                rule=rule,
                member_id=member_id,
                program_id=program_id,
                member_ref=member_ref,
                now=now,
            )

        try:
            validate_membership(program_id, answer, name, name_required=name_required)
        except MembershipRefused as refused:
            await record_refusal(self.db, verdict(Decision.REFUSE, refused.message, refused.rule))
            raise
        async with self.db.transaction() as session:
            link = await members.link_account(
                session, member_id, program_id, member_ref, now, method=LinkMethod.VERIFIED, holder_name=answer.name
            )
            verified = reasons.LINK_VERIFIED if name is None else reasons.LINK_VERIFIED_WITH_NAME
            session.add(verdict(Decision.ALLOW, verified.text(program=program_id)))
            return link
