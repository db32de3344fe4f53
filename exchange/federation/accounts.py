"""A member's accounts at every linked partner, fetched concurrently.

The view takes as long as the slowest partner, not the sum of them: every partner is asked
at once. A partner that cannot answer yields that account's error, and the others still
show. The member's coalition level (for the tier bonus) is the highest level among their
accounts' current tiers, as the partners report them (a status match shows there too).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ScalarSelect, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.connectors.connector import PartnerConnector
from exchange.connectors.contract import MemberAccount
from exchange.connectors.errors import PartnerError
from exchange.conversions.models import Conversion
from exchange.db.database import Database
from exchange.errors import BadUserInput
from exchange.federation.cache import SnapshotCache
from exchange.members import service as members
from exchange.members.models import LinkedAccount, LinkMethod
from exchange.programs import service as programs
from exchange.programs.catalog import CatalogCache
from exchange.programs.models import Program


@dataclass(frozen=True, slots=True)
class AccountView:
    """One linked account as the partner reports it now, or the error that prevented it."""

    link: LinkedAccount
    program: Program
    account: MemberAccount | None
    level: int | None
    error: PartnerError | None


def _activity_marker(member_id: str) -> ScalarSelect[Any]:
    """Changes whenever the exchange moves the member's points (a conversion step)."""
    return select(func.max(Conversion.updated_at)).where(Conversion.member_id == member_id).scalar_subquery()


async def _links_and_marker(session: AsyncSession, member_id: str) -> tuple[list[LinkedAccount], object]:
    """The member's linked accounts and activity marker, in one query."""
    rows = (
        await session.exec(
            select(LinkedAccount, _activity_marker(member_id))
            .where(LinkedAccount.member_id == member_id)
            .order_by(col(LinkedAccount.program_id))
        )
    ).all()
    return [link for link, _ in rows], rows[0][1] if rows else None


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

    async def accounts(
        self, member_id: str, *, links: Sequence[LinkedAccount] | None = None, for_tiers: bool = False
    ) -> list[AccountView]:
        """Every linked account of the member (``links``, when the caller has them already),
        each fetched live (or from a fresh cache)."""
        catalog = await self.catalog.get()
        async with self.db.transaction() as session:
            if links is None:
                links, marker = await _links_and_marker(session, member_id)
            else:
                marker = (await session.exec(select(_activity_marker(member_id)))).one()
        return list(
            await asyncio.gather(
                *(
                    self._view(
                        link,
                        catalog.program(link.program_id),
                        catalog.tier_levels.get(link.program_id, {}),
                        marker,
                        for_tiers,
                    )
                    for link in links
                )
            )
        )

    async def _view(
        self, link: LinkedAccount, program: Program, levels: dict[str, int], marker: object, for_tiers: bool
    ) -> AccountView:
        key = (link.member_id, link.program_id)
        account = self.cache.tier(key) if for_tiers else self.cache.balance(key, marker)
        if account is None:
            try:
                account = await self.connector_for(program).account(link.member_ref)
            except PartnerError as error:
                return AccountView(link, program, None, None, error)
            self.cache.put(key, account, marker)
        return AccountView(link, program, account, levels.get(account.tier), None)

    async def coalition_level(self, member_id: str) -> int:
        """The highest coalition level among the member's reachable accounts (0 if none)."""
        views = await self.accounts(member_id, for_tiers=True)
        return max((view.level for view in views if view.level is not None), default=0)

    async def link(
        self, member_id: str, program_id: str, member_ref: str, verification: str, now: datetime
    ) -> LinkedAccount:
        """Link the member's account at a program once its partner confirms it is theirs."""
        members.check_member_ref(member_ref)
        async with self.db.transaction() as session:
            program = await programs.get_program(session, program_id, field="programId")
        if not await self.connector_for(program).verify_member(member_ref, verification):
            raise VerificationFailed(program_id)
        async with self.db.transaction() as session:
            return await members.link_account(
                session, member_id, program_id, member_ref, now, method=LinkMethod.VERIFIED
            )


class VerificationFailed(BadUserInput):
    def __init__(self, program_id: str) -> None:
        super().__init__(f"{program_id} does not confirm this account with that verification", field="verification")
