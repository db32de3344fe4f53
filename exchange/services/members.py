"""Members and their accounts: a member's own view, a partner's view of its members, linking
and unlinking accounts, the federated view of every linked partner's live answer, and the consents a member
gives for debits under another partner's token."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from exchange.auth.principal import Principal
from exchange.clock import Clock
from exchange.db.database import Database
from exchange.errors import BadUserInput
from exchange.federation.accounts import AccountView, Federation
from exchange.federation.link_attempts import LinkAttempts
from exchange.members import service as members
from exchange.members.consents import DebitConsents, GrantedConsent
from exchange.members.models import ActivityMarkers, LinkedAccount, Member, MemberView
from exchange.programs.catalog import CatalogCache
from exchange.services.requests import idempotency_key, member_of, program_of
from exchange.unlinking import service as unlinking
from exchange.unlinking.service import Rule, Unlinked


def _through(caller: Principal, signed_in_through: Collection[str] | None) -> Collection[str]:
    """The programs vouching for the caller's sign-in: ``signed_in_through`` as given (a portal
    session's), else the one that asserted its token."""
    return signed_in_through if signed_in_through is not None else {str(caller.asserted_by)}


@dataclass
class MemberService:
    db: Database
    federation: Federation
    consents: DebitConsents
    catalog: CatalogCache
    clock: Clock
    link_attempts: LinkAttempts

    async def me(self, caller: Principal) -> MemberView:
        """The member behind a member token: as read with the token's standing, if it was
        (:attr:`~exchange.auth.principal.Principal.member_view`), else in one read (so no
        transaction around it)."""
        if caller.member_view is not None:
            return caller.member_view
        async with self.db.autocommit() as session:
            member, accounts = await members.member_with_accounts(session, member_of(caller))
        return MemberView(member, accounts)

    async def member_for_partner(self, caller: Principal, member_id: str) -> MemberView:
        """A member as a partner may see them: only one with an account at its program (any
        other id, existing or not, is refused alike)."""
        async with self.db.transaction() as session:
            member, accounts = await members.get_member_linked_to(session, member_id, program_of(caller))
        return MemberView(member, accounts)

    async def accounts_at_programs(
        self, program_ids: Iterable[str], *, first: int, after: str | None
    ) -> dict[str, list[LinkedAccount]]:
        """Each program's linked accounts by ``member_ref``, a page of them, in one query."""
        async with self.db.transaction() as session:
            return await members.accounts_at_programs(session, program_ids, first=first, after=after)

    async def vouched_for(self, program_id: str, member_ref: str) -> Member:
        """The member whose account at ``program_id`` is ``member_ref``, as that partner vouches
        for them (what its signed assertion does at the token endpoint): created, with that
        account linked, if new."""
        (await self.catalog.get()).program(program_id, field="programId")
        async with self.db.transaction() as session:
            return await members.resolve_member_from_partner(session, program_id, member_ref, self.clock.now())

    async def link_account(
        self, caller: Principal, program_id: str, member_ref: str, verification: str, *, name: str | None = None
    ) -> LinkedAccount:
        """Link the caller's account ``member_ref`` at a program once its partner confirms it
        (and the member's ``name``, if given or the program requires it). Failed proofs are
        limited (:mod:`~exchange.federation.link_attempts`)."""
        member_id = member_of(caller)
        async with self.link_attempts.attempt(member_id, program_id, member_ref):
            return await self.federation.link(
                member_id, program_id, member_ref, verification, self.clock.now(), name=name
            )

    async def unlink_account(
        self,
        caller: Principal,
        program_id: str,
        member_ref: str,
        *,
        signed_in_through: Collection[str] | None = None,
    ) -> Unlinked:
        """Unlink the caller's account ``member_ref`` at a program, by the rules of
        :mod:`exchange.unlinking.service`; a repeat answers with the first unlink.
        ``signed_in_through`` are the programs vouching for the caller's sign-in (a portal
        session may have several); by default the one that asserted its token."""
        member_id = member_of(caller)
        (await self.catalog.get()).program(program_id, field="programId")
        async with self.db.transaction() as session:
            return await unlinking.unlink(
                session,
                member_id,
                program_id,
                member_ref,
                self.clock.now(),
                signed_in_through=_through(caller, signed_in_through),
            )

    @staticmethod
    def kept_linked(
        caller: Principal, links: Iterable[LinkedAccount], *, signed_in_through: Collection[str] | None = None
    ) -> dict[str, Rule]:
        """The rule that keeps each of ``links`` linked whatever its sagas, by program (those
        :meth:`unlink_account` might unlink are left out): what a page offers no unlink for."""
        through = _through(caller, signed_in_through)
        return {link.program_id: rule for link in links if (rule := unlinking.standing_rule(link, through)) is not None}

    async def accounts(
        self, member_id: str, links: Sequence[LinkedAccount], activity: ActivityMarkers
    ) -> list[AccountView]:
        """The member's accounts as every linked partner reports them now, asked at once;
        ``links`` and the member's ``activity`` markers as read with the member (answers cached
        since that activity are reused)."""
        return await self.federation.accounts(member_id, links=links, activity=activity)

    async def accounts_as_answered(
        self, links: Sequence[LinkedAccount], activity: ActivityMarkers
    ) -> list[asyncio.Future[AccountView]]:
        """:meth:`accounts`, each account a future that is done as its partner answers, in the order
        of ``links``: for a caller that shows each account as it comes."""
        return await self.federation.accounts_as_answered(links, activity)

    async def authorize_debit(
        self, caller: Principal, program_id: str, points: int, *, field: str = "programId", key: str | None = None
    ) -> GrantedConsent:
        """The caller's consent to one debit of exactly ``points`` of ``program_id`` by a request
        under another partner's token; given only under a token ``program_id`` asserted (an
        unknown program is not found first). The points the exchange holds itself (the coalition
        point's) take no consent: no partner asserts for them, and any of the member's tokens with
        the scope ``member:coalition`` spends them. ``field`` is the argument that named the program,
        which a refusal names. With the member's idempotency ``key``, the request sent again answers
        the consent it gave (:meth:`~exchange.members.consents.DebitConsents.grant`)."""
        catalog = await self.catalog.get()
        catalog.program(program_id, field=field)
        if program_id in catalog.exchange_held:
            raise BadUserInput(
                f"the points of {program_id} need no consent: the exchange holds them, and any of the member's "
                "tokens with the scope member:coalition spends them",
                field=field,
            )
        return await self.consents.grant(
            member_id=member_of(caller),
            asserted_by=str(caller.asserted_by),
            program=program_id,
            points=points,
            field=field,
            key=None if key is None else idempotency_key(key),
        )

    async def coalition_level(self, member_id: str) -> int:
        """The highest coalition level among the member's accounts' current tiers."""
        return await self.federation.coalition_level(member_id)
