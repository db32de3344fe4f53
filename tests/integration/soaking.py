"""The soak's pieces, shared by the soaks that break something mid-run (test_soak.py kills
the gateway, test_failover.py the database's primary).

A gateway process on four sandbox partners; members who convert and redeem as careful
clients do (asking again, with the same idempotency key, through whatever is broken); and
the checks afterwards: every conversion and redemption final, every one the gateway
answered COMPLETED posted exactly once, members' points moved by exactly what completed,
and the ledger agreeing line by line with every partner's operation log.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from exchange.db.database import Database
from exchange.ledger.verify import verify_ledger
from exchange.sandbox.faults import FaultKind
from exchange.services.container import load_partners_directory
from exchange.serving import free_port
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit
from exchange.testing.processes import ExchangeProcess, declarations_pointing_at, gateway_process
from exchange.testing.sandboxes import SandboxFleet
from tests.conftest import SAMPLE_PARTNERS

PROGRAMS = ("wallet-pay", "happy-card", "fresh-mart", "tune-stream")  # tune-stream speaks GraphQL
MEMBERS = tuple(f"soak{n:02d}" for n in range(10))
OPENING = 2_000_000
#: Amounts that satisfy each source's minimum and increment.
AMOUNTS = {"wallet-pay": (10, 1), "happy-card": (100, 4), "fresh-mart": (200, 10), "tune-stream": (20, 1)}
#: How long one client keeps asking through an outage before the soak fails.
PATIENCE_SECONDS = 180

QUOTE = """mutation($from: ID!, $to: ID!, $points: Int!) {
  createQuote(input: {fromProgram: $from, toProgram: $to, points: $points}) { id } }"""
EXECUTE = """mutation($quote: ID!, $key: String!) {
  executeConversion(quoteId: $quote, idempotencyKey: $key) { id status } }"""
PUBLISH = """mutation($program: ID!, $input: PublishRewardInput!) {
  publishReward(programId: $program, input: $input) { id } }"""
REDEEM = """mutation($reward: ID!, $pay: ID!, $key: String!) {
  redeemReward(rewardId: $reward, payWith: $pay, idempotencyKey: $key) { id status } }"""

#: Tables of the sagas the soak drives, and the statuses that still have steps to run.
SAGAS = {"conversion": ("PENDING",), "redemption": ("PENDING", "REVERSING")}


@dataclass
class Writes:
    """When the gateway refused a write for want of its database, and when it accepted one."""

    refused: list[float] = field(default_factory=list)
    accepted: list[float] = field(default_factory=list)

    def refusal_window(self) -> tuple[float, float] | None:
        """The first refusal, and the first write accepted after it (monotonic seconds)."""
        if not self.refused:
            return None
        first = self.refused[0]
        after = [moment for moment in self.accepted if moment > first]
        return (first, after[0]) if after else None


@dataclass
class Soak:
    kit: ExchangeKit
    gateway: ExchangeProcess
    sandboxes: SandboxFleet
    tokens: dict[str, dict[str, str]]  # member -> program -> a token that program asserted
    answered: dict[str, dict[str, str]] = field(default_factory=lambda: {saga: {} for saga in SAGAS})
    """Saga -> id -> the status the gateway answered (its first answer for that key)."""
    writes: Writes = field(default_factory=Writes)

    async def write(self, query: str, token: str, **variables: Any) -> dict[str, Any] | None:
        """A mutation's answer, or None when the database refused it (ask again later).

        Never an internal error: a 5xx other than 503, or ``INTERNAL_SERVER_ERROR``, fails
        the soak. Transport errors (the gateway is down) are the caller's to retry.
        """
        response = await self.kit.graphql(query, token, **variables)
        assert response.status_code in (200, 503), (response.status_code, response.text)
        body: dict[str, Any] = response.json()
        codes = {error["extensions"]["code"] for error in body.get("errors") or []}
        assert "INTERNAL_SERVER_ERROR" not in codes, body
        if "SERVICE_UNAVAILABLE" in codes:
            assert response.status_code == 503 or body.get("data") is not None, body
            self.writes.refused.append(time.monotonic())
            return None
        assert response.status_code == 200, body
        if not codes:
            self.writes.accepted.append(time.monotonic())
        return body


@asynccontextmanager
async def running_soak(
    database_url: str,
    sandboxes: SandboxFleet,
    directory: Path,
    *,
    modes: Mapping[str, str] | None = None,
    partner_timeout: str = "0.5",
    members: tuple[str, ...] = MEMBERS,
    **gateway_env: str,
) -> AsyncIterator[Soak]:
    """The gateway (a process) on ``database_url`` and sandboxes of :data:`PROGRAMS`, each
    with ``members`` (:data:`MEMBERS`) holding :data:`OPENING` points and linked at every program;
    ``modes`` runs some partners in async or batch mode (``[connector] mode``), async ones
    calling the gateway back; the gateway gives up on a partner's answer after
    ``partner_timeout`` seconds; ``gateway_env`` adds or overrides its EXCHANGE_* settings."""
    await sandboxes.start(*PROGRAMS, modes=modes)
    for program in PROGRAMS:
        for member in members:
            await sandboxes[program].admin.add_member(member, balance=OPENING, verification="5555")
    partners = declarations_pointing_at(
        sandboxes.base_urls, SAMPLE_PARTNERS, directory / "partners", timeout_seconds=partner_timeout, modes=modes
    )
    settings = Settings(database_url=database_url, partners_dir=partners, port=free_port())
    await load_partners_directory(settings)
    gateway = gateway_process(
        settings,
        **{
            "EXCHANGE_RECOVERY_INTERVAL_SECONDS": "0.5",
            "EXCHANGE_REDEMPTION_INTERVAL_SECONDS": "0.5",
            "EXCHANGE_PARTNER_RETRY_ATTEMPTS": "2",
            "EXCHANGE_PARTNER_BREAKER_FAILURE_THRESHOLD": "1000",
            **gateway_env,
        },
    )
    await gateway.start()
    for program, mode in (modes or {}).items():
        if mode == "async":
            await sandboxes[program].admin.set_callback_url(f"{settings.issuer_url}/partners/{program}/callbacks")
    db = Database.from_url(settings.database_url)
    try:
        async with httpx.AsyncClient(base_url=settings.issuer_url, timeout=30) as http:
            kit = ExchangeKit(settings=settings, http=http, db=db)
            tokens = {member: await kit.linked_member(member, PROGRAMS, verification="5555") for member in members}
            yield Soak(kit, gateway, sandboxes, tokens)
    finally:
        gateway.stop()
        await db.dispose()


async def inject_faults(soak: Soak, *, declines: int = 0, partner_bugs: bool = False) -> None:
    """Every partner fails some calls, at random: errors, writes applied then refused or
    dropped, and hangs past the gateway's timeout; partners that answer later (async or batch)
    also decline the first ``declines`` writes they settle. ``partner_bugs``: some writes are
    also applied otherwise than asked (twice the points, another tier) and answered so, and
    some applied and answered with a body that is no operation."""
    bugs = {FaultKind.MISAPPLY: 5, FaultKind.APPLY_THEN_GARBLE: 5} if partner_bugs else {}
    for index, program in enumerate(PROGRAMS):
        await soak.sandboxes[program].admin.set_faults(
            latency_ms=5,
            percent={
                FaultKind.ERROR: 4,
                FaultKind.APPLY_THEN_ERROR: 4,
                FaultKind.APPLY_THEN_DROP: 4,
                FaultKind.HANG: 2,
                **bugs,
            },
            seed=index,
            decline=declines,
        )


async def clear_faults(soak: Soak) -> None:
    for program in PROGRAMS:
        await soak.sandboxes[program].admin.set_faults()


async def patiently(attempt: Any, what: str) -> None:
    """Call ``attempt()`` until it returns True, through refusals and a gateway that is down."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    while time.monotonic() < deadline:
        try:
            if await attempt():
                return
        except (httpx.TransportError, ValueError):
            pass  # the gateway is down (killed): ask again once it is back
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} never got an answer")


async def convert(soak: Soak, rng: random.Random, number: int) -> None:
    """One member's conversion, asked again as a careful client does: the same key after a
    refusal or a lost answer, a new quote (and key) when the quote expired unexecuted."""
    member = rng.choice(MEMBERS)
    source, target = rng.sample(PROGRAMS, 2)
    minimum, step = AMOUNTS[source]
    points = minimum + step * rng.randrange(0, 60)
    token = soak.tokens[member][source]
    state: dict[str, str | None] = {"quote": None, "key": f"soak-{number}"}

    async def attempt() -> bool:
        if state["quote"] is None:
            body = await soak.write(QUOTE, token, **{"from": source, "to": target, "points": points})
            if body is None:
                return False
            if body.get("errors"):
                assert body["errors"][0]["extensions"]["code"] in ("LIMIT_EXCEEDED",), body
                return True
            state["quote"] = body["data"]["createQuote"]["id"]
        body = await soak.write(EXECUTE, token, quote=state["quote"], key=state["key"])
        if body is None:
            return False
        if body.get("errors"):
            assert body["errors"][0]["extensions"]["code"] == "QUOTE_EXPIRED", body
            state["quote"], state["key"] = None, f"{state['key']}-again"  # nothing was recorded under the old key
            return False
        conversion = body["data"]["executeConversion"]
        soak.answered["conversion"].setdefault(conversion["id"], conversion["status"])
        return True

    await patiently(attempt, f"conversion {number}")


async def publish_reward(soak: Soak, program: str = "fresh-mart") -> str:
    """A direct reward of ``program`` with stock for the whole soak; returns its id."""
    token = await soak.kit.partner_token(program)
    data = await soak.kit.data(
        PUBLISH, token, program=program, input={"title": "Soak coupon", "price": "3", "stock": 100_000}
    )
    return str(data["publishReward"]["id"])


async def redeem(soak: Soak, rng: random.Random, number: int, reward_id: str) -> None:
    """One member's redemption, paid with a program whose token they hold, asked again with
    the same key until it is answered."""
    member = rng.choice(MEMBERS)
    pay = rng.choice(PROGRAMS)
    token = soak.tokens[member][pay]

    async def attempt() -> bool:
        body = await soak.write(REDEEM, token, reward=reward_id, pay=pay, key=f"redeem-{number}")
        if body is None:
            return False
        assert not body.get("errors"), body
        redemption = body["data"]["redeemReward"]
        soak.answered["redemption"].setdefault(redemption["id"], redemption["status"])
        return True

    await patiently(attempt, f"redemption {number}")


async def saga_statuses(db: Database) -> dict[str, Counter[str]]:
    async with db.transaction() as session:
        return {
            saga: Counter(
                dict(
                    tuple(row)
                    for row in await session.exec(text(f"SELECT status, count(*) FROM {saga} GROUP BY status"))
                )
            )
            for saga in SAGAS
        }


async def until_final(soak: Soak, timeout: float = 120) -> dict[str, Counter[str]]:
    """Wait for the recovery workers to drive every conversion and redemption to a final
    status; returns the statuses' counts."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = await saga_statuses(soak.kit.db)
        if not any(statuses[saga][status] for saga, active in SAGAS.items() for status in active):
            return statuses
        assert time.monotonic() < deadline, f"still in flight: {statuses}"
        await asyncio.sleep(0.2)


async def check_ledger_agrees(soak: Soak) -> None:
    """The ledger verifies; every answered COMPLETED is posted exactly once; members' points
    at every partner moved by exactly what completed; and every debit and credit a partner
    still holds is a ledger line, and back (a movement reversed at both ends is on neither side)."""
    async with soak.kit.db.transaction() as session:
        verification = await verify_ledger(session)
        postings = Counter(
            str(row[0])
            for row in await session.exec(
                text("SELECT reference FROM ledger_transaction WHERE kind IN ('conversion', 'redemption')")
            )  # type: ignore[call-overload]
        )
        completed = (
            await session.exec(
                text(  # type: ignore[call-overload]
                    "SELECT 'conversion', id, from_program, to_program, points_in, points_out, status FROM conversion"
                    " UNION ALL SELECT 'redemption', id, paying_program, NULL, points, 0, status FROM redemption"
                )
            )
        ).all()
        ledger_points = dict(
            tuple(row)
            for row in await session.exec(
                text("SELECT a.program_id, a.balance FROM ledger_account_balance a WHERE a.kind = 'member-points'")  # type: ignore[call-overload]
            )
        )
        # A reversal's lines carry its original's reference: a reversed movement nets to nothing.
        ledger_lines = {
            (row[0], row[1]): row[2]
            for row in await session.exec(
                text(  # type: ignore[call-overload]
                    "SELECT t.reference, a.program_id, sum(e.amount) FROM ledger_entry e"
                    " JOIN ledger_transaction t ON t.seq = e.transaction_seq"
                    " JOIN ledger_account a ON a.id = e.account_id WHERE a.kind = 'member-points'"
                    " GROUP BY t.reference, a.program_id HAVING sum(e.amount) <> 0"
                )
            )
        }
    assert verification.ok, verification.problem

    # Nothing answered is lost or changed its final word; every answered COMPLETED is posted once.
    final = {(saga, row_id): status for saga, row_id, *_, status in completed}
    for saga, answers in soak.answered.items():
        for row_id, status in answers.items():
            assert (saga, row_id) in final, (saga, row_id, status)
            if status != "PENDING":
                assert final[(saga, row_id)] in (status, "DELIVERED" if status == "COMPLETED" else status)
            if status == "COMPLETED":
                assert postings[f"{saga}:{row_id}"] == 1, (saga, row_id, postings[f"{saga}:{row_id}"])
    assert not [reference for reference, count in postings.items() if count > 1]

    net: Counter[str] = Counter()
    for _, _, source, target, points_in, points_out, status in completed:
        if status in ("COMPLETED", "DELIVERED"):
            net[source] -= points_in
            if target is not None:
                net[target] += points_out
    for program in PROGRAMS:
        members = await soak.sandboxes[program].admin.members()
        assert members["total_points"] - members["total_opening_points"] == net[program], program
        assert ledger_points.get(program, 0) == net[program], program

    saga_of = {row_id: saga for saga, row_id, *_ in completed}
    partner_lines = {}
    for program in PROGRAMS:
        for operation in await soak.sandboxes[program].admin.operations():
            if operation["kind"] in ("debit", "credit") and operation["status"] == "applied":
                row_id = operation["operation_id"].rsplit(":", 1)[0]
                sign = -1 if operation["kind"] == "debit" else 1
                partner_lines[(f"{saga_of[row_id]}:{row_id}", program)] = sign * operation["points"]
    assert partner_lines == ledger_lines
