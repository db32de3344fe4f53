"""The federated view asks the partner that has lately answered slowest first (the others a turn
of the event loop later), and still shows the accounts in the member's order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from exchange.connectors.connector import PartnerConnector
from exchange.connectors.contract import MemberAccount
from exchange.db.database import Database
from exchange.federation.accounts import Federation
from exchange.loading import load_directory
from exchange.programs.catalog import CatalogCache
from exchange.programs.declarations import PartnersDirectory
from exchange.programs.models import Program
from tests.factories import member_with_accounts

NOW = datetime(2026, 11, 2, 9, tzinfo=UTC)
#: How long each stub partner takes to answer: harbor-bank is the slow one.
DELAYS = {"fresh-mart": 0.0, "happy-card": 0.0, "harbor-bank": 0.05, "wallet-pay": 0.0}


class Partner:
    """A stand-in connector that answers after its delay and notes when it was asked."""

    def __init__(self, program_id: str, asked: list[str]) -> None:
        self.program_id = program_id
        self.asked = asked

    async def account(self, member_ref: str) -> MemberAccount:
        self.asked.append(self.program_id)
        await asyncio.sleep(DELAYS[self.program_id])
        return MemberAccount(member_ref=member_ref, balance=100, tier="Member")


async def test_the_slowest_partner_lately_is_asked_first(pg_db: Database, sample_partners: PartnersDirectory) -> None:
    async with pg_db.transaction() as session:
        await load_directory(session, sample_partners, NOW)
    member = await member_with_accounts(pg_db, {program: f"ref-{program}" for program in DELAYS}, NOW)
    asked: list[str] = []
    partners = {program: Partner(program, asked) for program in DELAYS}

    def connector_for(program: Program) -> PartnerConnector:
        return partners[program.id]  # type: ignore[return-value]  # only account() is called

    federation = Federation(pg_db, connector_for, CatalogCache(pg_db, ttl=0), balance_ttl=0, tier_ttl=0)

    first = await federation.accounts(member)
    assert sorted(asked) == sorted(DELAYS)  # none answered before: every one is asked
    asked.clear()
    second = await federation.accounts(member)

    assert asked[0] == "harbor-bank"
    assert [view.program.id for view in first] == [view.program.id for view in second] == sorted(DELAYS)
    assert all(view.account is not None and view.account.balance == 100 for view in second)


async def test_the_others_begin_a_turn_after_the_slowest(pg_db: Database, sample_partners: PartnersDirectory) -> None:
    """aiohttp writes a request's body a turn of the event loop after its call begins: the other
    partners' calls wait that turn, so the slowest's request goes out before they are prepared."""
    async with pg_db.transaction() as session:
        await load_directory(session, sample_partners, NOW)
    member = await member_with_accounts(pg_db, {program: f"ref-{program}" for program in DELAYS}, NOW)
    turned: list[str] = []  # set by a callback the slowest partner schedules as its call begins
    begun: dict[str, bool] = {}  # each partner: whether that turn had passed when its call began

    class Turning(Partner):
        async def account(self, member_ref: str) -> MemberAccount:
            begun[self.program_id] = bool(turned)
            if self.program_id == "harbor-bank":
                asyncio.get_running_loop().call_soon(turned.append, "turn")
            return await super().account(member_ref)

    asked: list[str] = []
    partners = {program: Turning(program, asked) for program in DELAYS}

    def connector_for(program: Program) -> PartnerConnector:
        return partners[program.id]  # type: ignore[return-value]  # only account() is called

    federation = Federation(pg_db, connector_for, CatalogCache(pg_db, ttl=0), balance_ttl=0, tier_ttl=0)
    await federation.accounts(member)  # harbor-bank is known as the slowest from now on
    turned.clear()
    begun.clear()
    await federation.accounts(member)

    assert begun == {program: program != "harbor-bank" for program in DELAYS}
