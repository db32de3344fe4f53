"""Debit consents in the store: given through the program's own token, used at most once by
one guarded UPDATE, left unused by a unit of work that fails, forgotten a day after expiry."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db.database import Database
from exchange.errors import IdempotencyConflict
from exchange.loading import load_directory
from exchange.members.authority import AuthorityRequired, DebitAuthority
from exchange.members.consents import DebitConsents, GrantedConsent, authorize_debit
from exchange.members.models import DebitConsent, LinkedAccount, LinkMethod
from exchange.members.service import AccountNotLinked
from exchange.programs.declarations import PartnersDirectory
from exchange.unlinking import service as unlinking
from tests.clocks import MovableClock
from tests.factories import member_with_accounts

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


@dataclass
class World:
    db: Database
    clock: MovableClock
    consents: DebitConsents
    alice: str

    async def grant(self, points: int = 1000) -> str:
        granted = await self.consents.grant(
            member_id=self.alice, asserted_by="happy-card", program="happy-card", points=points
        )
        return granted.secret

    async def use(self, secret: str, points: int = 1000, used_for: str = "conversion:c1") -> None:
        async with self.db.transaction() as session:
            await self.use_in(session, secret, points, used_for)

    async def use_in(
        self, session: AsyncSession, secret: str, points: int = 1000, used_for: str = "conversion:c1"
    ) -> None:
        await authorize_debit(
            session,
            DebitAuthority(asserted_by="wallet-pay", consent=secret),
            member_id=self.alice,
            program="happy-card",
            points=points,
            used_for=used_for,
            now=self.clock.now(),
            field="quoteId",
        )

    async def rows(self) -> list[DebitConsent]:
        async with self.db.transaction() as session:
            return list((await session.exec(select(DebitConsent))).all())


async def world_on(db: Database, partners: PartnersDirectory) -> World:
    async with db.transaction() as session:
        await load_directory(session, partners, T0)
    clock = MovableClock(T0)
    alice = await member_with_accounts(db, {"happy-card": "alice", "wallet-pay": "alice"}, T0)
    return World(
        db,
        clock,
        DebitConsents(
            db=db, clock=clock, ttl=timedelta(minutes=5), key_secret="a test key-encryption secret, 32+ characters long"
        ),
        alice,
    )


@pytest.fixture
async def world(db: Database, sample_partners: PartnersDirectory) -> World:
    return await world_on(db, sample_partners)


@pytest.fixture
async def pg_world(pg_db: Database, sample_partners: PartnersDirectory) -> World:
    return await world_on(pg_db, sample_partners)


def reason(refused: pytest.ExceptionInfo[AuthorityRequired]) -> str:
    return str(refused.value.details["reason"])


async def test_a_consent_is_given_only_under_the_programs_own_token(world: World) -> None:
    with pytest.raises(AuthorityRequired) as refused:
        await world.consents.grant(member_id=world.alice, asserted_by="wallet-pay", program="happy-card", points=1)
    assert (refused.value.field, reason(refused)) == ("programId", "NOT_ASSERTED")
    assert await world.rows() == []


async def test_a_consent_is_used_once_and_a_refused_use_changes_nothing(world: World) -> None:
    secret = await world.grant()
    (row,) = await world.rows()
    assert (row.points, row.expires_at, row.used_at) == (1000, T0 + timedelta(minutes=5), None)
    assert secret not in row.secret_hash

    with pytest.raises(AuthorityRequired) as refused:
        await world.use(secret, points=999)
    assert (refused.value.field, reason(refused)) == ("consent", "CONSENT_OTHER_POINTS")
    await world.use(secret)
    with pytest.raises(AuthorityRequired) as again:
        await world.use(secret, used_for="conversion:c2")
    assert reason(again) == "CONSENT_USED"
    (row,) = await world.rows()
    assert (row.used_at, row.used_for) == (T0, "conversion:c1")


async def test_a_consent_is_not_used_by_a_unit_of_work_that_fails_later(world: World) -> None:
    secret = await world.grant()
    with pytest.raises(RuntimeError):
        async with world.db.transaction() as session:
            await world.use_in(session, secret)
            raise RuntimeError("the stock ran out after the consent was checked")
    await world.use(secret)


async def test_an_expired_consent_is_refused_then_forgotten_a_day_later(world: World) -> None:
    forgotten, used = await world.grant(), await world.grant()
    await world.use(used)
    world.clock.advance(timedelta(minutes=5))
    with pytest.raises(AuthorityRequired) as refused:
        await world.use(forgotten)
    assert reason(refused) == "CONSENT_EXPIRED"
    world.clock.advance(timedelta(days=1, seconds=1))
    await world.grant()  # granting clears unused consents a day past their expiry
    rows = await world.rows()
    assert len(rows) == 2 and sum(row.used_at is not None for row in rows) == 1, "the used one stays, as a record"
    with pytest.raises(AuthorityRequired) as unknown:
        await world.use(forgotten)
    assert reason(unknown) == "CONSENT_UNKNOWN"


async def test_unlinking_the_account_revokes_the_consents_to_debit_it_that_are_unused(world: World) -> None:
    """Consents given through happy-card die with alice's account there, in the unlink's unit
    of work, on either store: none debits the account she links there next, and none is given
    while she has no account there. A used one stays the record it was; a consent to debit
    another program is not the unlink's."""
    used, unused = await world.grant(), await world.grant()
    await world.use(used)
    other = await world.consents.grant(member_id=world.alice, asserted_by="wallet-pay", program="wallet-pay", points=5)
    world.clock.advance(timedelta(seconds=30))
    async with world.db.transaction() as session:
        await unlinking.unlink(session, world.alice, "happy-card", "alice", world.clock.now(), signed_in_through=())
    with pytest.raises(AccountNotLinked) as unlinked:  # nor is one given with no account there
        await world.grant()
    assert unlinked.value.field == "programId"
    async with world.db.transaction() as session:  # she links another account there
        session.add(
            LinkedAccount(
                member_id=world.alice,
                program_id="happy-card",
                member_ref="alice-2",
                linked_at=world.clock.now(),
                established_by=LinkMethod.ASSERTION,
            )
        )

    with pytest.raises(AuthorityRequired) as refused:
        await world.use(unused, used_for="conversion:c2")
    assert (refused.value.field, reason(refused)) == ("consent", "CONSENT_REVOKED")
    assert "unlinked" in refused.value.message
    rows = {(row.used_for, row.revoked_at) for row in await world.rows() if row.program_id == "happy-card"}
    assert rows == {("conversion:c1", None), (None, world.clock.now())}
    async with world.db.transaction() as session:  # the other program's consent is as it was
        await authorize_debit(
            session,
            DebitAuthority(asserted_by="happy-card", consent=other.secret),
            member_id=world.alice,
            program="wallet-pay",
            points=5,
            used_for="conversion:c3",
            now=world.clock.now(),
            field="quoteId",
        )


async def test_a_second_use_waits_for_the_first_and_is_refused_once_it_commits(pg_world: World) -> None:
    secret = await pg_world.grant()
    used, release = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with pg_world.db.transaction() as session:
            await pg_world.use_in(session, secret)
            used.set()
            await release.wait()

    holder = asyncio.create_task(first())
    await used.wait()
    second = asyncio.create_task(pg_world.use(secret, used_for="conversion:c2"))
    await asyncio.sleep(0.3)
    assert not second.done(), "the second use queues on the consent's row"
    release.set()
    await holder
    with pytest.raises(AuthorityRequired) as refused:
        await second
    assert reason(refused) == "CONSENT_USED"


async def test_a_second_use_succeeds_when_the_first_rolls_back(pg_world: World) -> None:
    secret = await pg_world.grant()
    used, release = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with pg_world.db.transaction() as session:
            await pg_world.use_in(session, secret)
            used.set()
            await release.wait()
            raise RuntimeError("the conversion's limits were exceeded")

    holder = asyncio.create_task(first())
    await used.wait()
    second = asyncio.create_task(pg_world.use(secret, used_for="conversion:c2"))
    await asyncio.sleep(0.3)
    release.set()
    with pytest.raises(RuntimeError):
        await holder
    await second
    (row,) = await pg_world.rows()
    assert row.used_for == "conversion:c2"


async def test_a_consent_asked_again_under_its_key_is_the_same_consent_not_a_second(world: World) -> None:
    """A retry after a lost answer gave a second consent, and a second debit could be made. The
    same key and request answer the first consent, its secret again (used, it pays for nothing
    more); the same key for other points is a conflict; another member's key is their own."""

    async def grant(points: int = 1000, member: str | None = None) -> GrantedConsent:
        return await world.consents.grant(
            member_id=member or world.alice, asserted_by="happy-card", program="happy-card", points=points, key="c-1"
        )

    first = await grant()
    again = await grant()
    assert (again.secret, again.consent.secret_hash) == (first.secret, first.consent.secret_hash)
    assert [row.secret_hash for row in await world.rows()] == [first.consent.secret_hash]
    assert all(row.sealed_secret != first.secret for row in await world.rows()), "sealed, not kept as given"
    with pytest.raises(IdempotencyConflict) as conflict:
        await grant(points=2000)
    assert conflict.value.field == "idempotencyKey"

    await world.use(first.secret)
    used = await grant()
    assert used.secret == first.secret and used.consent.used_for == "conversion:c1"
    with pytest.raises(AuthorityRequired):
        await world.use(used.secret, used_for="conversion:c2")
    bob = await member_with_accounts(world.db, {"happy-card": "bob"}, T0)
    assert (await grant(member=bob)).secret != first.secret


async def test_a_consent_asked_again_under_its_key_after_the_unlink_answers_it_revoked(world: World) -> None:
    """The answer to a keyed consent was lost and alice unlinked happy-card before retrying: the
    retry answered AccountNotLinked, as if no consent had been given. It answers the consent the
    key holds, revoked by the unlink and paying for nothing; a new key is refused, no account."""
    granted = await world.consents.grant(
        member_id=world.alice, asserted_by="happy-card", program="happy-card", points=1000, key="c-1"
    )
    async with world.db.transaction() as session:
        await unlinking.unlink(session, world.alice, "happy-card", "alice", world.clock.now(), signed_in_through=())
    again = await world.consents.grant(
        member_id=world.alice, asserted_by="happy-card", program="happy-card", points=1000, key="c-1"
    )
    assert (again.secret, again.consent.revoked_at) == (granted.secret, world.clock.now())
    with pytest.raises(IdempotencyConflict):
        await world.consents.grant(
            member_id=world.alice, asserted_by="happy-card", program="happy-card", points=2000, key="c-1"
        )
    with pytest.raises(AccountNotLinked):
        await world.consents.grant(
            member_id=world.alice, asserted_by="happy-card", program="happy-card", points=1000, key="c-2"
        )
    with pytest.raises(AuthorityRequired) as refused:
        await world.use(again.secret)
    assert reason(refused) == "CONSENT_REVOKED"
    assert len(await world.rows()) == 1
