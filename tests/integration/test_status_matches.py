"""Status matches against real sandbox partners: live verification, the push, the challenge,
expiry and the target partner told, and pushes and reverts whose outcome was unknown."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import pytest
from sqlmodel import select

from exchange.connectors.connector import PartnerConnector
from exchange.connectors.contract import MemberAccount
from exchange.connectors.registry import ConnectorRegistry
from exchange.db.database import Database
from exchange.errors import IdempotencyConflict, NotFound
from exchange.loading import load_directory
from exchange.members.models import LinkedAccount
from exchange.members.service import AccountNotLinked
from exchange.programs import service as programs
from exchange.programs.declarations import PartnersDirectory
from exchange.sagas.engine import SagaPolicy
from exchange.sandbox.faults import CannedAnswer, FaultKind
from exchange.settings import Settings
from exchange.testing.clock import FrozenClock
from exchange.testing.sandboxes import SandboxFleet
from exchange.tiers import matching
from exchange.tiers.errors import MatchNotGranted, MatchTooSoon, TierNotVerified
from exchange.tiers.expiry import MatchExpiry
from exchange.tiers.matching import StatusMatching
from exchange.tiers.models import MatchStatus, StatusMatch
from exchange.tiers.policy import Outcome
from exchange.tiers.saga import MatchSaga
from exchange.unlinking import service as unlinking
from exchange.unlinking.service import Rule, UnlinkRefused
from tests.factories import member_with_accounts
from tests.integration.locks import waiting_on_a_lock


class SettableClock(Protocol):
    """The ``sandbox_clock`` fixture: the partners' wall clock, moved by tests."""

    def now(self) -> datetime: ...

    def advance(self, delta: timedelta) -> None: ...


@dataclass
class World:
    db: Database
    clock: FrozenClock
    sandbox_clock: SettableClock
    sandboxes: SandboxFleet
    registry: ConnectorRegistry
    matching: StatusMatching
    member: str

    def advance(self, delta: timedelta) -> None:
        """Move the exchange's and the partners' clocks together."""
        self.clock.advance(seconds=delta.total_seconds())
        self.sandbox_clock.advance(delta)

    async def airline(self) -> PartnerConnector:
        async with self.db.transaction() as session:
            return self.registry.for_program(await programs.get_program(session, "formosa-air"))

    async def airline_account(self) -> MemberAccount:
        return await (await self.airline()).account("carol")

    async def matches(self) -> list[StatusMatch]:
        async with self.db.transaction() as session:
            return list((await session.exec(select(StatusMatch))).all())


async def make_world(
    db: Database,
    sandboxes: SandboxFleet,
    sample_partners: PartnersDirectory,
    sandbox_clock: SettableClock,
    retries: int = 1,
) -> AsyncIterator[World]:
    """``retries``: tries of each partner call (1: a fault meets the saga, not a retry)."""
    await sandboxes.start("harbor-bank", "formosa-air", "fresh-mart")
    clock = FrozenClock(sandbox_clock.now())
    settings = Settings(partner_retry_attempts=retries)
    async with db.transaction() as session:
        await load_directory(session, sample_partners, clock.now())
    # bob holds Platinum Card (level 2) at the bank; carol is Base at the airline.
    member = await member_with_accounts(
        db, {"harbor-bank": "bob", "formosa-air": "carol", "fresh-mart": "carol"}, clock.now()
    )
    registry = sandboxes.registry(settings)
    saga = MatchSaga(
        db=db, connector_for=registry.for_program, clock=clock, policy=SagaPolicy(timezone=settings.timezone)
    )
    try:
        yield World(
            db, clock, sandbox_clock, sandboxes, registry, StatusMatching(db, registry.for_program, saga, clock), member
        )
    finally:
        await registry.aclose()


@pytest.fixture
async def world(
    request: pytest.FixtureRequest,
    pg_db: Database,
    sandboxes: SandboxFleet,
    sample_partners: PartnersDirectory,
    sandbox_clock: SettableClock,
) -> AsyncIterator[World]:
    """Each partner call tried once, or as many times as an indirect parameter says."""
    async for made in make_world(pg_db, sandboxes, sample_partners, sandbox_clock, getattr(request, "param", 1)):
        yield made


@pytest.fixture
async def any_db_world(
    db: Database, sandboxes: SandboxFleet, sample_partners: PartnersDirectory, sandbox_clock: SettableClock
) -> AsyncIterator[World]:
    async for made in make_world(db, sandboxes, sample_partners, sandbox_clock):
        yield made


async def test_a_verified_tier_is_matched_held_by_the_partner_and_reverted_when_it_expires(any_db_world: World) -> None:
    world = any_db_world
    preview = await world.matching.preview(world.member, "harbor-bank", "formosa-air")
    assert preview.decision.outcome is Outcome.GRANTED
    assert (preview.source.name, preview.decision.tier and preview.decision.tier.name) == ("Platinum Card", "Gold")
    assert preview.expires_at == world.clock.now() + timedelta(days=90)

    match = await world.matching.request(world.member, "harbor-bank", "formosa-air")
    assert (match.status, match.tier, match.level) == (MatchStatus.ACTIVE, "Gold", 2)
    held = await world.airline_account()
    assert (held.tier, held.tier_expires_at) == ("Gold", match.expires_at)

    world.advance(timedelta(days=89))
    assert await MatchExpiry(world.matching.saga).run_once() == 0
    assert (await world.airline_account()).tier == "Gold", "the partner reports the match until it expires"

    world.advance(timedelta(days=2))
    assert await MatchExpiry(world.matching.saga).run_once() == 1
    [expired] = await world.matches()
    assert expired.status == MatchStatus.EXPIRED
    assert (await world.airline_account()).tier == "Base"
    log = {entry["operation_id"]: entry for entry in await world.sandboxes["formosa-air"].admin.operations()}
    assert log[f"{match.id}:revert"]["reverses"] == f"{match.id}:match"
    assert log[f"{match.id}:match"]["status"] == "reversed"


async def test_live_verification_refuses_a_tier_above_what_the_source_partner_reports(world: World) -> None:
    with pytest.raises(TierNotVerified) as refused:
        await world.matching.request(world.member, "harbor-bank", "formosa-air", claimed_tier="Infinite")
    assert refused.value.details["verifiedTier"] == "Platinum Card"
    assert await world.matches() == []
    assert await world.sandboxes["formosa-air"].admin.operations() == []
    match = await world.matching.request(world.member, "harbor-bank", "formosa-air", claimed_tier="Classic")
    assert match.status == MatchStatus.ACTIVE, "a claim at or below the verified tier is fine"


async def test_one_match_per_target_program_per_twelve_months(world: World) -> None:
    first = await world.matching.request(world.member, "harbor-bank", "formosa-air")
    world.advance(timedelta(days=100))
    await MatchExpiry(world.matching.saga).run_once()
    with pytest.raises(MatchTooSoon) as refused:
        await world.matching.request(world.member, "harbor-bank", "formosa-air")
    assert refused.value.details["possibleAt"] == first.created_at.replace(year=first.created_at.year + 1).isoformat()
    preview = await world.matching.preview(world.member, "harbor-bank", "formosa-air")
    assert preview.possible_at == first.created_at.replace(year=first.created_at.year + 1)


async def test_a_keyed_match_sent_again_returns_the_first_as_it_stands_on_either_store(any_db_world: World) -> None:
    """A key's match is found again on SQLite as on PostgreSQL, even once it moved on (here:
    expired), and another request under the key is refused; the keyless rule stands beside it."""
    world = any_db_world
    first = await world.matching.request(world.member, "harbor-bank", "formosa-air", idempotency_key="m-1")
    world.advance(timedelta(days=91))
    await MatchExpiry(world.matching.saga).run_once()
    again = await world.matching.request(world.member, "harbor-bank", "formosa-air", idempotency_key="m-1")
    assert (again.id, again.status) == (first.id, MatchStatus.EXPIRED)
    with pytest.raises(IdempotencyConflict) as conflict:
        await world.matching.request(
            world.member, "harbor-bank", "formosa-air", claimed_tier="Platinum Card", idempotency_key="m-1"
        )
    assert conflict.value.field == "idempotencyKey"
    with pytest.raises(MatchTooSoon):
        await world.matching.request(world.member, "harbor-bank", "formosa-air")
    assert [match.id for match in await world.matches()] == [first.id]


@pytest.mark.parametrize(
    ("program", "member_ref", "field"),
    [("formosa-air", "carol", "toProgram"), ("harbor-bank", "bob", "fromProgram")],
    ids=["target", "source"],
)
async def test_a_match_with_an_account_unlinked_while_it_was_assessed_is_refused(
    world: World, program: str, member_ref: str, field: str
) -> None:
    """The unlink holds the account, deleted but not committed, when the request (assessed
    already: the partners asked) comes to record: it waits on the account's lock, and then finds
    it gone; the account matched into (carol's at the airline), or the one the tier was read from
    (bob's at the bank), which the match would otherwise be recorded from though the unlink, which
    saw no match in progress, ended it."""
    async with world.db.transaction() as session:
        await unlinking.unlink(session, world.member, program, member_ref, world.clock.now(), signed_in_through=())
        requesting = asyncio.create_task(world.matching.request(world.member, "harbor-bank", "formosa-air"))
        await waiting_on_a_lock(world.db)
    with pytest.raises(AccountNotLinked) as refused:
        await requesting
    assert refused.value.field == field
    assert await world.matches() == []
    assert (await world.airline_account()).tier == "Base", "nothing pushed"


async def test_an_unlink_of_the_source_meeting_a_match_being_recorded_waits_and_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other order: the match holds both accounts while it records; the unlink of the
    account its tier was read from waits, then sees the match unfinished and refuses. A
    conversion out of that account meanwhile does not wait: it locks its accounts as the match
    locks the source (key-share), so the two never deadlock taking their two locks."""
    holding, go = asyncio.Event(), asyncio.Event()
    record_once = matching.record_once

    async def recorded_then_held(*args: Any, **kwargs: Any) -> Any:
        recorded = await record_once(*args, **kwargs)  # the match inserted, not committed
        holding.set()
        await go.wait()
        return recorded

    async def recorded_only(match: StatusMatch) -> StatusMatch:
        return match  # the process stopped before the push: the match stays PENDING

    monkeypatch.setattr(matching, "record_once", recorded_then_held)
    monkeypatch.setattr(world.matching.saga, "drive", recorded_only)
    requesting = asyncio.create_task(world.matching.request(world.member, "harbor-bank", "formosa-air"))
    await holding.wait()

    async def unlink() -> unlinking.Unlinked:
        async with world.db.transaction() as session:
            return await unlinking.unlink(
                session, world.member, "harbor-bank", "bob", world.clock.now(), signed_in_through=()
            )

    async with world.db.transaction() as session:  # as a conversion locks it; NOWAIT: refused if it had to wait
        source = select(LinkedAccount).where(
            LinkedAccount.member_id == world.member, LinkedAccount.program_id == "harbor-bank"
        )
        assert (
            await session.exec(source.with_for_update(read=True, key_share=True, nowait=True))
        ).one().member_ref == "bob"
    unlinking_task = asyncio.create_task(unlink())
    await waiting_on_a_lock(world.db)
    go.set()
    match = await requesting
    with pytest.raises(UnlinkRefused) as refused:
        await unlinking_task
    assert (refused.value.rule, refused.value.details["sagaId"]) == (Rule.SAGA_IN_PROGRESS, match.id)


async def test_a_program_that_grants_no_matches_refuses_with_the_reason(world: World) -> None:
    with pytest.raises(MatchNotGranted) as refused:
        await world.matching.request(world.member, "harbor-bank", "fresh-mart")
    assert refused.value.details["reason"] == "NOT_GRANTED"
    assert refused.value.message == "fresh-mart grants no status matches"


async def test_a_push_whose_answer_was_lost_is_settled_by_recovery(world: World) -> None:
    await world.sandboxes["formosa-air"].admin.set_faults(script=[FaultKind.APPLY_THEN_DROP])
    match = await world.matching.request(world.member, "harbor-bank", "formosa-air")
    assert match.status == MatchStatus.PENDING and match.in_doubt
    world.advance(timedelta(minutes=5))
    assert await MatchExpiry(world.matching.saga).run_once() == 1
    [settled] = await world.matches()
    assert settled.status == MatchStatus.ACTIVE
    assert (await world.airline_account()).tier == "Gold"


async def test_a_push_that_never_applied_is_voided_and_does_not_count(world: World) -> None:
    await world.sandboxes["formosa-air"].admin.set_faults(script=[FaultKind.ERROR])
    match = await world.matching.request(world.member, "harbor-bank", "formosa-air")
    assert match.status == MatchStatus.PENDING
    world.advance(timedelta(minutes=5))
    await MatchExpiry(world.matching.saga).run_once()
    [failed] = await world.matches()
    assert failed.status == MatchStatus.FAILED
    log = {entry["operation_id"]: entry for entry in await world.sandboxes["formosa-air"].admin.operations()}
    assert log[f"{match.id}:match"]["status"] == "voided"
    assert (await world.airline_account()).tier == "Base"
    again = await world.matching.request(world.member, "harbor-bank", "formosa-air")
    assert again.status == MatchStatus.ACTIVE


@pytest.mark.parametrize("world", [1, Settings().partner_retry_attempts], indirect=True, ids=["once", "retried"])
async def test_a_push_the_partner_recorded_with_another_tier_is_reverted_and_fails_contradicted(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """formosa-air matches carol at another tier than the Gold sent (its bug) and answers so:
    the outcome is unknown (tried again, the push is refused as a conflict, which leaves it so),
    and recovery, finding the partner's record is not the match sent,
    does not take it as granted: it reverts it, and the match FAILS (it does not count) with
    PARTNER_CONTRADICTED and an error for staff."""
    await world.sandboxes["formosa-air"].admin.set_faults(script=[FaultKind.MISAPPLY])
    match = await world.matching.request(world.member, "harbor-bank", "formosa-air")
    assert (match.status, match.in_doubt) == (MatchStatus.PENDING, True)
    assert (await world.airline_account()).tier not in ("Gold", "Base")
    world.advance(timedelta(minutes=5))
    with caplog.at_level(logging.ERROR, logger="exchange.sagas"):
        assert await MatchExpiry(world.matching.saga).run_once() == 1
    [failed] = await world.matches()
    assert (failed.status, failed.failure_code) == (MatchStatus.FAILED, "PARTNER_CONTRADICTED")
    assert any("otherwise than it was sent" in record.getMessage() for record in caplog.records)
    log = {entry["operation_id"]: entry for entry in await world.sandboxes["formosa-air"].admin.operations()}
    assert log[f"{match.id}:match"]["status"] == "reversed"
    assert (await world.airline_account()).tier == "Base"
    again = await world.matching.request(world.member, "harbor-bank", "formosa-air")
    assert (again.status, again.tier) == (MatchStatus.ACTIVE, "Gold")


@pytest.mark.parametrize("fault", [FaultKind.APPLY_THEN_DROP, FaultKind.ERROR])
async def test_a_revert_whose_outcome_was_lost_is_sent_again_and_applies_once(world: World, fault: FaultKind) -> None:
    match = await world.matching.request(world.member, "harbor-bank", "formosa-air")
    world.advance(timedelta(days=91))
    formosa_air = world.sandboxes["formosa-air"].admin
    await formosa_air.set_faults(script=[fault])
    assert await MatchExpiry(world.matching.saga).run_once() == 1
    [reverting] = await world.matches()
    assert reverting.status == MatchStatus.UPDATING, "kept until the partner confirms the revert"
    assert await MatchExpiry(world.matching.saga).run_once() == 0, "asked again after a back-off"

    world.advance(timedelta(minutes=5))
    assert await MatchExpiry(world.matching.saga).run_once() == 1
    [expired] = await world.matches()
    assert expired.status == MatchStatus.EXPIRED
    assert (await world.airline_account()).tier == "Base"
    log = await formosa_air.operations()
    assert [entry["operation_id"] for entry in log if entry["reverses"]] == [f"{match.id}:revert"]
    assert {entry["operation_id"]: entry["status"] for entry in log}[f"{match.id}:match"] == "reversed"
    world.advance(timedelta(minutes=5))
    assert await MatchExpiry(world.matching.saga).run_once() == 0


async def test_a_revert_the_partner_made_on_its_own_meanwhile_ends_the_match_expired(world: World) -> None:
    """The revert fails (a 500) and formosa-air reverts the match itself meanwhile, under its
    own id: the exchange's revert, sent again, is refused (nothing is left to revert), which is
    what it asked for; the match is EXPIRED, not UPDATING for ever."""
    match = await world.matching.request(world.member, "harbor-bank", "formosa-air")
    world.advance(timedelta(days=91))
    await world.sandboxes["formosa-air"].admin.set_faults(script=[FaultKind.ERROR])
    assert await MatchExpiry(world.matching.saga).run_once() == 1
    await (await world.airline()).reverse("desk-revert-1", match.match_operation)
    world.advance(timedelta(minutes=5))
    assert await MatchExpiry(world.matching.saga).run_once() == 1
    [expired] = await world.matches()
    assert expired.status == MatchStatus.EXPIRED
    assert (await world.airline_account()).tier == "Base"


async def test_a_push_the_partner_reverted_on_its_own_while_in_doubt_fails_and_does_not_count(world: World) -> None:
    """The push applies and its answer is lost; formosa-air then reverts the match itself. Recovery
    finds the match reversed: nothing is left to void (a reversal is refused), so the match FAILS
    with PARTNER_REFUSED instead of staying PENDING for ever, and it does not count: carol can
    be matched again."""
    await world.sandboxes["formosa-air"].admin.set_faults(script=[FaultKind.APPLY_THEN_DROP])
    match = await world.matching.request(world.member, "harbor-bank", "formosa-air")
    assert (match.status, match.in_doubt) == (MatchStatus.PENDING, True)
    await (await world.airline()).reverse("desk-revert-1", match.match_operation)
    world.advance(timedelta(minutes=5))
    assert await MatchExpiry(world.matching.saga).run_once() == 1
    [failed] = await world.matches()
    assert (failed.status, failed.failure_code) == (MatchStatus.FAILED, "PARTNER_REFUSED")
    assert (await world.airline_account()).tier == "Base"
    again = await world.matching.request(world.member, "harbor-bank", "formosa-air")
    assert (again.status, again.tier) == (MatchStatus.ACTIVE, "Gold")


async def test_an_extension_the_partner_reverted_on_its_own_while_in_doubt_ends_the_match_expired(world: World) -> None:
    """The extension applies and its answer is lost; formosa-air then reverts it itself, which
    gives carol her own tier back. Recovery sends it again and is answered ``reversed``: the match
    ends EXPIRED with its old expiry, not ACTIVE with the extension's."""
    match = await world.matching.request(world.member, "harbor-bank", "formosa-air")
    await world.sandboxes["formosa-air"].admin.set_faults(script=[FaultKind.APPLY_THEN_DROP])
    extending = await world.matching.record_activity("formosa-air", match.id, 5000, 0)
    assert (extending.status, extending.in_doubt) == (MatchStatus.UPDATING, True)
    await (await world.airline()).reverse("desk-revert-1", match.extend_operation)
    world.advance(timedelta(minutes=5))
    assert await MatchExpiry(world.matching.saga).run_once() == 1
    [ended] = await world.matches()
    assert (ended.status, ended.failure_code, ended.extended) == (MatchStatus.EXPIRED, "PARTNER_REFUSED", False)
    assert ended.expires_at == match.expires_at
    assert (await world.airline_account()).tier == "Base"


@pytest.mark.parametrize("world", [1, Settings().partner_retry_attempts], indirect=True, ids=["once", "retried"])
async def test_an_extension_the_partner_recorded_with_another_tier_is_reverted_and_ends_the_match(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The challenge is met and formosa-air records the extension at another tier than Gold (its
    bug), answering so: the outcome is unknown (tried again at once, the extension is refused as
    a conflict, which leaves it so), and sending it again later only replays that answer.
    Recovery holds the partner's record against the extension sent, reverts it (which, by the
    contract, gives carol her own tier back) and ends the match EXPIRED with
    PARTNER_CONTRADICTED and an error for staff, as the partner now has it; not UPDATING for ever."""
    match = await world.matching.request(world.member, "harbor-bank", "formosa-air")
    await world.sandboxes["formosa-air"].admin.set_faults(script=[FaultKind.MISAPPLY])
    extending = await world.matching.record_activity("formosa-air", match.id, 5000, 0)
    assert (extending.status, extending.in_doubt) == (MatchStatus.UPDATING, True)
    with caplog.at_level(logging.ERROR, logger="exchange.sagas"):
        for _ in range(3):
            world.advance(timedelta(minutes=10))
            await MatchExpiry(world.matching.saga).run_once()
    [ended] = await world.matches()
    assert (ended.status, ended.failure_code, ended.extended) == (MatchStatus.EXPIRED, "PARTNER_CONTRADICTED", False)
    assert any("otherwise than it was sent" in record.getMessage() for record in caplog.records)
    log = {entry["operation_id"]: entry for entry in await world.sandboxes["formosa-air"].admin.operations()}
    assert log[f"{match.id}:extend"]["status"] == "reversed"
    assert (await world.airline_account()).tier == "Base"


async def test_meeting_the_challenge_keeps_the_tier_longer(world: World) -> None:
    match = await world.matching.request(world.member, "harbor-bank", "formosa-air")
    with pytest.raises(NotFound):
        await world.matching.record_activity("fresh-mart", match.id, 5000, 0)
    partly = await world.matching.record_activity("formosa-air", match.id, 3000, 0)
    assert (partly.status, partly.extended, partly.points_earned) == (MatchStatus.ACTIVE, False, 3000)
    met = await world.matching.record_activity("formosa-air", match.id, 2000, 0)
    assert (met.status, met.extended) == (MatchStatus.ACTIVE, True)
    assert met.expires_at == match.expires_at + timedelta(days=365)
    assert (await world.airline_account()).tier_expires_at == met.expires_at

    world.advance(timedelta(days=120))
    assert await MatchExpiry(world.matching.saga).run_once() == 0
    assert (await world.airline_account()).tier == "Gold"
    world.advance(timedelta(days=340))
    await MatchExpiry(world.matching.saga).run_once()
    assert (await world.airline_account()).tier == "Base"
    log = {entry["operation_id"]: entry for entry in await world.sandboxes["formosa-air"].admin.operations()}
    assert log[f"{match.id}:revert"]["reverses"] == f"{match.id}:extend"


def another_tier_answered(operation_id: str, expires_at: datetime) -> CannedAnswer:
    """A 200 whose body is a well-formed tier match of another tier than was sent, nothing
    applied: a broken partner's answer."""
    body = {
        "operation_id": operation_id,
        "kind": "tier_match",
        "status": "applied",
        "member_ref": "carol",
        "tier": "Platinum",
        "expires_at": expires_at.isoformat(),
        "created_at": expires_at.isoformat(),
    }
    return CannedAnswer(status=200, body=json.dumps(body))


async def recovered(world: World) -> StatusMatch:
    """The one match, once recovery has driven it final (a few passes, minutes apart)."""
    for _ in range(3):
        [match] = await world.matches()
        if match.status not in MatchSaga.active:
            return match
        world.advance(timedelta(minutes=10))
        await MatchExpiry(world.matching.saga).run_once()
    raise AssertionError(f"still {match.status} at {match.step}: {match.last_error}")


async def assert_partner_holds(world: World, match: StatusMatch) -> None:
    """What the member is told is what the partner holds: the matched tier until the match's
    expiry while it is ACTIVE, their own tier once it failed or expired."""
    account = await world.airline_account()
    if match.status == MatchStatus.ACTIVE:
        assert (account.tier, account.tier_expires_at) == (match.tier, match.expires_at)
    else:
        assert (account.tier, account.tier_expires_at) == ("Base", None)


@pytest.mark.parametrize(
    ("fault", "final"),
    [
        (FaultKind.ERROR, MatchStatus.FAILED),
        (FaultKind.APPLY_THEN_ERROR, MatchStatus.ACTIVE),
        (FaultKind.APPLY_THEN_DROP, MatchStatus.ACTIVE),
        (FaultKind.APPLY_THEN_GARBLE, MatchStatus.ACTIVE),
        (FaultKind.ANSWER, MatchStatus.FAILED),
    ],
)
async def test_a_fault_at_the_push_ends_as_the_partner_holds_it(
    world: World, fault: FaultKind, final: MatchStatus
) -> None:
    formosa_air = world.sandboxes["formosa-air"].admin
    answer = another_tier_answered("x", world.clock.now()) if fault is FaultKind.ANSWER else None
    await formosa_air.set_faults(script=[fault], answer=answer)
    pending = await world.matching.request(world.member, "harbor-bank", "formosa-air")
    assert (pending.status, pending.in_doubt) == (MatchStatus.PENDING, True)
    match = await recovered(world)
    assert match.status == final
    await assert_partner_holds(world, match)
    pushed = [entry for entry in await formosa_air.operations() if entry["operation_id"] == match.match_operation]
    assert [entry["status"] for entry in pushed] == ["applied" if final == MatchStatus.ACTIVE else "voided"]


@pytest.mark.parametrize(
    "fault",
    [
        FaultKind.ERROR,
        FaultKind.APPLY_THEN_ERROR,
        FaultKind.APPLY_THEN_DROP,
        FaultKind.APPLY_THEN_GARBLE,
        FaultKind.ANSWER,
    ],
)
async def test_a_fault_at_the_extension_ends_extended_as_the_partner_holds_it(world: World, fault: FaultKind) -> None:
    match = await world.matching.request(world.member, "harbor-bank", "formosa-air")
    formosa_air = world.sandboxes["formosa-air"].admin
    answer = another_tier_answered(match.extend_operation, match.expires_at) if fault is FaultKind.ANSWER else None
    await formosa_air.set_faults(script=[fault], answer=answer)
    extending = await world.matching.record_activity("formosa-air", match.id, 5000, 0)
    assert (extending.status, extending.in_doubt) == (MatchStatus.UPDATING, True)
    extended = await recovered(world)
    assert (extended.status, extended.extended) == (MatchStatus.ACTIVE, True)
    assert extended.expires_at == match.expires_at + timedelta(days=365)
    await assert_partner_holds(world, extended)
    log = [entry for entry in await formosa_air.operations() if entry["operation_id"] == match.extend_operation]
    assert [entry["status"] for entry in log] == ["applied"]


@pytest.mark.parametrize("fault", [FaultKind.APPLY_THEN_ERROR, FaultKind.APPLY_THEN_GARBLE, FaultKind.ANSWER])
async def test_a_fault_at_the_revert_ends_expired_as_the_partner_holds_it(world: World, fault: FaultKind) -> None:
    match = await world.matching.request(world.member, "harbor-bank", "formosa-air")
    world.advance(timedelta(days=91))
    formosa_air = world.sandboxes["formosa-air"].admin
    answer = CannedAnswer(status=200, body='{"operation_id": "nope"}') if fault is FaultKind.ANSWER else None
    await formosa_air.set_faults(script=[fault], answer=answer)
    assert await MatchExpiry(world.matching.saga).run_once() == 1
    [reverting] = await world.matches()
    assert reverting.status == MatchStatus.UPDATING
    expired = await recovered(world)
    assert expired.status == MatchStatus.EXPIRED
    await assert_partner_holds(world, expired)
    log = await formosa_air.operations()
    assert [entry["operation_id"] for entry in log if entry["reverses"]] == [match.revert_operation]
