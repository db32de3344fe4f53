"""The soak: hundreds of conversions among four real partners with random faults, and the
gateway process killed (SIGKILL) and restarted mid-run (and, shorter, redemptions and their
cancels so, and status matches). Two of the partners answer later:
happy-card accepts debits and credits pending and calls back (callbacks sent while the
gateway is down are lost: polling makes up for them), fresh-mart takes its credits as files;
both decline a few. Afterwards every conversion is final, members' points moved by exactly
the conversions' net effect, and the ledger agrees line by line with every partner's
operation log."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import bindparam, text
from sqlmodel import select

from exchange.testing.sandboxes import SandboxFleet
from exchange.tiers.models import MatchStatus, StatusMatch
from exchange.tiers.saga import MatchSaga
from tests.integration.soaking import (
    MEMBERS,
    PROGRAMS,
    REDEEM,
    Soak,
    check_ledger_agrees,
    clear_faults,
    convert,
    inject_faults,
    patiently,
    publish_reward,
    running_soak,
    until_final,
)

CONVERSIONS = 320
CLIENTS = 8
#: Partners that answer later, and how.
MODES = {"happy-card": "async", "fresh-mart": "batch"}


@pytest.fixture
async def soak(pg_database_url: str, sandboxes: SandboxFleet, tmp_path: Path) -> AsyncIterator[Soak]:
    async with running_soak(
        pg_database_url,
        sandboxes,
        tmp_path,
        modes=MODES,
        EXCHANGE_BATCH_INTERVAL_SECONDS="0.5",
        EXCHANGE_PENDING_POLL_FIRST_SECONDS="0.5",
        EXCHANGE_PENDING_POLL_LONGEST_SECONDS="2",
    ) as running:
        yield running


async def test_soak_with_faults_and_a_hard_kill_ends_final_and_agreeing(soak: Soak) -> None:
    rng = random.Random(20261127)
    await inject_faults(soak, declines=3)
    numbers = iter(range(CONVERSIONS))

    async def client() -> None:
        for number in numbers:
            await convert(soak, rng, number)

    clients = [asyncio.create_task(client()) for _ in range(CLIENTS)]
    while len(soak.answered["conversion"]) < CONVERSIONS // 3:
        await asyncio.sleep(0.05)
    soak.gateway.kill()  # mid-run, with requests in flight
    await asyncio.sleep(0.5)
    await soak.gateway.start()
    await asyncio.gather(*clients)
    assert len(soak.answered["conversion"]) >= 300

    await clear_faults(soak)
    statuses = (await until_final(soak))["conversion"]
    assert statuses["COMPLETED"] > 200 and statuses["FAILED"] + statuses["REVERSED"] > 0, statuses
    await check_ledger_agrees(soak)
    # The partners that answer later did: by callback, and by settled credits files.
    assert 200 in {sent["answer"] for sent in await soak.sandboxes["happy-card"].admin.sent_callbacks()}
    async with soak.kit.db.transaction() as session:
        files = await session.exec(text("SELECT count(*) FROM credit_batch WHERE status = 'SETTLED'"))  # type: ignore[call-overload]
        assert files.one()[0] > 0


REDEMPTIONS = 40
CANCEL = """mutation($id: ID!) { cancelRedemption(redemptionId: $id) { id status } }"""


@pytest.fixture
async def realtime_soak(pg_database_url: str, sandboxes: SandboxFleet, tmp_path: Path) -> AsyncIterator[Soak]:
    """Partners that answer at once; rows leased for 4 s, more than a request's partner calls
    take here and short enough not to make recovery wait long for the killed requests' rows;
    status matches recovered as often as redemptions."""
    async with running_soak(
        pg_database_url,
        sandboxes,
        tmp_path,
        EXCHANGE_SAGA_LEASE_SECONDS="4",
        EXCHANGE_STATUS_MATCH_EXPIRY_INTERVAL_SECONDS="0.5",
    ) as running:
        yield running


async def redeem_and_maybe_cancel(
    soak: Soak, rng: random.Random, number: int, reward: str, cancelled: list[str]
) -> None:
    """One member's redemption, asked again with the same key until answered; two in five of
    those answered COMPLETED are then cancelled by the member, asked again until answered."""
    member, pay = rng.choice(MEMBERS), rng.choice(PROGRAMS)
    token = soak.tokens[member][pay]
    answered: dict[str, str] = {}

    async def redeem() -> bool:
        body = await soak.write(REDEEM, token, reward=reward, pay=pay, key=f"redeem-{number}")
        if body is None:
            return False
        assert not body.get("errors"), body
        answered.update(body["data"]["redeemReward"])
        return True

    async def cancel() -> bool:
        body = await soak.write(CANCEL, token, id=answered["id"])
        if body is None:
            return False
        assert not body.get("errors"), body
        assert body["data"]["cancelRedemption"]["status"] in ("REVERSING", "REVERSED"), body
        return True

    await patiently(redeem, f"redemption {number}")
    if answered["status"] == "COMPLETED" and rng.random() < 0.4:
        await patiently(cancel, f"cancel of redemption {number}")
        cancelled.append(answered["id"])
    else:
        soak.answered["redemption"].setdefault(answered["id"], answered["status"])


async def test_redemptions_and_cancels_with_faults_and_a_hard_kill_end_final_and_agreeing(
    realtime_soak: Soak,
) -> None:
    """Members redeem a reward with points of any of the four partners and cancel some of what
    was paid, every partner failing some calls at random (debits, reversals, status lookups;
    some debits applied with twice the points), and the gateway is SIGKILLed mid-run. Afterwards every redemption is final, each cancel
    that was answered ends REVERSED, and the ledger agrees line by line with every partner."""
    soak = realtime_soak
    rng = random.Random(20261204)
    reward = await publish_reward(soak)
    await inject_faults(soak, partner_bugs=True)
    numbers = iter(range(REDEMPTIONS))
    cancelled: list[str] = []

    async def client() -> None:
        for number in numbers:
            await redeem_and_maybe_cancel(soak, rng, number, reward, cancelled)

    clients = [asyncio.create_task(client()) for _ in range(CLIENTS)]
    while len(soak.answered["redemption"]) + len(cancelled) < REDEMPTIONS // 3:
        await asyncio.sleep(0.05)
    soak.gateway.kill()  # mid-run, with requests in flight
    await soak.gateway.start()
    await asyncio.gather(*clients)

    await clear_faults(soak)
    statuses = (await until_final(soak))["redemption"]
    assert cancelled and statuses["REVERSED"] >= len(cancelled), statuses
    async with soak.kit.db.transaction() as session:
        ended = await session.exec(
            text("SELECT status FROM redemption WHERE id IN :ids").bindparams(bindparam("ids", expanding=True)),  # type: ignore[call-overload]
            params={"ids": cancelled},
        )
        assert {status for (status,) in ended} == {"REVERSED"}
    await check_ledger_agrees(soak)


VIPS = tuple(f"vip{n:02d}" for n in range(6))
MATCH = """mutation($from: ID!, $to: ID!) {
  requestStatusMatch(fromProgram: $from, toProgram: $to) { id status } }"""
#: Where a Gold Shopper of fresh-mart is matched, and the tier each target holds for its own members.
MATCH_TARGETS = {"happy-card": "Card", "wallet-pay": "Regular"}


async def request_match(soak: Soak, token: str, target: str) -> None:
    """One status match into ``target``, asked again through refusals and a gateway that is down
    until answered; a match already recorded by an earlier try (whose answer was lost) answers
    MATCH_TOO_SOON, which also ends the asking."""

    async def attempt() -> bool:
        body = await soak.write(MATCH, token, **{"from": "fresh-mart", "to": target})
        if body is None:
            return False
        if body.get("errors"):
            assert body["errors"][0]["extensions"]["code"] in ("MATCH_TOO_SOON", "PARTNER_UNAVAILABLE"), body
            return body["errors"][0]["extensions"]["code"] == "MATCH_TOO_SOON"
        return True

    await patiently(attempt, f"a match into {target}")


async def test_status_matches_with_faults_and_a_hard_kill_end_as_every_partner_holds_them(
    realtime_soak: Soak,
) -> None:
    """Gold Shoppers of fresh-mart ask for their tier to be matched into two programs while every
    partner fails some calls at random (some matches recorded at another tier), and the gateway
    is SIGKILLed mid-run. Afterwards every
    match is final, each member holds at most one live match per target, and what the exchange
    tells them is what the target holds: the matched tier until the match's expiry if ACTIVE,
    their own tier otherwise; no match was applied twice."""
    soak = realtime_soak
    for vip in VIPS:
        await soak.sandboxes["fresh-mart"].admin.add_member(vip, tier="Gold Shopper", verification="5555")
        for target in MATCH_TARGETS:
            await soak.sandboxes[target].admin.add_member(vip, verification="5555")
    tokens = {
        vip: await soak.kit.linked_member(vip, ["fresh-mart", *MATCH_TARGETS], verification="5555") for vip in VIPS
    }
    await inject_faults(soak, partner_bugs=True)
    requests = [
        asyncio.create_task(request_match(soak, tokens[vip]["fresh-mart"], target))
        for vip in VIPS
        for target in MATCH_TARGETS
    ]
    while sum(request.done() for request in requests) < len(requests) // 3:
        await asyncio.sleep(0.02)
    soak.gateway.kill()  # mid-run, with requests in flight
    await soak.gateway.start()
    await asyncio.gather(*requests)

    await clear_faults(soak)
    deadline = time.monotonic() + 60
    while True:
        async with soak.kit.db.transaction() as session:
            matches = (await session.exec(select(StatusMatch))).all()
        if not [match for match in matches if match.status in MatchSaga.active]:
            break
        assert time.monotonic() < deadline, [(m.status, m.step, m.last_error) for m in matches]
        await asyncio.sleep(0.2)
    live = [match for match in matches if match.status == MatchStatus.ACTIVE]
    assert live, [(m.status, m.failure_code) for m in matches]
    for target, own_tier in MATCH_TARGETS.items():
        held = {member["member_ref"]: member for member in (await soak.sandboxes[target].admin.members())["members"]}
        log = await soak.sandboxes[target].admin.operations()
        for vip in VIPS:
            ours = [m for m in live if m.to_program == target and m.target_ref == vip]
            assert len(ours) <= 1, ours
            member = held[vip]
            if ours:
                expires_at = datetime.fromisoformat(member["tier_expires_at"])
                assert (member["tier"], expires_at) == (ours[0].tier, ours[0].expires_at), (target, vip)
            else:
                assert (member["tier"], member["tier_expires_at"]) == (own_tier, None), (target, vip)
        applied = Counter(op["operation_id"] for op in log if op["kind"] == "tier_match" and op["status"] == "applied")
        assert set(applied.values()) <= {1}
        assert set(applied) == {m.match_operation for m in live if m.to_program == target}
