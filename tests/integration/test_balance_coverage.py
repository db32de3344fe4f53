"""Whether a member's balances cover points about to be spent (exchange.services.balances), as
the quote and reward pages read them: only the paying programs' partners are asked, and one
that does not answer leaves its balance unread rather than failing the reading."""

from __future__ import annotations

from datetime import UTC, datetime

from exchange.connectors.connector import PartnerConnector
from exchange.connectors.contract import MemberAccount
from exchange.connectors.errors import PartnerUnavailable
from exchange.db.database import Database
from exchange.federation.accounts import Federation
from exchange.loading import load_directory
from exchange.programs.catalog import CatalogCache
from exchange.programs.declarations import PartnersDirectory
from exchange.programs.models import Program
from exchange.services.balances import Coverage, coverage
from tests.factories import member_with_accounts

NOW = datetime(2026, 11, 2, 9, tzinfo=UTC)
#: What each stub partner says the member holds; ``None``: it does not answer.
BALANCES: dict[str, int | None] = {"fresh-mart": 300, "happy-card": 1_000, "wallet-pay": None, "harbor-bank": 50}


class Partner:
    """A stand-in connector answering the member's balance (or failing), noting that it was asked."""

    def __init__(self, program_id: str, asked: list[str]) -> None:
        self.program_id = program_id
        self.asked = asked

    async def account(self, member_ref: str) -> MemberAccount:
        self.asked.append(self.program_id)
        balance = BALANCES[self.program_id]
        if balance is None:
            raise PartnerUnavailable("down", program_id=self.program_id, call="account")
        return MemberAccount(member_ref=member_ref, balance=balance, tier="Member")


async def test_each_paying_programs_balance_is_read_beside_its_points_and_a_silent_partner_leaves_it_unread(
    pg_db: Database, sample_partners: PartnersDirectory
) -> None:
    async with pg_db.transaction() as session:
        await load_directory(session, sample_partners, NOW)
    # No account at coalition: a program the member has none at is left unread, not refused.
    member = await member_with_accounts(pg_db, {program: f"ref-{program}" for program in BALANCES}, NOW)
    asked: list[str] = []
    partners = {program: Partner(program, asked) for program in BALANCES}

    def connector_for(program: Program) -> PartnerConnector:
        return partners[program.id]  # type: ignore[return-value]  # only account() is called

    federation = Federation(pg_db, connector_for, CatalogCache(pg_db, ttl=0), balance_ttl=0, tier_ttl=0)

    needed = {"fresh-mart": 400, "happy-card": 1_000, "wallet-pay": 10, "coalition": 5}
    covered = await coverage(federation, member, needed)

    assert covered == {
        "fresh-mart": Coverage(needed=400, balance=300),
        "happy-card": Coverage(needed=1_000, balance=1_000),
        "wallet-pay": Coverage(needed=10, balance=None),
        "coalition": Coverage(needed=5, balance=None),
    }
    assert [program for program, cover in covered.items() if cover.short] == ["fresh-mart"], "all it holds is enough"
    assert sorted(asked) == ["fresh-mart", "happy-card", "wallet-pay"], "harbor-bank pays nothing here: not asked"
