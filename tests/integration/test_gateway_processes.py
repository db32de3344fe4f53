"""Crashes and races across real processes: two gateway processes over one database answering
the same idempotency key at once, a gateway killed (SIGKILL) after a partner applied its debit
(a cancel's reversal, a status match's extension) and before it recorded that, and a partner
restarted mid-redemption; and a gateway killed while its job runner closes a month. Each ends
with every saga final and the ledger agreeing line by line with every partner's operation log (a
match, with what the partner holds; a month, closed once)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from exchange.ledger.models import SettlementPeriod
from exchange.ledger.periods import PeriodStatus
from exchange.ledger.posting import Ledger
from exchange.ledger.verify import verify_ledger
from exchange.rewards.models import Redemption, RedemptionStatus
from exchange.sandbox.faults import FaultKind
from exchange.serving import free_port
from exchange.settlement import jobs
from exchange.settlement.models import JobState, SettlementJob
from exchange.settlement.participants import EXCHANGE as EXCHANGE_ID
from exchange.testing.clock import FrozenClock
from exchange.testing.processes import EXCHANGE, ExchangeProcess, gateway_process
from exchange.testing.sandboxes import SandboxFleet
from exchange.tiers.models import MatchStatus, StatusMatch
from exchange.tiers.saga import MatchSaga
from tests import factories
from tests.integration.locks import waiting_on_a_lock
from tests.integration.soaking import (
    EXECUTE,
    QUOTE,
    REDEEM,
    Soak,
    check_ledger_agrees,
    publish_reward,
    running_soak,
    until_final,
)

MEMBER = "soak00"
MATCH = """mutation($from: ID!, $to: ID!) {
  requestStatusMatch(fromProgram: $from, toProgram: $to) { id status } }"""
CANCEL = """mutation($id: ID!) { cancelRedemption(redemptionId: $id) { id status } }"""
ACTIVITY = """mutation($id: ID!, $activities: Int!) {
  recordStatusMatchActivity(matchId: $id, activities: $activities) { id status } }"""
SOURCE, TARGET = "wallet-pay", "happy-card"


@pytest.fixture
async def soak(pg_database_url: str, sandboxes: SandboxFleet, tmp_path: Path) -> AsyncIterator[Soak]:
    # Partners answer within 5 s: long enough for a test to kill the gateway while it waits.
    async with running_soak(pg_database_url, sandboxes, tmp_path, partner_timeout="5", members=(MEMBER,)) as running:
        yield running


#: The lease of the gateway the kill test crashes: shorter than the default 30 s, which the test
#: would wait out, and longer than one request's partner calls here (5 s each, two tries).
SHORT_LEASE = "12"


@pytest.fixture
async def soak_with_short_lease(pg_database_url: str, sandboxes: SandboxFleet, tmp_path: Path) -> AsyncIterator[Soak]:
    """As ``soak``, with rows leased for :data:`SHORT_LEASE` seconds."""
    async with running_soak(
        pg_database_url,
        sandboxes,
        tmp_path,
        partner_timeout="5",
        members=(MEMBER,),
        EXCHANGE_SAGA_LEASE_SECONDS=SHORT_LEASE,
        EXCHANGE_STATUS_MATCH_EXPIRY_INTERVAL_SECONDS="0.5",
    ) as running:
        yield running


#: How long the close-job test's gateways let a job's runner be silent before taking the job
#: (EXCHANGE_SETTLEMENT_JOB_STALE_SECONDS): a quarter of the default two minutes.
SHORT_STALE = 30


@pytest.fixture
async def soak_with_short_stale(pg_database_url: str, sandboxes: SandboxFleet, tmp_path: Path) -> AsyncIterator[Soak]:
    """As ``soak``, with a settlement job's runner taken for dead after :data:`SHORT_STALE` seconds."""
    async with running_soak(
        pg_database_url,
        sandboxes,
        tmp_path,
        partner_timeout="5",
        members=(MEMBER,),
        EXCHANGE_SETTLEMENT_JOB_STALE_SECONDS=str(SHORT_STALE),
    ) as running:
        yield running


@pytest.fixture
async def soak_without_jobs(pg_database_url: str, sandboxes: SandboxFleet, tmp_path: Path) -> AsyncIterator[Soak]:
    """A soak whose gateway recovers no redemption and no status match in the background (an
    interval of 0: never), as when no gateway runs: only `exchange recover` drives them."""
    async with running_soak(
        pg_database_url,
        sandboxes,
        tmp_path,
        partner_timeout="2",
        members=(MEMBER,),
        EXCHANGE_REDEMPTION_INTERVAL_SECONDS="0",
        EXCHANGE_STATUS_MATCH_EXPIRY_INTERVAL_SECONDS="0",
    ) as running:
        yield running


@pytest.fixture
async def second_gateway(soak: Soak) -> AsyncIterator[httpx.AsyncClient]:
    """Another gateway process on the same database and partners, as a second replica behind
    a load balancer (one issuer for both); a client that calls it."""
    settings = soak.kit.settings.model_copy(update={"port": free_port()})
    gateway: ExchangeProcess = gateway_process(
        settings,
        EXCHANGE_ISSUER=soak.kit.settings.issuer_url,
        EXCHANGE_RECOVERY_INTERVAL_SECONDS="0.5",
        EXCHANGE_REDEMPTION_INTERVAL_SECONDS="0.5",
        EXCHANGE_PARTNER_RETRY_ATTEMPTS="2",
    )
    await gateway.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}", timeout=30) as http:
            yield http
    finally:
        gateway.stop()


async def _both(soak: Soak, other: httpx.AsyncClient, query: str, token: str, **variables: Any) -> list[dict[str, Any]]:
    """``query`` sent to both gateways at once; both answers' bodies."""
    body = {"query": query, "variables": variables}
    headers = {"authorization": f"Bearer {token}"}
    answers = await asyncio.gather(
        soak.kit.http.post("/graphql", json=body, headers=headers), other.post("/graphql", json=body, headers=headers)
    )
    assert [answer.status_code for answer in answers] == [200, 200], [answer.text for answer in answers]
    return [answer.json() for answer in answers]


async def _applied(soak: Soak, program: str, operation_id: str) -> list[dict[str, Any]]:
    return [
        operation
        for operation in await soak.sandboxes[program].admin.operations()
        if operation["operation_id"] == operation_id and operation["status"] == "applied"
    ]


async def _until_debited(soak: Soak, debits: int = 1, kind: str = "debit") -> None:
    """Wait until the source partner has applied ``debits`` writes of ``kind`` (their answers
    hang, by the script)."""
    deadline = time.monotonic() + 30
    while len([op for op in await soak.sandboxes[SOURCE].admin.operations() if op["kind"] == kind]) < debits:
        assert time.monotonic() < deadline, f"the {kind} never reached the partner"
        await asyncio.sleep(0.02)


async def test_one_key_sent_to_two_gateways_at_once_moves_points_once(
    soak: Soak, second_gateway: httpx.AsyncClient
) -> None:
    """The same conversion and the same redemption, asked of both gateways at the same moment
    while the paying partner is slow: one movement at the partner and in the ledger, and both
    callers are answered with that one conversion (redemption)."""
    token = soak.tokens[MEMBER][SOURCE]
    await soak.sandboxes[SOURCE].admin.set_faults(latency_ms=300)
    quote = await soak.kit.data(QUOTE, token, **{"from": SOURCE, "to": TARGET, "points": 50})
    conversions = await _both(soak, second_gateway, EXECUTE, token, quote=quote["createQuote"]["id"], key="twice")
    assert not [body for body in conversions if body.get("errors")], conversions
    ids = {body["data"]["executeConversion"]["id"] for body in conversions}
    assert len(ids) == 1, conversions
    (conversion_id,) = ids
    # The request that ran it answers where it got; the other, PENDING until it ends.
    assert {body["data"]["executeConversion"]["status"] for body in conversions} <= {"COMPLETED", "PENDING"}
    soak.answered["conversion"][conversion_id] = conversions[0]["data"]["executeConversion"]["status"]

    reward = await publish_reward(soak)
    redemptions = await _both(soak, second_gateway, REDEEM, token, reward=reward, pay=SOURCE, key="twice")
    assert not [body for body in redemptions if body.get("errors")], redemptions
    ids = {body["data"]["redeemReward"]["id"] for body in redemptions}
    assert len(ids) == 1, redemptions
    (redemption_id,) = ids
    assert {body["data"]["redeemReward"]["status"] for body in redemptions} <= {"COMPLETED", "PENDING"}
    soak.answered["redemption"][redemption_id] = redemptions[0]["data"]["redeemReward"]["status"]

    # A status match (no key: one per member and target a year) asked of both: one is pushed.
    await soak.sandboxes[TARGET].admin.add_member("vip", tier="VIP", verification="5555")
    await soak.sandboxes[SOURCE].admin.add_member("vip", verification="5555")
    vip = await soak.kit.linked_member("vip", [TARGET, SOURCE], verification="5555")
    matches = await _both(soak, second_gateway, MATCH, vip[TARGET], **{"from": TARGET, "to": SOURCE})
    granted = [body["data"]["requestStatusMatch"] for body in matches if not body.get("errors")]
    assert len(granted) == 1 and granted[0]["status"] == "ACTIVE", matches
    refused = [body["errors"][0]["extensions"]["code"] for body in matches if body.get("errors")]
    assert refused in (["MATCH_TOO_SOON"], ["MATCH_NOT_GRANTED"]), matches
    assert len(await _applied(soak, SOURCE, f"{granted[0]['id']}:match")) == 1

    await soak.sandboxes[SOURCE].admin.set_faults()
    await until_final(soak, timeout=60)
    assert len(await _applied(soak, SOURCE, f"{conversion_id}:debit")) == 1
    assert len(await _applied(soak, TARGET, f"{conversion_id}:credit")) == 1
    assert len(await _applied(soak, SOURCE, f"{redemption_id}:debit")) == 1
    await check_ledger_agrees(soak)


async def test_a_gateway_killed_after_the_partner_applied_its_debit_is_recovered_by_the_next(
    soak_with_short_lease: Soak,
) -> None:
    """SIGKILL while the source partner has applied a conversion's and a redemption's debits
    and not yet answered: the next gateway process finds both in doubt once the dead
    requests' lease (``EXCHANGE_SAGA_LEASE_SECONDS``) ends, learns the debits applied, credits
    the conversion's target and posts both; asking again with the keys returns them COMPLETED."""
    soak = soak_with_short_lease
    token = soak.tokens[MEMBER][SOURCE]
    reward = await publish_reward(soak)
    await soak.sandboxes[SOURCE].admin.set_faults(script=[FaultKind.APPLY_THEN_HANG] * 2)
    quote = (await soak.kit.data(QUOTE, token, **{"from": SOURCE, "to": TARGET, "points": 50}))["createQuote"]["id"]
    requests = [
        asyncio.create_task(soak.kit.graphql(EXECUTE, token, quote=quote, key="killed")),
        asyncio.create_task(soak.kit.graphql(REDEEM, token, reward=reward, pay=SOURCE, key="killed")),
    ]
    await _until_debited(soak, 2)
    soak.gateway.kill()
    for request in requests:
        with pytest.raises(httpx.TransportError):
            await request
    # The operator's `exchange recover` right after the crash: the dead request's lease still
    # keeps the conversion, and the report says until when and what to do.
    recover = await asyncio.create_subprocess_exec(
        EXCHANGE, "recover", env=soak.gateway.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    output, errors = await recover.communicate()
    assert recover.returncode == 0, errors
    held = r"1 still pending, 1 of them in the hands of a gateway process until " + (
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(if that process died, run this again after that\)\n"
    )
    assert re.fullmatch(
        rf"0 conversions driven; {held}0 redemptions driven; {held}0 status matches driven; 0 still pending\n"
        r"0 holds expired unreviewed; 0 still held for review\n0 settlement periods left closing finished\n",
        output.decode(),
    ), output
    leased_until = [
        datetime.strptime(until, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        for until in re.findall(r"until (\S+ \S+) UTC", output.decode())
    ]
    assert len(leased_until) == 2 and max(leased_until) <= datetime.now(UTC) + timedelta(seconds=int(SHORT_LEASE))
    await soak.gateway.start()

    final = await until_final(soak, timeout=90)
    assert (final["conversion"]["COMPLETED"], final["redemption"]["COMPLETED"]) == (1, 1), final
    conversion = (await soak.kit.data(EXECUTE, token, quote=quote, key="killed"))["executeConversion"]
    redemption = (await soak.kit.data(REDEEM, token, reward=reward, pay=SOURCE, key="killed"))["redeemReward"]
    for saga, row in (("conversion", conversion), ("redemption", redemption)):
        assert row["status"] == "COMPLETED", (saga, row)
        soak.answered[saga][row["id"]] = row["status"]
        assert len(await _applied(soak, SOURCE, f"{row['id']}:debit")) == 1
    await check_ledger_agrees(soak)


async def test_a_gateway_killed_after_the_partner_gave_back_a_cancelled_redemption_is_recovered_by_the_next(
    soak_with_short_lease: Soak,
) -> None:
    """SIGKILL while the paying partner has applied a cancel's reversal and not yet answered:
    the next gateway process, once the dead request's lease ends, sends the reversal again (the
    partner applies it once) and posts the ledger's reversal once; the member's cancel, asked
    again, answers REVERSED."""
    soak = soak_with_short_lease
    token = soak.tokens[MEMBER][SOURCE]
    reward = await publish_reward(soak)
    paid = (await soak.kit.data(REDEEM, token, reward=reward, pay=SOURCE, key="cancelled"))["redeemReward"]
    assert paid["status"] == "COMPLETED", paid
    await soak.sandboxes[SOURCE].admin.set_faults(script=[FaultKind.APPLY_THEN_HANG])
    request = asyncio.create_task(soak.kit.graphql(CANCEL, token, id=paid["id"]))
    await _until_debited(soak, kind="reversal")
    soak.gateway.kill()
    with pytest.raises(httpx.TransportError):
        await request
    await soak.gateway.start()

    final = await until_final(soak, timeout=90)
    assert final["redemption"]["REVERSED"] == 1, final
    again = (await soak.kit.data(CANCEL, token, id=paid["id"]))["cancelRedemption"]
    assert again == {"id": paid["id"], "status": "REVERSED"}
    assert (await soak.kit.data(REDEEM, token, reward=reward, pay=SOURCE, key="cancelled"))["redeemReward"] == again
    soak.answered["redemption"][paid["id"]] = again["status"]
    log = await soak.sandboxes[SOURCE].admin.operations()
    [debit] = [op for op in log if op["operation_id"] == f"{paid['id']}:debit"]
    reversals = [(op["operation_id"], op["points"]) for op in log if op["kind"] == "reversal"]
    assert (debit["status"], reversals) == ("reversed", [(f"{paid['id']}:reverse-debit", debit["points"])])
    await check_ledger_agrees(soak)


async def test_a_gateway_killed_after_the_partner_applied_a_status_match_extension_is_recovered_by_the_next(
    soak_with_short_lease: Soak,
) -> None:
    """happy-card reports the activity that meets a match's challenge; it applies the extension
    and the gateway is SIGKILLed before the answer: the next gateway process, once the dead
    request's lease ends, finds the extension applied as sent and ends the match ACTIVE with the
    extended expiry, which is the one happy-card holds for the member; it was applied once."""
    soak = soak_with_short_lease
    card = soak.sandboxes["happy-card"].admin
    await soak.sandboxes["fresh-mart"].admin.add_member("shopper", tier="Gold Shopper", verification="5555")
    await card.add_member("shopper", verification="5555")
    shopper = await soak.kit.linked_member("shopper", ["fresh-mart", "happy-card"], verification="5555")
    match = (await soak.kit.data(MATCH, shopper["fresh-mart"], **{"from": "fresh-mart", "to": "happy-card"}))[
        "requestStatusMatch"
    ]
    assert match["status"] == "ACTIVE", match
    await card.set_faults(script=[FaultKind.APPLY_THEN_HANG])
    partner = await soak.kit.partner_token("happy-card")
    request = asyncio.create_task(soak.kit.graphql(ACTIVITY, partner, id=match["id"], activities=3))
    extension = f"{match['id']}:extend"
    deadline = time.monotonic() + 30
    while not [op for op in await card.operations() if op["operation_id"] == extension]:
        assert time.monotonic() < deadline, "the extension never reached the partner"
        await asyncio.sleep(0.02)
    soak.gateway.kill()
    with pytest.raises(httpx.TransportError):
        await request
    async with soak.kit.db.transaction() as session:
        left = await session.get(StatusMatch, match["id"])
    assert left is not None and (left.status, left.step) == (MatchStatus.UPDATING, "EXTEND")
    await soak.gateway.start()

    deadline = time.monotonic() + 90
    while True:
        async with soak.kit.db.transaction() as session:
            row = await session.get(StatusMatch, match["id"])
        assert row is not None
        if row.status not in MatchSaga.active:
            break
        assert time.monotonic() < deadline, f"still {row.status} at {row.step}: {row.last_error}"
        await asyncio.sleep(0.2)
    assert (row.status, row.extended, row.failure_code) == (MatchStatus.ACTIVE, True, None)
    applied = [op for op in await card.operations() if op["operation_id"] == extension]
    assert [op["status"] for op in applied] == ["applied"]
    [held] = [member for member in (await card.members())["members"] if member["member_ref"] == "shopper"]
    assert (held["tier"], datetime.fromisoformat(held["tier_expires_at"])) == ("VIP", row.expires_at)


async def test_a_close_job_whose_gateway_was_killed_mid_way_is_finished_once_by_the_next(
    soak_with_short_stale: Soak,
) -> None:
    """Staff queue closing October; the gateway's job runner records CLOSING and is SIGKILLed
    while it waits to store the month's figures. Once the dead run's heartbeat is older than
    the stale time the gateways are set to, the next gateway process takes the job again and
    closes October once: its figures, one statement per participant, one ``period.closed``
    event, the job DONE."""
    soak = soak_with_short_stale
    october = datetime(2026, 10, 10, 4, 0, tzinfo=UTC)
    db = soak.kit.db
    async with db.transaction() as session:
        await Ledger(timezone=soak.kit.settings.timezone, clock=FrozenClock(october)).post_many(
            session, [factories.conversion("c1", "wallet-pay", "fresh-mart", 2_000, fee=20, at=october)]
        )
    async with db.transaction() as holding:  # the figures' table, held: the runner waits to fill it
        await holding.exec(text("LOCK TABLE settlement_obligation IN EXCLUSIVE MODE"))  # type: ignore[call-overload]
        async with db.transaction() as session:
            job = await jobs.enqueue_close(session, "2026-10", by="staff", now=datetime.now(UTC))
        await waiting_on_a_lock(db)
        soak.gateway.kill()
    async with db.transaction() as session:
        running = await session.get(SettlementJob, job.id)
        period = await session.get(SettlementPeriod, "2026-10")
        assert running is not None and period is not None
        assert (running.state, period.status) == (JobState.RUNNING, PeriodStatus.CLOSING)
        # As if the dead runner had been silent for longer than the stale time set (not the default).
        running.heartbeat_at = datetime.now(UTC) - timedelta(seconds=SHORT_STALE + 1)
        session.add(running)
    await soak.gateway.start()

    deadline = time.monotonic() + 60
    while True:
        async with db.transaction() as session:
            done = await session.get(SettlementJob, job.id)
        assert done is not None
        if done.state not in (JobState.QUEUED, JobState.RUNNING):
            break
        assert time.monotonic() < deadline, f"the job is still {done.state} at {done.step}"
        await asyncio.sleep(0.1)
    assert (done.state, done.error) == (JobState.DONE, None)
    async with db.transaction() as session:
        positions = dict(
            tuple(row)  # type: ignore[misc]
            for row in await session.exec(
                text("SELECT participant, net FROM settlement_position WHERE period = '2026-10'")  # type: ignore[call-overload]
            )
        )
        statements = sorted(
            str(row[0])
            for row in await session.exec(
                text("SELECT participant FROM issued_statement WHERE period = '2026-10'")  # type: ignore[call-overload]
            )
        )
        closed = (
            await session.exec(text("SELECT count(*) FROM webhook_event WHERE type = 'period.closed'"))  # type: ignore[call-overload]
        ).one()[0]
        verification = await verify_ledger(session)
    assert positions == {EXCHANGE_ID: 20, "fresh-mart": 1_980, "wallet-pay": -2_000}
    assert statements == sorted(positions) and closed == 1
    assert verification.ok, verification.problem


async def test_a_partner_restarted_mid_redemption_ends_final_and_agreeing(soak: Soak) -> None:
    """The paying partner restarts (same port, same data, its tokens forgotten) after it
    applied the redemption's debit and before it answered: the gateway, its answer lost,
    asks the restarted partner, learns the debit applied and completes the redemption."""
    reward = await publish_reward(soak)
    token = soak.tokens[MEMBER][SOURCE]
    await soak.sandboxes[SOURCE].admin.set_faults(script=[FaultKind.APPLY_THEN_HANG])
    request = asyncio.create_task(soak.kit.graphql(REDEEM, token, reward=reward, pay=SOURCE, key="restarted"))
    await _until_debited(soak)
    await soak.sandboxes[SOURCE].restart(down=0.5)
    answer = (await request).json()
    assert not answer.get("errors"), answer
    redemption = answer["data"]["redeemReward"]
    soak.answered["redemption"][redemption["id"]] = redemption["status"]
    final = await until_final(soak, timeout=60)
    assert final["redemption"]["COMPLETED"] == 1, final
    assert len(await _applied(soak, SOURCE, f"{redemption['id']}:debit")) == 1
    await check_ledger_agrees(soak)


async def test_exchange_recover_drives_a_redemption_and_a_status_match_left_mid_way(soak_without_jobs: Soak) -> None:
    """The partner applies a redemption's debit and a status match's push, then never answers:
    both stay pending, in doubt, and no background job of the gateway takes them up. The
    operator's `exchange recover` asks the partner, learns both applied and finishes them,
    one report line per kind."""
    soak = soak_without_jobs
    token = soak.tokens[MEMBER][SOURCE]
    reward = await publish_reward(soak)
    await soak.sandboxes[TARGET].admin.add_member("vip", tier="VIP", verification="5555")
    await soak.sandboxes[SOURCE].admin.add_member("vip", verification="5555")
    vip = await soak.kit.linked_member("vip", [TARGET, SOURCE], verification="5555")
    await soak.sandboxes[SOURCE].admin.set_faults(script=[FaultKind.APPLY_THEN_HANG] * 2)
    redemption = (await soak.kit.data(REDEEM, token, reward=reward, pay=SOURCE, key="hung"))["redeemReward"]
    match = (await soak.kit.data(MATCH, vip[TARGET], **{"from": TARGET, "to": SOURCE}))["requestStatusMatch"]
    assert (redemption["status"], match["status"]) == ("PENDING", "PENDING")
    assert len(await _applied(soak, SOURCE, f"{redemption['id']}:debit")) == 1
    assert len(await _applied(soak, SOURCE, f"{match['id']}:match")) == 1

    recover = await asyncio.create_subprocess_exec(
        EXCHANGE, "recover", env=soak.gateway.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    output, errors = await recover.communicate()
    assert recover.returncode == 0, errors
    assert output.decode().splitlines() == [
        "0 conversions driven; 0 still pending",
        "1 redemption driven; 0 still pending",
        "1 status match driven; 0 still pending",
        "0 holds expired unreviewed; 0 still held for review",
        "0 settlement periods left closing finished",
    ]
    async with soak.kit.db.transaction() as session:
        redeemed = await session.get(Redemption, redemption["id"])
        matched = await session.get(StatusMatch, match["id"])
    assert redeemed is not None and matched is not None
    assert (redeemed.status, matched.status) == (RedemptionStatus.COMPLETED, MatchStatus.ACTIVE)
    assert len(await _applied(soak, SOURCE, f"{redemption['id']}:debit")) == 1
    assert len(await _applied(soak, SOURCE, f"{match['id']}:match")) == 1
    await check_ledger_agrees(soak)
