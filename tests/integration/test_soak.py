"""The soak: hundreds of conversions among four real partners with random faults, and the
gateway process killed (SIGKILL) and restarted mid-run. Afterwards every conversion is
final, members' points moved by exactly the conversions' net effect, and the ledger agrees
line by line with every partner's operation log."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from exchange.db.database import Database
from exchange.ledger.verify import verify_ledger
from exchange.loading import load_partners_directory
from exchange.sandbox.faults import FaultKind
from exchange.serving import free_port
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit
from exchange.testing.processes import (
    ExchangeProcess,
    declarations_pointing_at,
    gateway_process,
)
from exchange.testing.sandboxes import SandboxFleet
from tests.conftest import SAMPLE_PARTNERS

PROGRAMS = ("wallet-pay", "happy-card", "fresh-mart", "tune-stream")  # tune-stream speaks GraphQL
MEMBERS = tuple(f"soak{n:02d}" for n in range(10))
OPENING = 2_000_000
CONVERSIONS = 320
CLIENTS = 8
#: Amounts that satisfy each source's minimum and increment.
AMOUNTS = {"wallet-pay": (10, 1), "happy-card": (100, 4), "fresh-mart": (200, 10), "tune-stream": (20, 1)}

QUOTE = """mutation($from: ID!, $to: ID!, $points: Int!) {
  createQuote(input: {fromProgram: $from, toProgram: $to, points: $points}) { id } }"""
EXECUTE = """mutation($quote: ID!, $key: String!) {
  executeConversion(quoteId: $quote, idempotencyKey: $key) { id status } }"""


@dataclass
class Soak:
    kit: ExchangeKit
    gateway: ExchangeProcess
    sandboxes: SandboxFleet
    tokens: dict[str, dict[str, str]]  # member -> program -> a token that program asserted
    conversions: dict[str, str]  # conversion id -> member


@pytest.fixture
async def soak(pg_database_url: str, sandboxes: SandboxFleet, tmp_path: Path) -> AsyncIterator[Soak]:
    await sandboxes.start(*PROGRAMS)
    for program in PROGRAMS:
        for member in MEMBERS:
            await sandboxes[program].admin.add_member(member, balance=OPENING, verification="5555")
    partners = declarations_pointing_at(
        sandboxes.base_urls, SAMPLE_PARTNERS, tmp_path / "partners", timeout_seconds="0.5"
    )
    settings = Settings(database_url=pg_database_url, partners_dir=partners, port=free_port())
    await load_partners_directory(settings)
    gateway = gateway_process(
        settings,
        EXCHANGE_RECOVERY_INTERVAL_SECONDS="0.5",
        EXCHANGE_PARTNER_RETRY_ATTEMPTS="2",
        EXCHANGE_PARTNER_BREAKER_FAILURE_THRESHOLD="1000",
    )
    await gateway.start()
    db = Database.from_url(settings.database_url)
    async with httpx.AsyncClient(base_url=settings.issuer_url, timeout=30) as http:
        kit = ExchangeKit(settings=settings, http=http, db=db)
        tokens = {member: await kit.linked_member(member, PROGRAMS, verification="5555") for member in MEMBERS}
        try:
            yield Soak(kit, gateway, sandboxes, tokens, {})
        finally:
            gateway.stop()
            await db.dispose()


async def convert(soak: Soak, rng: random.Random, number: int) -> None:
    """One member's conversion, retried as a careful client does through gateway restarts."""
    member = rng.choice(MEMBERS)
    source, target = rng.sample(PROGRAMS, 2)
    minimum, step = AMOUNTS[source]
    points = minimum + step * rng.randrange(0, 60)
    key = f"soak-{number}"
    quote_id: str | None = None
    for _ in range(200):
        try:
            if quote_id is None:
                answer = await soak.kit.graphql(
                    QUOTE, soak.tokens[member][source], **{"from": source, "to": target, "points": points}
                )
                body = answer.json()
                if body.get("errors"):
                    assert body["errors"][0]["extensions"]["code"] in ("LIMIT_EXCEEDED",), body
                    return
                quote_id = body["data"]["createQuote"]["id"]
            answer = await soak.kit.graphql(EXECUTE, soak.tokens[member][source], quote=quote_id, key=key)
            body = answer.json()
            if body.get("errors"):
                code = body["errors"][0]["extensions"]["code"]
                assert code == "QUOTE_EXPIRED", body
                quote_id, key = None, f"{key}-again"  # nothing was recorded under the old key
                continue
            soak.conversions[body["data"]["executeConversion"]["id"]] = member
            return
        except (httpx.TransportError, ValueError):
            await asyncio.sleep(0.1)  # the gateway is down (killed): ask again once it is back
    raise AssertionError(f"conversion {number} never got an answer")


async def operation_logs(sandboxes: SandboxFleet) -> dict[str, list[dict[str, Any]]]:
    return {program: await sandboxes[program].admin.operations() for program in PROGRAMS}


async def test_soak_with_faults_and_a_hard_kill_ends_final_and_agreeing(soak: Soak) -> None:
    rng = random.Random(20261127)
    for index, program in enumerate(PROGRAMS):
        await soak.sandboxes[program].admin.set_faults(
            latency_ms=5,
            percent={
                FaultKind.ERROR: 4,
                FaultKind.APPLY_THEN_ERROR: 4,
                FaultKind.APPLY_THEN_DROP: 4,
                FaultKind.HANG: 2,
            },
            seed=index,
        )
    numbers = iter(range(CONVERSIONS))

    async def client() -> None:
        for number in numbers:
            await convert(soak, rng, number)

    clients = [asyncio.create_task(client()) for _ in range(CLIENTS)]
    while len(soak.conversions) < CONVERSIONS // 3:
        await asyncio.sleep(0.05)
    soak.gateway.kill()  # mid-run, with requests in flight
    await asyncio.sleep(0.5)
    await soak.gateway.start()
    await asyncio.gather(*clients)
    assert len(soak.conversions) >= 300

    for program in PROGRAMS:
        await soak.sandboxes[program].admin.set_faults()
    statuses: Counter[str] = Counter()
    for _ in range(600):
        async with soak.kit.db.transaction() as session:
            statuses = Counter(
                dict(
                    tuple(row)
                    for row in await session.exec(text("SELECT status, count(*) FROM conversion GROUP BY status"))
                )
            )
        if not statuses["PENDING"]:
            break
        await asyncio.sleep(0.2)
    assert statuses["PENDING"] == 0, statuses
    assert statuses["COMPLETED"] > 200 and statuses["FAILED"] + statuses["REVERSED"] > 0, statuses

    async with soak.kit.db.transaction() as session:
        verification = await verify_ledger(session)
        completed = (
            await session.exec(
                text(
                    "SELECT id, from_program, to_program, points_in, points_out FROM conversion WHERE status = 'COMPLETED'"
                )
            )
        ).all()
        ledger_points = dict(
            tuple(row)
            for row in await session.exec(
                text("SELECT a.program_id, a.balance FROM ledger_account a WHERE a.kind = 'member-points'")
            )
        )
        ledger_lines = {
            (row[0], row[1]): row[2]
            for row in await session.exec(
                text(
                    "SELECT t.reference, a.program_id, e.amount FROM ledger_entry e"
                    " JOIN ledger_transaction t ON t.seq = e.transaction_seq"
                    " JOIN ledger_account a ON a.id = e.account_id WHERE a.kind = 'member-points'"
                )
            )
        }
    assert verification.ok, verification.problem

    # Members' points across all partners moved by exactly the conversions' net effect.
    net: Counter[str] = Counter()
    for _, source, target, points_in, points_out in completed:
        net[source] -= points_in
        net[target] += points_out
    for program in PROGRAMS:
        members = await soak.sandboxes[program].admin.members()
        assert members["total_points"] - members["total_opening_points"] == net[program], program
        assert ledger_points.get(program, 0) == net[program], program

    # Line by line: every debit and credit a partner still holds is a ledger line, and back.
    logs = await operation_logs(soak.sandboxes)
    partner_lines = {}
    for program, operations in logs.items():
        for operation in operations:
            if operation["kind"] in ("debit", "credit") and operation["status"] == "applied":
                conversion_id = operation["operation_id"].rsplit(":", 1)[0]
                sign = -1 if operation["kind"] == "debit" else 1
                partner_lines[(f"conversion:{conversion_id}", program)] = sign * operation["points"]
    assert partner_lines == ledger_lines
