"""A saga step that raises an unexpected error (a bug: a plain ``RuntimeError``, neither a
partner's error nor a database outage) while a *request* drives the row — ``executeConversion``
over GraphQL, a partner's signed callback — on a real gateway with sandbox partners, on SQLite
and PostgreSQL. The client gets the row as a late partner's answer leaves it (PENDING, to be
finished by recovery), never ``INTERNAL_SERVER_ERROR``; the row is put off exactly as the
recovery worker puts off a row that raised (its lease free, the error kept, due after the
retry back-off, not after the lease); recovery finishes it, and nothing is lost or doubled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, update

from exchange.conversions.models import Conversion, ConversionStatus, SagaStep
from exchange.programs.models import Program
from exchange.sagas.recovery import RecoveryPass, RecoveryWorker
from exchange.sandbox.faults import CallbackFault
from exchange.testing.sandboxes import SandboxFleet
from tests.integration.test_partners_that_answer_later import (
    Late,
    call_back,
    credit_at_fresh_mart,
    eventually,
    gateway,
)
from tests.integration.test_recovery_faults import FOREVER, KEPT, Bug, faults_counted

PROGRAMS = ("happy-card", "fresh-mart", "wallet-pay")
MODES = {"fresh-mart": "async"}  # wallet-pay answers at once; fresh-mart later, by a signed callback

QUOTE = """mutation($from: ID!, $to: ID!, $points: Int!) {
  createQuote(input: {fromProgram: $from, toProgram: $to, points: $points}) { id }
}"""
EXECUTE = """mutation($quote: ID!, $key: String!) {
  executeConversion(quoteId: $quote, idempotencyKey: $key) { id status failure { code } }
}"""


@pytest.fixture
async def late(database_url: str, sandboxes: SandboxFleet, tmp_path: Path) -> AsyncIterator[Late]:
    """A gateway with no background jobs (each test runs recovery itself), its partners
    wallet-pay (at once) and fresh-mart (later, by callback) beside happy-card."""
    async with gateway(database_url, sandboxes, tmp_path, programs=PROGRAMS, modes=MODES) as running:
        yield running


def inject(late: Late, monkeypatch: pytest.MonkeyPatch, program: str) -> Bug:
    """A bug in ``program``'s connector as the gateway's conversion saga calls it."""
    bug = Bug()
    saga = late.services.conversions.saga
    connector_for = saga.connector_for

    def buggy(declared: Program) -> Any:
        connector = connector_for(declared)
        return bug.wrapping(connector) if declared.id == program else connector

    monkeypatch.setattr(saga, "connector_for", buggy)
    return bug


async def execute(late: Late, key: str, target: str = "wallet-pay") -> dict[str, Any]:
    """``executeConversion`` of 1,000 happy-card points into ``target``, as alice asks it over
    GraphQL: the whole response body (data and any errors)."""
    token = await late.kit.member_token("happy-card", "alice")
    quote = await late.kit.data(QUOTE, token, **{"from": "happy-card", "to": target, "points": 1000})
    response = await late.kit.graphql(EXECUTE, token, quote=quote["createQuote"]["id"], key=key)
    assert response.status_code == 200
    return dict(response.json())


async def recover_when_due(late: Late, row: Conversion) -> RecoveryPass:
    """A recovery pass: not one row before ``row``'s back-off ends, then a pass at that time."""
    worker = RecoveryWorker(late.services.conversions.saga)
    assert await worker.run_pass(due_by=row.next_attempt_at - timedelta(microseconds=1)) == RecoveryPass(driven=0)
    return await worker.run_pass(due_by=row.next_attempt_at)


async def moved_once(late: Late, conversion_id: str, target: str) -> None:
    """COMPLETED, 1,000 points debited at happy-card and the points out credited once at
    ``target``, one ledger posting."""
    conversion = await late.conversion(conversion_id)
    assert (conversion.status, conversion.lease_until, conversion.last_error) == (
        ConversionStatus.COMPLETED,
        None,
        None,
    )
    assert await late.moved("happy-card") == -1000
    assert await late.moved(target) == conversion.points_out
    credits = [op for op in await late.sandboxes[target].admin.operations() if op["kind"] == "credit"]
    assert len(credits) == 1
    assert await late.postings(conversion_id) == 1


async def test_execute_conversion_whose_step_raises_once_answers_pending_and_recovery_finishes_it(
    late: Late, monkeypatch: pytest.MonkeyPatch
) -> None:
    bug = inject(late, monkeypatch, "wallet-pay")
    bug.remaining = 1  # the credit raises; the debit at happy-card has applied
    counted = faults_counted()

    body = await execute(late, "k-bug-once")
    assert "errors" not in body, body  # no INTERNAL_SERVER_ERROR, no trace
    answered = body["data"]["executeConversion"]
    assert (answered["status"], answered["failure"]) == ("PENDING", None)

    row = await late.conversion(answered["id"])
    assert row.lease_until is None  # free for recovery now, not when the request's lease ends
    assert (row.status, row.in_doubt, row.attempts, row.last_error) == (ConversionStatus.PENDING, True, 1, KEPT)
    # Due after the retry back-off (2 s), long before the request's lease (30 s) would have ended.
    assert row.created_at < row.next_attempt_at < row.created_at + late.services.conversions.saga.policy.lease
    assert faults_counted() - counted == 1
    assert await late.moved("wallet-pay") == 0 and await late.moved("happy-card") == -1000

    assert await recover_when_due(late, row) == RecoveryPass(driven=1)
    await moved_once(late, row.id, "wallet-pay")
    assert bug.raised == 1

    token = await late.kit.member_token("happy-card", "alice")
    read_back = await late.kit.data(
        "query($id: ID!) { conversion(id: $id) { status failure { code } } }", token, id=row.id
    )
    assert read_back["conversion"] == {"status": "COMPLETED", "failure": None}


async def test_execute_conversion_whose_step_always_raises_backs_off_until_fixed(
    late: Late, monkeypatch: pytest.MonkeyPatch
) -> None:
    bug = inject(late, monkeypatch, "wallet-pay")
    bug.remaining = FOREVER
    body = await execute(late, "k-bug-always")
    assert "errors" not in body, body
    conversion_id = body["data"]["executeConversion"]["id"]
    assert body["data"]["executeConversion"]["status"] == "PENDING"

    waits = []
    for attempts in (1, 2):
        row = await late.conversion(conversion_id)
        assert (row.attempts, row.last_error, row.lease_until) == (attempts, KEPT, None)
        waits.append(late.services.conversions.saga.policy.backoff(attempts))
        assert await recover_when_due(late, row) == RecoveryPass(driven=1, faulted=(conversion_id,))
    assert waits[0] < waits[1]
    assert await late.moved("wallet-pay") == 0

    bug.remaining = 0  # the bug fixed
    assert await recover_when_due(late, await late.conversion(conversion_id)) == RecoveryPass(driven=1)
    await moved_once(late, conversion_id, "wallet-pay")


async def test_a_request_whose_lease_passed_to_a_worker_leaves_the_row_to_it(
    late: Late, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request's step outlasts its lease; a recovery worker takes the row meanwhile; then the
    step raises. The request's guarded update finds another lease and changes nothing: the
    client is answered PENDING, and the row is the worker's alone."""
    saga = late.services.conversions.saga
    bug = inject(late, monkeypatch, "wallet-pay")
    taken_over: list[str] = []

    async def worker_claims() -> None:
        # The request's lease runs out (moved into the past: the gateway's clock is the real
        # one), and a worker claims the row, now due.
        past = datetime.now(UTC) - timedelta(seconds=1)
        async with late.db.transaction() as session:
            await session.exec(
                update(Conversion)
                .where(col(Conversion.status) == ConversionStatus.PENDING)
                .values(lease_until=past, next_attempt_at=past)
            )
        taken_over.extend(await saga.claim_due())

    bug.remaining, bug.meanwhile = 1, worker_claims
    body = await execute(late, "k-taken-over")
    assert "errors" not in body, body
    conversion_id = body["data"]["executeConversion"]["id"]
    assert body["data"]["executeConversion"]["status"] == "PENDING"
    assert taken_over == [conversion_id]
    row = await late.conversion(conversion_id)
    assert row.lease_until is not None and row.lease_until > datetime.now(UTC)  # the worker's, kept
    assert (row.attempts, row.last_error, row.in_doubt) == (0, None, False)

    await saga.recover(conversion_id)  # the worker drives what it claimed
    await moved_once(late, conversion_id, "wallet-pay")


async def test_a_callback_whose_step_raises_is_answered_with_the_row_and_recovery_finishes_it(
    late: Late, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh_mart = late.sandboxes["fresh-mart"].admin
    await fresh_mart.set_faults(settle_after_ms=None, callback=CallbackFault.NEVER)  # pending, no word yet
    body = await execute(late, "k-late", target="fresh-mart")
    conversion_id = body["data"]["executeConversion"]["id"]
    conversion = await late.conversion(conversion_id)
    assert conversion.step == SagaStep.AWAIT_CREDIT
    operation = await credit_at_fresh_mart(late, conversion)

    bug = inject(late, monkeypatch, "fresh-mart")
    bug.remaining = 1  # the poll the callback starts raises
    called = await call_back(late, operation, status="applied")
    assert called.status_code == 200, called.text
    assert called.json() == {"saga": "conversion", "id": conversion_id, "status": "PENDING", "step": "AWAIT_CREDIT"}
    row = await late.conversion(conversion_id)
    assert (row.lease_until, row.attempts, row.last_error) == (None, 1, KEPT)

    await fresh_mart.set_faults(settle_after_ms=0, callback=CallbackFault.NEVER)  # the partner applies it now

    async def credited() -> bool:
        return await late.moved("fresh-mart") == conversion.points_out

    await eventually(credited, "the partner applying the credit")
    assert await recover_when_due(late, row) == RecoveryPass(driven=1)  # the poll learns it
    await moved_once(late, conversion_id, "fresh-mart")
    assert bug.raised == 1
