"""Members: a partner's vouching creates the member once; lookups are scoped to a program."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import func, select

from exchange.db.database import Database
from exchange.members import service as members
from exchange.members.models import LinkedAccount, Member
from exchange.programs.declarations import read_partners_directory
from exchange.programs.service import load_partners
from tests.conftest import SAMPLE_PARTNERS
from tests.reads import rows_read

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


@pytest.fixture
async def loaded(db: Database) -> Database:
    async with db.transaction() as session:
        await load_partners(session, read_partners_directory(SAMPLE_PARTNERS), NOW)
    return db


async def test_a_new_account_creates_the_member_and_the_same_account_finds_them_again(
    loaded: Database,
) -> None:
    async with loaded.transaction() as session:
        alice = await members.resolve_member_from_partner(session, "wallet-pay", "alice", NOW)
    async with loaded.transaction() as session:
        again = await members.resolve_member_from_partner(session, "wallet-pay", "alice", NOW + timedelta(days=1))
        accounts = await members.linked_accounts(session, [alice.id])
    assert again.id == alice.id and alice.id.startswith("mbr_")
    assert again.created_at == NOW
    coalition, account = accounts[alice.id]
    assert (account.program_id, account.member_ref, account.established_by) == ("wallet-pay", "alice", "assertion")
    assert account.linked_at == NOW
    # Every member has an account at the coalition point, under their own id.
    assert (coalition.program_id, coalition.member_ref, coalition.established_by) == (
        "coalition",
        alice.id,
        "coalition",
    )


async def test_the_same_ref_at_two_programs_is_two_members(loaded: Database) -> None:
    async with loaded.transaction() as session:
        at_wallet = await members.resolve_member_from_partner(session, "wallet-pay", "alice", NOW)
        at_air = await members.resolve_member_from_partner(session, "formosa-air", "alice", NOW)
    assert at_wallet.id != at_air.id


@pytest.mark.parametrize("ref", ["", " alice", "alice\n", "x" * 129, "\uff11\uff12", "Jos\u00e9", ".", ".."])
async def test_a_malformed_member_ref_is_refused(loaded: Database, ref: str) -> None:
    async with loaded.transaction() as session:
        with pytest.raises(members.InvalidMemberRef) as caught:
            await members.resolve_member_from_partner(session, "wallet-pay", ref, NOW)
    assert caught.value.extensions()["field"] == "memberRef"


async def test_a_partner_sees_a_member_only_through_its_own_program(loaded: Database) -> None:
    async with loaded.transaction() as session:
        bob = await members.resolve_member_from_partner(session, "wallet-pay", "bob", NOW)
    async with loaded.transaction() as session:
        member, accounts = await members.get_member_linked_to(session, bob.id, "wallet-pay")
        assert member.id == bob.id and [a.program_id for a in accounts] == ["coalition", "wallet-pay"]
        with pytest.raises(members.MemberNotLinked) as foreign:
            await members.get_member_linked_to(session, bob.id, "formosa-air")
        with pytest.raises(members.MemberNotLinked) as missing:
            await members.get_member_linked_to(session, "mbr_nobody", "formosa-air")
    assert foreign.value.message == missing.value.message
    assert foreign.value.extensions()["code"] == "FORBIDDEN"


async def test_accounts_at_programs_page_by_member_ref_per_program(loaded: Database) -> None:
    async with loaded.transaction() as session:
        for ref in ("dave", "alice", "carol", "bob"):
            await members.resolve_member_from_partner(session, "fresh-mart", ref, NOW)
        for ref in ("erin", "bob"):
            await members.resolve_member_from_partner(session, "wallet-pay", ref, NOW)
    programs = ["fresh-mart", "wallet-pay", "formosa-air"]
    async with loaded.transaction() as session:
        first = await members.accounts_at_programs(session, programs, first=3)
        rest = await members.accounts_at_programs(session, ["fresh-mart"], first=3, after="carol")
    assert {program: [a.member_ref for a in accounts] for program, accounts in first.items()} == {
        "fresh-mart": ["alice", "bob", "carol"],
        "wallet-pay": ["bob", "erin"],
    }
    assert [a.member_ref for a in rest["fresh-mart"]] == ["dave"]


@pytest.mark.postgres_only
async def test_concurrent_first_assertions_for_one_account_make_one_member(pg_db: Database) -> None:
    async with pg_db.transaction() as session:
        await load_partners(session, read_partners_directory(SAMPLE_PARTNERS), NOW)

    async def vouch() -> str:
        async with pg_db.transaction() as session:
            return (await members.resolve_member_from_partner(session, "happy-card", "carol", NOW)).id

    ids = await asyncio.gather(*(vouch() for _ in range(8)))
    assert len(set(ids)) == 1
    async with pg_db.transaction() as session:
        assert (await session.exec(select(func.count()).select_from(Member))).one() == 1
        # The account at wallet-pay, and the member's own at the coalition point.
        assert (await session.exec(select(func.count()).select_from(LinkedAccount))).one() == 2


@pytest.mark.postgres_only
async def test_a_page_of_a_programs_accounts_reads_that_page_not_every_account(pg_db: Database) -> None:
    async with pg_db.transaction() as session:
        await load_partners(session, read_partners_directory(SAMPLE_PARTNERS), NOW)
        session.add_all(Member(id=f"mbr_{number:04}", created_at=NOW) for number in range(1000))
        await session.flush()  # the accounts' members first
        session.add_all(
            LinkedAccount(
                member_id=f"mbr_{number:04}",
                program_id=program,
                member_ref=f"ref{number:04}",
                linked_at=NOW,
                established_by="assertion",
            )
            for number in range(1000)
            for program in ("fresh-mart", "wallet-pay")
            if program == "fresh-mart" or number % 100 == 0
        )
    async with pg_db.transaction() as session:
        pages, read = await rows_read(
            session,
            ["linked_account"],
            lambda: members.accounts_at_programs(session, ["fresh-mart", "wallet-pay"], first=20, after="ref0100"),
        )
    assert [a.member_ref for a in pages["fresh-mart"]] == [f"ref{number:04}" for number in range(101, 121)]
    assert [a.member_ref for a in pages["wallet-pay"]] == [f"ref{number:04}" for number in range(200, 1000, 100)]
    # Each program's page, read by index up to its end: not the 900 fresh-mart accounts after it.
    assert read == {"linked_account": 20 + 8}
