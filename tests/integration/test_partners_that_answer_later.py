"""Partners that answer later, for real: a gateway on loopback and sandbox partners in async
mode (fresh-mart: debits and credits accepted pending, settled with a signed callback) and in
batch mode (wallet-pay: credits by a daily file), realtime happy-card beside them.

Each test checks the outcome and that nothing was lost or doubled: one ledger posting per
completed conversion, and the partners' balances moved by exactly what completed."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from exchange.app import create_app
from exchange.auth.scopes import Role
from exchange.connectors import batch_files
from exchange.connectors.batch_files import ResultLine
from exchange.connectors.callbacks import callback_key, signed_headers
from exchange.connectors.connector import PartnerConnector
from exchange.conversions.models import Conversion, ConversionStatus, SagaStep
from exchange.conversions.saga import ExecuteRequest
from exchange.db.database import Database
from exchange.members.authority import DebitAuthority
from exchange.pricing import quotes
from exchange.rewards.catalog import RewardDraft
from exchange.rewards.models import Redemption, RedemptionStatus, RedemptionStep, Reward
from exchange.rewards.redemption import RedeemRequest
from exchange.sandbox.faults import CallbackFault, FaultKind
from exchange.services.container import Services, load_partners_directory
from exchange.serving import free_port, serving
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit
from exchange.testing.processes import declarations_pointing_at
from exchange.testing.sandboxes import SandboxFleet
from tests.conftest import SAMPLE_PARTNERS
from tests.factories import member_with_accounts

MODES = {"fresh-mart": "async", "wallet-pay": "batch", "harbor-bank": "batch"}
PROGRAMS = ("happy-card", "fresh-mart", "wallet-pay", "harbor-bank")
OPENING = 120_000  # alice's balance at every sandbox

PENDING_OPERATIONS = """{ pendingOperations { saga id programId operationId step points ageSeconds polls } }"""


@dataclass
class Late:
    services: Services
    sandboxes: SandboxFleet
    kit: ExchangeKit
    callback_url: str

    @property
    def db(self) -> Database:
        return self.services.db

    async def convert(self, points: int, source: str, target: str, key: str) -> Conversion:
        settings = self.services.settings
        async with self.db.transaction() as session:
            quote = await quotes.create_quote(
                session,
                quotes.QuoteRequest(member_id="alice", member_level=0, source=source, target=target, points=points),
                policy=quotes.QuotePolicy(ttl=settings.quote_ttl, timezone=settings.timezone),
                now=datetime.now(UTC),
            )
        return await self.services.conversions.saga.execute(
            ExecuteRequest(
                member_id="alice", quote_id=quote.id, idempotency_key=key, authority=DebitAuthority(asserted_by=source)
            )
        )

    async def conversion(self, conversion_id: str) -> Conversion:
        async with self.db.transaction() as session:
            conversion = await session.get(Conversion, conversion_id)
        assert conversion is not None
        return conversion

    async def postings(self, conversion_id: str) -> int:
        async with self.db.transaction() as session:
            result = await session.exec(
                text("SELECT count(*) FROM ledger_transaction WHERE reference = :ref"),  # type: ignore[call-overload]
                params={"ref": f"conversion:{conversion_id}"},
            )
            return int(result.one()[0])

    async def moved(self, program: str) -> int:
        """Alice's points at ``program`` since the start."""
        return await self.sandboxes[program].admin.balance("alice") - OPENING


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15) -> None:
    """Wait until ``check()`` holds (a condition, not a time)."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{what} never happened"
        await asyncio.sleep(0.02)


async def credit_at_fresh_mart(late: Late, conversion: Conversion) -> dict[str, Any]:
    """The conversion's credit as fresh-mart has it now."""
    operations = await late.sandboxes["fresh-mart"].admin.operations()
    return next(op for op in operations if op["operation_id"] == f"{conversion.id}:credit")


async def call_back(late: Late, operation: dict[str, Any], **changes: object) -> httpx.Response:
    """fresh-mart's callback, well signed, about its ``operation`` with ``changes``."""
    body = httpx.Response(200, json={**operation, "target": None, **changes}).content
    headers = signed_headers(callback_key("sandbox-fresh-mart"), str(uuid.uuid4()), int(time.time()), body)
    return await late.kit.http.post(late.callback_url, content=body, headers=headers)


@pytest.fixture
async def late(pg_database_url: str, sandboxes: SandboxFleet, tmp_path: Path) -> AsyncIterator[Late]:
    async with gateway(pg_database_url, sandboxes, tmp_path) as running:
        yield running


@pytest.fixture
async def late_anywhere(database_url: str, sandboxes: SandboxFleet, tmp_path: Path) -> AsyncIterator[Late]:
    """The same, on SQLite and on PostgreSQL."""
    async with gateway(database_url, sandboxes, tmp_path) as running:
        yield running


@asynccontextmanager
async def gateway(
    database_url: str,
    sandboxes: SandboxFleet,
    tmp_path: Path,
    *,
    programs: tuple[str, ...] = PROGRAMS,
    modes: dict[str, str] = MODES,
) -> AsyncIterator[Late]:
    """A gateway whose partners ``programs`` answer as ``modes`` says (the others at once),
    alice linked at each of them; fresh-mart calls back."""
    await sandboxes.start(*programs, modes=modes)
    settings = Settings(
        database_url=database_url,
        partners_dir=declarations_pointing_at({}, SAMPLE_PARTNERS, tmp_path / "partners", modes=modes),
        port=free_port(),
        # No background jobs: each test polls (recover) and sends files (batches) itself.
        recovery_interval_seconds=0,
        redemption_interval_seconds=0,
        partner_retry_attempts=1,
    )
    await load_partners_directory(settings)
    app = create_app(settings, partner_base_urls=sandboxes.base_urls)
    async with serving(app, port=settings.port) as server:
        services: Services = app.state.services
        await member_with_accounts(services.db, dict.fromkeys(programs, "alice"), datetime.now(UTC), member_id="alice")
        callback_url = f"{server.url}/partners/fresh-mart/callbacks"
        await sandboxes["fresh-mart"].admin.set_callback_url(callback_url)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            yield Late(services, sandboxes, ExchangeKit(settings=settings, http=http, db=services.db), callback_url)


async def test_an_async_credit_waits_pending_then_completes_on_the_signed_callback(late: Late) -> None:
    fresh_mart = late.sandboxes["fresh-mart"].admin
    await fresh_mart.set_faults(settle_after_ms=None)  # the partner holds it pending
    conversion = await late.convert(1000, "happy-card", "fresh-mart", "k-async")
    assert (conversion.status, conversion.step) == (ConversionStatus.PENDING, SagaStep.AWAIT_CREDIT)
    assert await late.moved("happy-card") == -1000 and await late.moved("fresh-mart") == 0

    staff = await late.kit.staff_token(Role.SETTLEMENT)
    waiting = (await late.kit.data(PENDING_OPERATIONS, staff))["pendingOperations"]
    assert [(w["id"], w["programId"], w["operationId"], w["step"], w["points"]) for w in waiting] == [
        (conversion.id, "fresh-mart", f"{conversion.id}:credit", "AWAIT_CREDIT", conversion.points_out)
    ]
    assert waiting[0]["ageSeconds"] >= 0
    partner = await late.kit.partner_token("fresh-mart")
    refused = (await late.kit.graphql(PENDING_OPERATIONS, partner)).json()
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    listed = await exchange_command("pending", database_url=late.services.settings.database_url)
    assert listed.split("\t")[:5] == [
        "conversion",
        conversion.id,
        "fresh-mart",
        f"{conversion.id}:credit",
        str(conversion.points_out),
    ]

    await fresh_mart.set_faults(settle_after_ms=0)  # settles now, and calls back
    await eventually(
        lambda: _status_is(late, conversion.id, ConversionStatus.COMPLETED), "completion by the partner's callback"
    )
    assert [sent["answer"] for sent in await fresh_mart.sent_callbacks()] == [200]
    assert await late.moved("fresh-mart") == conversion.points_out
    assert await late.postings(conversion.id) == 1
    assert (await late.kit.data(PENDING_OPERATIONS, staff))["pendingOperations"] == []


RETRYING_OPERATIONS = """{ retryingOperations { saga id programId status step attempts lastError ageSeconds } }"""


#: A partner's refusal in words that would forge a line of ``exchange retrying``'s listing and
#: clear the staff member's terminal.
HOSTILE_WORDS = "closed\nconversion\tc-forged\tfresh-mart\x1b[2J"


async def test_staff_see_a_step_a_partner_keeps_failing_by_graphql_and_the_command_line(late: Late) -> None:
    """What the saga records when it puts a step off (``test_conversion_saga`` proves that) is
    listed for staff alike over GraphQL and by ``exchange retrying``, and refused to a partner.
    The command line writes one line per row: the partner's line breaks, tabs and terminal
    escapes in its words are written as escapes."""
    conversion = await late.convert(1000, "happy-card", "fresh-mart", "k-retrying")
    last_error = f"partner fresh-mart refused credit: {HOSTILE_WORDS}"
    # As four refused attempts at the credit leave it: put off until its back-off ends (else the
    # gateway's recovery job could take it up before the command line lists it).
    async with late.services.db.transaction() as session:
        await session.exec(  # type: ignore[call-overload]
            text(
                "UPDATE conversion SET status = 'PENDING', step = 'CREDIT', attempts = 4, "
                "last_error = :last_error, next_attempt_at = :put_off_until WHERE id = :id"
            ),
            params={
                "id": conversion.id,
                "last_error": last_error,
                "put_off_until": datetime.now(UTC) + timedelta(hours=1),
            },
        )
    staff = await late.kit.staff_token(Role.SETTLEMENT)
    [row] = (await late.kit.data(RETRYING_OPERATIONS, staff))["retryingOperations"]
    assert {name: value for name, value in row.items() if name != "ageSeconds"} == {
        "saga": "conversion",
        "id": conversion.id,
        "programId": "fresh-mart",
        "status": "PENDING",
        "step": "CREDIT",
        "attempts": 4,
        "lastError": last_error,
    }
    partner = await late.kit.partner_token("fresh-mart")
    refused = (await late.kit.graphql(RETRYING_OPERATIONS, partner)).json()
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    listed = await exchange_command("retrying", database_url=late.services.settings.database_url)
    [line] = listed.splitlines()
    fields = line.split("\t")
    assert fields[:6] + fields[-1:] == [
        "conversion",
        conversion.id,
        "fresh-mart",
        "PENDING",
        "CREDIT",
        "4",
        "partner fresh-mart refused credit: closed\\nconversion\\tc-forged\\tfresh-mart\\x1b[2J",
    ]


async def test_either_listing_asked_for_no_rows_or_too_many_is_refused_naming_first(late: Late) -> None:
    """Both staff listings page alike: from 1 to 500 rows, else ``BAD_USER_INPUT`` on ``first``."""
    staff = await late.kit.staff_token(Role.SETTLEMENT)
    for listing, first in (
        ("pendingOperations", 0),
        ("retryingOperations", 0),
        ("pendingOperations", 501),
        ("retryingOperations", 501),
    ):
        [error] = (await late.kit.graphql(f"{{ {listing}(first: {first}) {{ id }} }}", staff)).json()["errors"]
        assert (error["extensions"]["code"], error["extensions"]["field"]) == ("BAD_USER_INPUT", "first"), listing
        assert error["message"] == "first must be between 1 and 500", listing


async def test_either_listing_of_a_program_that_does_not_exist_is_not_found(late: Late) -> None:
    """A mistyped program id is ``NOT_FOUND`` naming it, as everywhere, not an empty listing
    that reads as "nothing waits for that partner"."""
    staff = await late.kit.staff_token(Role.SETTLEMENT)
    for listing in ("pendingOperations", "retryingOperations"):
        [error] = (await late.kit.graphql(f'{{ {listing}(programId: "fresh-mrt") {{ id }} }}', staff)).json()["errors"]
        assert (error["extensions"]["code"], error["extensions"]["field"]) == ("NOT_FOUND", "programId"), listing
        assert error["message"].startswith("no program has id 'fresh-mrt'; the programs are "), listing


async def test_a_callback_that_comes_twice_changes_nothing_the_second_time(late: Late) -> None:
    fresh_mart = late.sandboxes["fresh-mart"].admin
    await fresh_mart.set_faults(callback=CallbackFault.TWICE)
    conversion = await late.convert(1000, "happy-card", "fresh-mart", "k-twice")

    async def both_answered() -> bool:
        return len(await fresh_mart.sent_callbacks()) == 2

    await eventually(both_answered, "two callbacks")
    assert [sent["answer"] for sent in await fresh_mart.sent_callbacks()] == [200, 200]
    assert (await late.conversion(conversion.id)).status == ConversionStatus.COMPLETED
    assert await late.postings(conversion.id) == 1
    assert await late.moved("fresh-mart") == conversion.points_out
    assert await late.moved("happy-card") == -1000


async def test_a_forged_or_replayed_callback_is_refused_and_changes_nothing(late: Late) -> None:
    fresh_mart = late.sandboxes["fresh-mart"].admin
    await fresh_mart.set_faults(callback=CallbackFault.FORGED)
    conversion = await late.convert(1000, "happy-card", "fresh-mart", "k-forged")

    async def answered() -> bool:
        return bool(await fresh_mart.sent_callbacks())

    await eventually(answered, "the forged callback")
    assert [sent["answer"] for sent in await fresh_mart.sent_callbacks()] == [401]
    settled = next(op for op in await fresh_mart.operations() if op["operation_id"] == f"{conversion.id}:credit")
    assert settled["status"] == "applied"  # the partner did credit: only the forgery was refused

    body = httpx.Response(200, json={**settled, "target": None}).content
    replayed = signed_headers(
        callback_key("sandbox-fresh-mart"), "replay-1", int(time.time()) - 3600, body
    )  # well signed, an hour old
    answer = await late.kit.http.post(late.callback_url, content=body, headers=replayed)
    assert answer.status_code == 401 and answer.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # Another partner cannot settle fresh-mart's credit, even with its own valid signature.
    elsewhere = signed_headers(callback_key("sandbox-happy-card"), "other-1", int(time.time()), body)
    answer = await late.kit.http.post(
        late.callback_url.replace("fresh-mart", "happy-card"), content=body, headers=elsewhere
    )
    assert answer.status_code == 404
    conversion = await late.conversion(conversion.id)
    assert (conversion.status, conversion.step) == (ConversionStatus.PENDING, SagaStep.AWAIT_CREDIT)
    assert await late.postings(conversion.id) == 0

    await late.services.conversions.recover()  # polling learns what the forgery could not say
    assert (await late.conversion(conversion.id)).status == ConversionStatus.COMPLETED
    assert await late.postings(conversion.id) == 1
    assert await late.moved("fresh-mart") == conversion.points_out


async def test_a_callback_after_the_poll_settled_it_or_about_another_write_changes_nothing(late: Late) -> None:
    fresh_mart = late.sandboxes["fresh-mart"].admin
    await fresh_mart.set_faults(callback=CallbackFault.NEVER)
    conversion = await late.convert(1000, "happy-card", "fresh-mart", "k-polled")

    async def credited() -> bool:
        return await late.moved("fresh-mart") == conversion.points_out

    await eventually(credited, "the partner settling the credit")
    await late.services.conversions.recover()  # the poll learns it first
    assert (await late.conversion(conversion.id)).status == ConversionStatus.COMPLETED
    settled = await credit_at_fresh_mart(late, conversion)
    for word in ({}, {"status": "failed"}):  # the same word late, or (against the contract) a contrary one
        answer = await call_back(late, settled, **word)
        assert (answer.status_code, answer.json()["status"]) == (200, "COMPLETED")
    wrong_write = await call_back(late, settled, operation_id=f"{conversion.id}:debit", kind="debit")  # happy-card's
    assert wrong_write.status_code == 404
    other_points = await call_back(late, settled, points=conversion.points_out + 1)
    assert other_points.status_code == 400
    assert other_points.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert (await late.conversion(conversion.id)).status == ConversionStatus.COMPLETED
    assert await late.postings(conversion.id) == 1
    assert await late.moved("fresh-mart") == conversion.points_out
    assert await late.moved("happy-card") == -1000


async def test_a_callback_that_overtakes_the_answer_to_its_write_is_asked_again_then_taken(late: Late) -> None:
    """fresh-mart takes the credit and settles it, but its answer to the credit is lost: the
    exchange has not heard that the credit is waiting when the callback comes. The callback is
    refused as not waiting yet (409, to be sent again), not answered "taken" and dropped."""
    fresh_mart = late.sandboxes["fresh-mart"].admin
    await fresh_mart.set_faults(callback=CallbackFault.NEVER, script=[FaultKind.APPLY_THEN_ERROR])
    conversion = await late.convert(1000, "happy-card", "fresh-mart", "k-overtaken")

    async def credited() -> bool:
        return await late.moved("fresh-mart") == conversion.points_out

    await eventually(credited, "the partner settling the credit")
    settled = await credit_at_fresh_mart(late, conversion)
    early = await call_back(late, settled)
    assert early.status_code == 409
    [error] = early.json()["errors"]
    assert (error["extensions"]["code"], error["extensions"]["field"]) == ("NOT_WAITING_YET", "operation_id")
    assert "send it again" in error["message"]
    assert (await late.conversion(conversion.id)).status == ConversionStatus.PENDING
    assert await late.postings(conversion.id) == 0
    await late.services.conversions.recover()  # the exchange learns the credit's fate from the partner
    again = await call_back(late, settled)
    assert (again.status_code, again.json()["status"]) == (200, "COMPLETED")
    assert await late.postings(conversion.id) == 1
    assert await late.moved("fresh-mart") == conversion.points_out


async def test_a_callback_that_never_comes_is_made_up_for_by_polling(late: Late) -> None:
    fresh_mart = late.sandboxes["fresh-mart"].admin
    await fresh_mart.set_faults(callback=CallbackFault.NEVER)
    conversion = await late.convert(1000, "fresh-mart", "happy-card", "k-never")  # fresh-mart debits late
    assert conversion.step == SagaStep.AWAIT_DEBIT

    async def debited() -> bool:
        return await late.moved("fresh-mart") == -1000

    await eventually(debited, "the partner settling the debit")
    assert (await late.conversion(conversion.id)).status == ConversionStatus.PENDING
    await late.services.conversions.recover()
    assert (await late.conversion(conversion.id)).status == ConversionStatus.COMPLETED
    assert await late.moved("happy-card") == conversion.points_out
    assert await late.postings(conversion.id) == 1
    assert await fresh_mart.sent_callbacks() == []


async def test_a_credit_the_partner_declines_later_reverses_the_debit(late: Late) -> None:
    await late.sandboxes["fresh-mart"].admin.set_faults(decline=1)
    conversion = await late.convert(1000, "happy-card", "fresh-mart", "k-declined")
    await eventually(lambda: _status_is(late, conversion.id, ConversionStatus.REVERSED), "the reversal")
    conversion = await late.conversion(conversion.id)
    assert conversion.failure_code == "PARTNER_REFUSED"
    assert await late.moved("happy-card") == 0 and await late.moved("fresh-mart") == 0
    assert await late.postings(conversion.id) == 0


async def test_a_callback_about_another_partners_waiting_credit_is_refused_and_credits_nothing(late: Late) -> None:
    """While wallet-pay's credit waits for its file, fresh-mart (well signed, but not the
    partner that holds it) calls back that the credit applied: refused (404), the conversion
    still waits, nothing is posted; wallet-pay's own file then completes it, posted once."""
    conversion = await late.convert(400, "happy-card", "wallet-pay", "k-other-partner")
    assert conversion.step == SagaStep.AWAIT_CREDIT
    claimed = {
        "operation_id": f"{conversion.id}:credit",
        "kind": "credit",
        "status": "applied",
        "member_ref": "alice",
        "points": conversion.points_out,
        "reversed_points": 0,
        "created_at": datetime.now(UTC).isoformat(),
    }
    answer = await call_back(late, claimed)
    assert answer.status_code == 404
    still = await late.conversion(conversion.id)
    assert (still.status, still.step) == (ConversionStatus.PENDING, SagaStep.AWAIT_CREDIT)
    assert await late.postings(conversion.id) == 0
    done = await late.services.batches.run_once()
    assert (done.sent, done.applied) == (1, 1)
    assert (await late.conversion(conversion.id)).status == ConversionStatus.COMPLETED
    assert await late.postings(conversion.id) == 1
    assert await late.moved("wallet-pay") == conversion.points_out
    assert await late.moved("happy-card") == -400


async def test_a_batch_result_file_completes_some_reverses_others_and_missing_lines_are_polled(late: Late) -> None:
    wallet_pay = late.sandboxes["wallet-pay"].admin
    conversions = [await late.convert(400, "happy-card", "wallet-pay", f"k-batch-{n}") for n in range(3)]
    assert {c.step for c in conversions} == {SagaStep.AWAIT_CREDIT}
    assert not [op for op in await wallet_pay.operations() if op["kind"] == "credit"]  # not called: a file will

    # The partner declines the file's first credit and leaves its last line out of the results.
    await wallet_pay.set_faults(decline=1, drop_result_lines=1)
    done = await late.services.batches.run_once()
    assert (done.sent, done.applied, done.missing) == (1, 2, 1)
    first, middle, last = sorted(conversions, key=lambda c: c.id)  # the file's order
    assert (await late.conversion(first.id)).status == ConversionStatus.REVERSED
    assert (await late.conversion(middle.id)).status == ConversionStatus.COMPLETED
    assert (await late.conversion(last.id)).status == ConversionStatus.PENDING

    again = await late.services.batches.run_once()  # nothing new to send, nothing to apply twice
    assert (again.sent, again.applied) == (0, 0)
    await late.services.conversions.recover()  # the left-out line, polled
    assert (await late.conversion(last.id)).status == ConversionStatus.COMPLETED
    assert [await late.postings(c.id) for c in (first, middle, last)] == [0, 1, 1]
    assert await late.moved("wallet-pay") == middle.points_out + last.points_out
    assert await late.moved("happy-card") == -800


async def test_a_result_file_with_a_line_too_long_is_refused_there_and_its_credits_wait(late: Late) -> None:
    """A line longer than any result is not read whole: the file is refused at that line, the
    lines before it settled, the batch's other credits waiting, and the next partner's batch
    (wallet-pay comes after harbor-bank) goes on in the same pass; the next run's file settles
    them, nothing lost, nothing doubled."""
    harbor_bank = late.sandboxes["harbor-bank"].admin
    conversions = [await late.convert(400, "happy-card", "harbor-bank", f"k-long-{n}") for n in range(3)]
    elsewhere = await late.convert(400, "happy-card", "wallet-pay", "k-long-elsewhere")
    await harbor_bank.set_faults(long_result_line=True)
    done = await late.services.batches.run_once()
    assert list(done.failed) == ["harbor-bank"]
    assert f"line 3: longer than {batch_files.MAX_LINE_CHARS} characters" in done.failed["harbor-bank"]
    assert (await late.conversion(elsewhere.id)).status == ConversionStatus.COMPLETED  # its partner's batch went on
    first, *others = sorted(conversions, key=lambda c: c.id)  # the file's order
    assert (await late.conversion(first.id)).status == ConversionStatus.COMPLETED
    assert [(await late.conversion(c.id)).step for c in others] == [SagaStep.AWAIT_CREDIT] * 2

    await harbor_bank.set_faults()
    again = await late.services.batches.run_once()  # the same batch's file, whole this time
    assert (again.sent, again.missing, dict(again.failed)) == (0, 0, {})
    assert {(await late.conversion(c.id)).status for c in conversions} == {ConversionStatus.COMPLETED}
    assert [await late.postings(c.id) for c in conversions] == [1, 1, 1]
    assert await late.moved("harbor-bank") == sum(c.points_out for c in conversions)
    assert await late.moved("wallet-pay") == elsewhere.points_out
    assert await late.moved("happy-card") == -1600


@pytest.mark.parametrize("without_points", [False, True], ids=["three columns", "two columns"])
async def test_a_result_file_with_or_without_points_settles_its_credits(
    late_anywhere: Late, without_points: bool
) -> None:
    late = late_anywhere
    wallet_pay = late.sandboxes["wallet-pay"].admin
    conversions = [await late.convert(1000, "happy-card", "wallet-pay", f"k-columns-{n}") for n in range(2)]
    await wallet_pay.set_faults(results_without_points=without_points)
    done = await late.services.batches.run_once()
    assert (done.sent, done.applied, done.mismatched, done.missing, dict(done.failed)) == (1, 2, 0, 0, {})
    assert {(await late.conversion(c.id)).status for c in conversions} == {ConversionStatus.COMPLETED}
    assert [await late.postings(c.id) for c in conversions] == [1, 1]
    assert await late.moved("wallet-pay") == sum(c.points_out for c in conversions)
    assert await late.moved("happy-card") == -2000


async def test_a_result_line_with_other_points_than_sent_is_not_posted_and_partner_and_ledger_agree(
    late_anywhere: Late,
) -> None:
    """wallet-pay credits a tenth of one credit and its result file says "applied" with those
    points: the exchange does not take the line, asks wallet-pay about that credit, finds it
    credited otherwise than sent, reverses it and the debit (REVERSED, PARTNER_CONTRADICTED),
    posts nothing for it; the file's other credit completes. Nothing lost, nothing doubled."""
    late = late_anywhere
    wallet_pay = late.sandboxes["wallet-pay"].admin
    conversions = [await late.convert(1000, "happy-card", "wallet-pay", f"k-short-{n}") for n in range(2)]
    short, whole = sorted(conversions, key=lambda c: c.id)  # the file's order
    await wallet_pay.set_faults(short_credits=1)
    done = await late.services.batches.run_once()
    assert (done.sent, done.applied, done.mismatched, done.missing, dict(done.failed)) == (1, 1, 1, 0, {})

    shorted = await late.conversion(short.id)
    assert (shorted.status, shorted.failure_code) == (ConversionStatus.REVERSED, "PARTNER_CONTRADICTED")
    assert (await late.conversion(whole.id)).status == ConversionStatus.COMPLETED
    assert [await late.postings(c.id) for c in (short, whole)] == [0, 1]
    assert await late.moved("wallet-pay") == whole.points_out, "the short credit given back, the other kept"
    assert await late.moved("happy-card") == -1000, "the short one's debit given back"
    credit = next(op for op in await wallet_pay.operations() if op["operation_id"] == f"{short.id}:credit")
    assert (credit["points"], credit["status"]) == (short.points_out // 10, "reversed")

    again = await late.services.batches.run_once()  # nothing left to settle, nothing reversed twice
    assert (again.sent, again.applied, again.mismatched) == (0, 0, 0)
    await late.services.conversions.recover()
    assert await late.moved("wallet-pay") == whole.points_out
    assert await late.moved("happy-card") == -1000


class EditedResults:
    """A partner's connector whose result files are edited on the way in (``edit``): a partner
    that writes a line the exchange must refuse."""

    def __init__(self, connector: PartnerConnector, edit: Callable[[list[ResultLine]], list[ResultLine]]) -> None:
        self.connector = connector
        self.edit = edit

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connector, name)

    async def credit_results(self, batch_id: str) -> AsyncIterator[ResultLine]:
        for line in self.edit([line async for line in self.connector.credit_results(batch_id)]):
            yield line


@pytest.mark.parametrize(
    ("edit", "refusal"),
    [
        pytest.param(
            lambda lines: [*lines, replace(lines[0], number=4)],
            "line 4: operation_id: {first}:credit was given on line 2 already",
            id="a second line for a credit",
        ),
        pytest.param(
            lambda lines: [lines[0], replace(lines[0], operation_id="not-sent:credit", number=3), *lines[1:]],
            "line 3: operation_id: not-sent:credit is not a credit of this batch",
            id="a line for a credit not in the file",
        ),
        pytest.param(
            lambda lines: [lines[0], replace(lines[0], operation_id=f"{lines[0].operation_id[:-7]}:debit", number=3)],
            "line 3: operation_id: {first}:debit is not a credit of this batch",
            id="a line for a debit",
        ),
    ],
)
async def test_a_result_line_for_a_credit_the_file_never_asked_or_gave_already_refuses_the_file_there(
    late: Late, edit: Callable[[list[ResultLine]], list[ResultLine]], refusal: str
) -> None:
    """Refused where it is, as a malformed line is: the line before it settled, the batch not
    settled (its other credit waits); the partner's file without it then settles the batch, and
    nothing is posted twice."""
    conversions = [await late.convert(1000, "happy-card", "wallet-pay", f"k-stray-{n}") for n in range(2)]
    first, second = sorted(conversions, key=lambda c: c.id)  # the file's order
    saga = late.services.batches.saga
    real = saga.connector_for
    saga.connector_for = lambda program: EditedResults(real(program), edit)  # type: ignore[assignment,return-value]
    try:
        done = await late.services.batches.run_once()
    finally:
        saga.connector_for = real  # type: ignore[method-assign]
    assert list(done.failed) == ["wallet-pay"]
    assert refusal.format(first=first.id) in done.failed["wallet-pay"]
    assert (await late.conversion(first.id)).status == ConversionStatus.COMPLETED
    again = await late.services.batches.run_once()  # the file as the partner serves it
    assert (again.sent, dict(again.failed)) == (0, {})
    assert {(await late.conversion(c.id)).status for c in conversions} == {ConversionStatus.COMPLETED}
    assert [await late.postings(c.id) for c in conversions] == [1, 1]
    assert await late.moved("wallet-pay") == first.points_out + second.points_out
    assert await late.moved("happy-card") == -2000


async def test_a_credits_file_sent_and_its_results_applied_again_after_a_crash_change_nothing(late: Late) -> None:
    wallet_pay = late.sandboxes["wallet-pay"].admin
    conversions = [await late.convert(400, "happy-card", "wallet-pay", f"k-again-{n}") for n in range(2)]
    await wallet_pay.set_faults(decline=1)
    first = await late.services.batches.run_once()
    assert (first.sent, first.applied, first.missing) == (1, 2, 0)
    declined, credited = sorted(conversions, key=lambda c: c.id)  # the file's order
    assert (await late.conversion(declined.id)).status == ConversionStatus.REVERSED
    assert (await late.conversion(credited.id)).status == ConversionStatus.COMPLETED

    async with late.db.transaction() as session:  # the process died before it recorded the file sent
        await session.exec(text("UPDATE credit_batch SET status = 'ASSEMBLED', sent_at = NULL"))  # type: ignore[call-overload]
    again = await late.services.batches.run_once()  # the same file sent again, its results read again
    assert (again.sent, again.applied, again.missing) == (1, 2, 0)
    assert (await late.conversion(declined.id)).status == ConversionStatus.REVERSED
    assert (await late.conversion(credited.id)).status == ConversionStatus.COMPLETED
    assert [await late.postings(c.id) for c in (declined, credited)] == [0, 1]
    assert await late.moved("wallet-pay") == credited.points_out, "credited once"
    assert await late.moved("happy-card") == -400, "the declined one's debit given back once"
    credits = [op for op in await wallet_pay.operations() if op["kind"] == "credit"]
    assert sorted(op["operation_id"] for op in credits) == sorted(f"{c.id}:credit" for c in conversions)


async def exchange_command(*argv: str, database_url: str) -> str:
    """The ``exchange`` command's standard output (it must succeed)."""
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("exchange")),
        *argv,
        env={**os.environ, "EXCHANGE_DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def _status_is(late: Late, conversion_id: str, status: ConversionStatus) -> bool:
    return (await late.conversion(conversion_id)).status == status


async def test_a_callback_that_contradicts_the_partners_own_record_is_not_taken_over_it(late: Late) -> None:
    """A signed callback is the partner's word, but its record (``GET /operations/{id}``) is
    what its books hold: a callback saying a credit failed that the record shows applied
    (the member was credited) does not give the member's debit back, and one saying a credit
    applied that the record still shows pending posts nothing. Either way the conversion ends
    as the partner's record says, and the ledger agrees with it."""
    fresh_mart = late.sandboxes["fresh-mart"].admin
    await fresh_mart.set_faults(callback=CallbackFault.NEVER)
    credited = await late.convert(1000, "happy-card", "fresh-mart", "k-said-failed")

    async def settled() -> bool:
        return await late.moved("fresh-mart") == credited.points_out

    await eventually(settled, "the partner settling the credit")
    said_failed = await call_back(late, await credit_at_fresh_mart(late, credited), status="failed")
    assert (said_failed.status_code, said_failed.json()["status"]) == (200, "COMPLETED")
    assert await late.postings(credited.id) == 1
    assert await late.moved("happy-card") == -1000  # the debit stands: the member holds the credit

    await fresh_mart.set_faults(callback=CallbackFault.NEVER, settle_after_ms=None)  # held pending
    held = await late.convert(1000, "happy-card", "fresh-mart", "k-said-applied")
    pending = await credit_at_fresh_mart(late, held)
    assert pending["status"] == "pending"
    said_applied = await call_back(late, pending, status="applied")
    assert (said_applied.status_code, said_applied.json()["status"]) == (200, "PENDING")
    assert await late.postings(held.id) == 0  # nothing posted for a credit the partner has not made
    await fresh_mart.set_faults(callback=CallbackFault.NEVER, settle_after_ms=0)

    async def both_settled() -> bool:
        return await late.moved("fresh-mart") == credited.points_out + held.points_out

    await eventually(both_settled, "the partner settling the held credit")
    await late.services.conversions.recover()
    assert (await late.conversion(held.id)).status == ConversionStatus.COMPLETED
    assert await late.postings(held.id) == 1
    assert await late.moved("happy-card") == -2000


async def test_a_debit_called_back_failed_that_the_partner_applied_goes_on_to_the_credit(late: Late) -> None:
    """fresh-mart debits the member later and calls back "failed" though its record shows the
    debit applied: the member's points are gone there, so the conversion credits them at the
    target and completes, as the record says, instead of failing with the points lost."""
    fresh_mart = late.sandboxes["fresh-mart"].admin
    await fresh_mart.set_faults(callback=CallbackFault.NEVER)
    conversion = await late.convert(1000, "fresh-mart", "happy-card", "k-debit-said-failed")
    assert conversion.step == SagaStep.AWAIT_DEBIT

    async def debited() -> bool:
        return await late.moved("fresh-mart") == -1000

    await eventually(debited, "the partner settling the debit")
    debit = next(op for op in await fresh_mart.operations() if op["operation_id"] == f"{conversion.id}:debit")
    answer = await call_back(late, debit, status="failed")
    assert (answer.status_code, answer.json()["status"]) == (200, "COMPLETED")
    assert await late.postings(conversion.id) == 1
    assert await late.moved("happy-card") == conversion.points_out


# -- a reward paid at a partner that answers later ----------------------------------------


async def redeem_at_fresh_mart(late: Late, key: str) -> tuple[Redemption, str]:
    """alice redeems a formosa-air reward paying with fresh-mart points (which fresh-mart debits
    later); the redemption as the request left it, and the reward's id."""
    saga = late.services.rewards.saga
    draft = RewardDraft(title="Lounge pass", price=Decimal("150"), stock=5)
    reward = await late.services.rewards.publish("formosa-air", draft)
    redemption = await saga.redeem(
        RedeemRequest(
            member_id="alice",
            reward_id=reward.id,
            pay_with="fresh-mart",
            idempotency_key=key,
            authority=DebitAuthority(asserted_by="fresh-mart"),
        )
    )
    return redemption, reward.id


async def redemption_is(late: Late, redemption_id: str, status: RedemptionStatus) -> bool:
    return (await late.services.rewards.saga.reload(redemption_id)).status == status


async def redemption_postings(late: Late, redemption_id: str) -> list[str]:
    async with late.db.transaction() as session:
        rows = await session.exec(
            text("SELECT kind FROM ledger_transaction WHERE reference = :ref ORDER BY seq"),  # type: ignore[call-overload]
            params={"ref": f"redemption:{redemption_id}"},
        )
        return [str(row[0]) for row in rows]


@pytest.mark.parametrize("callback", [CallbackFault.ONCE, CallbackFault.NEVER, CallbackFault.TWICE])
async def test_a_reward_paid_at_a_partner_that_debits_later_completes_once_and_is_given_back_once(
    late: Late, callback: CallbackFault
) -> None:
    """fresh-mart accepts the debit pending and settles it later, calling back once, never (the
    exchange polls) or twice: the redemption waits at AWAIT_DEBIT, completes posted once, and
    the member's cancel gives the points back once, at the partner and in the ledger."""
    fresh_mart = late.sandboxes["fresh-mart"].admin
    await fresh_mart.set_faults(settle_after_ms=None, callback=callback)
    redemption, reward = await redeem_at_fresh_mart(late, f"k-{callback}")
    assert (redemption.status, redemption.step) == (RedemptionStatus.PENDING, RedemptionStep.AWAIT_DEBIT)
    assert await late.moved("fresh-mart") == 0
    await fresh_mart.set_faults(settle_after_ms=0, callback=callback)
    if callback is CallbackFault.NEVER:

        async def debited() -> bool:
            return await late.moved("fresh-mart") == -redemption.points

        await eventually(debited, "the partner settling the debit")
        await late.services.rewards.recover()
    await eventually(lambda: redemption_is(late, redemption.id, RedemptionStatus.COMPLETED), "the completion")
    assert await late.moved("fresh-mart") == -redemption.points
    assert await redemption_postings(late, redemption.id) == ["redemption"]

    cancelled = await late.services.rewards.saga.cancel(redemption.id, member_id="alice")
    assert cancelled.status == RedemptionStatus.REVERSED
    assert await late.moved("fresh-mart") == 0
    assert await redemption_postings(late, redemption.id) == ["redemption", "redemption-reversal"]
    async with late.db.transaction() as session:
        assert (await session.get(Reward, reward)).stock == 5  # type: ignore[union-attr]


async def test_a_reward_whose_debit_the_partner_declines_later_fails_and_gives_its_stock_back(late: Late) -> None:
    await late.sandboxes["fresh-mart"].admin.set_faults(decline=1)
    redemption, reward = await redeem_at_fresh_mart(late, "k-declined")
    await eventually(lambda: redemption_is(late, redemption.id, RedemptionStatus.FAILED), "the failure")
    failed = await late.services.rewards.saga.reload(redemption.id)
    assert failed.failure_code == "PARTNER_REFUSED"
    assert await late.moved("fresh-mart") == 0
    assert await redemption_postings(late, redemption.id) == []
    async with late.db.transaction() as session:
        assert (await session.get(Reward, reward)).stock == 5  # type: ignore[union-attr]
