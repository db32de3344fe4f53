"""Connectors of both kinds against real sandbox partners on loopback."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import pytest

from exchange.connectors.connector import PartnerConnector
from exchange.connectors.contract import OperationKind, OperationState
from exchange.connectors.errors import (
    CircuitOpen,
    InsufficientPoints,
    OperationConflict,
    OperationVoided,
    PartnerAuthenticationFailed,
    PartnerConnectionLost,
    PartnerServerError,
    PartnerTimeout,
    PartnerUnreachable,
    ReversalExceedsOriginal,
    UnknownMember,
    UnknownTier,
)
from exchange.connectors.registry import ConnectorRegistry
from exchange.sandbox.faults import FaultKind
from exchange.settings import Settings
from exchange.testing.sandboxes import RunningSandbox, SandboxFleet
from tests.conftest import SettableClock

PROGRAM = "wallet-pay"


async def no_wait(_: float) -> None:
    """Retry backoff without the wait: these tests are about outcomes, not pacing."""


@pytest.fixture(params=["rest", "graphql"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def wallet(sandboxes: SandboxFleet) -> RunningSandbox:
    (sandbox,) = await sandboxes.start(PROGRAM)
    return sandbox


def make_registry(**settings: object) -> ConnectorRegistry:
    return ConnectorRegistry(Settings(**settings), environ={}, sleep=no_wait)  # type: ignore[arg-type]


@pytest.fixture
async def registry() -> AsyncIterator[ConnectorRegistry]:
    registry = make_registry(partner_retry_attempts=3)
    yield registry
    await registry.aclose()


@pytest.fixture
async def once() -> AsyncIterator[ConnectorRegistry]:
    """Connectors that never retry: each fault shows as it is."""
    registry = make_registry(partner_retry_attempts=1)
    yield registry
    await registry.aclose()


def connect(registry: ConnectorRegistry, sandboxes: SandboxFleet, kind: str, *, timeout: str = "2") -> PartnerConnector:
    config = sandboxes.connector_config(PROGRAM, kind).model_copy(  # type: ignore[arg-type]
        update={"timeout_seconds": Decimal(timeout)}
    )
    return registry.connector(f"{PROGRAM}-{kind}", config)


@pytest.fixture
def partner(
    wallet: RunningSandbox, registry: ConnectorRegistry, sandboxes: SandboxFleet, kind: str
) -> PartnerConnector:
    return connect(registry, sandboxes, kind)


async def test_seeded_members_have_balances_tiers_and_expiring_points(partner: PartnerConnector) -> None:
    alice = await partner.account("alice")
    assert (alice.balance, alice.tier) == (120_000, "Premium")
    assert [lot.points for lot in alice.expiring] == [5_000]
    bob, carol, dave = [await partner.account(ref) for ref in ("bob", "carol", "dave")]
    assert [(m.balance, m.tier) for m in (bob, carol, dave)] == [
        (25_000, "Premium"),
        (3_000, "Regular"),
        (0, "Regular"),
    ]
    assert (await partner.verify_member("alice", "1111")).verified is True
    assert (await partner.verify_member("alice", "2222")).verified is False
    with pytest.raises(UnknownMember):
        await partner.account("zed")
    with pytest.raises(UnknownMember):
        await partner.verify_member("zed", "1111")


async def test_a_repeated_write_applies_once_and_answers_the_first_result(
    partner: PartnerConnector, wallet: RunningSandbox
) -> None:
    first = await partner.debit("c1:debit", "alice", 1_000)
    again = await partner.debit("c1:debit", "alice", 1_000)
    assert again == first and first.balance_after == 119_000
    await partner.credit("c1:credit", "bob", 500)
    await partner.credit("c1:credit", "bob", 500)
    assert await wallet.admin.balance("alice") == 119_000
    assert await wallet.admin.balance("bob") == 25_500
    assert [op["operation_id"] for op in await wallet.admin.operations()] == ["c1:debit", "c1:credit"]
    members = await wallet.admin.members()
    assert members["total_points"] == members["total_opening_points"] - 1_000 + 500


async def test_the_same_id_with_another_request_is_a_conflict(partner: PartnerConnector) -> None:
    await partner.debit("c2:debit", "alice", 1_000)
    with pytest.raises(OperationConflict):
        await partner.debit("c2:debit", "alice", 2_000)
    with pytest.raises(OperationConflict):
        await partner.credit("c2:debit", "alice", 1_000)


async def test_insufficient_points_is_refused_and_leaves_no_trace(
    partner: PartnerConnector, wallet: RunningSandbox
) -> None:
    with pytest.raises(InsufficientPoints) as refused:
        await partner.debit("c3:debit", "dave", 1)
    assert refused.value.facts["balance"] == 0
    assert await partner.operation_status("c3:debit") is None
    assert await wallet.admin.operations() == []


async def test_partial_reversals_never_exceed_the_original(partner: PartnerConnector, wallet: RunningSandbox) -> None:
    await partner.debit("c4:debit", "alice", 1_000)
    first = await partner.reverse("c4:rev1", "c4:debit", 300)
    assert first.points == 300 and first.target is not None
    assert (first.target.status, first.target.reversed_points) == (OperationState.APPLIED, 300)
    with pytest.raises(ReversalExceedsOriginal) as refused:
        await partner.reverse("c4:rev2", "c4:debit", 701)
    assert refused.value.facts["reversible_points"] == 700
    rest = await partner.reverse("c4:rev3", "c4:debit")
    assert rest.points == 700 and rest.target is not None
    assert rest.target.status is OperationState.REVERSED
    with pytest.raises(ReversalExceedsOriginal):
        await partner.reverse("c4:rev4", "c4:debit", 1)
    assert await wallet.admin.balance("alice") == 120_000
    status = await partner.operation_status("c4:debit")
    assert status is not None and (status.status, status.reversed_points) == (OperationState.REVERSED, 1_000)


async def test_reversing_an_id_that_never_arrived_voids_it(partner: PartnerConnector, wallet: RunningSandbox) -> None:
    reversal = await partner.reverse("c5:undo", "c5:debit")
    assert reversal.points == 0 and reversal.target is not None
    assert reversal.target.status is OperationState.VOIDED
    with pytest.raises(OperationVoided):
        await partner.debit("c5:debit", "alice", 1_000)
    status = await partner.operation_status("c5:debit")
    assert status is not None and status.status is OperationState.VOIDED
    assert await wallet.admin.balance("alice") == 120_000


async def test_reversing_a_credit_already_spent_is_refused(partner: PartnerConnector) -> None:
    await partner.credit("c6:credit", "dave", 100)
    await partner.debit("c6:spend", "dave", 100)
    with pytest.raises(InsufficientPoints):
        await partner.reverse("c6:undo", "c6:credit")


async def test_a_status_match_sets_a_tier_until_it_expires_or_is_reverted(
    partner: PartnerConnector, sandbox_clock: SettableClock
) -> None:
    until = sandbox_clock.now() + timedelta(days=90)
    match = await partner.match_tier("m1", "carol", "Premium", until)
    assert match.kind is OperationKind.TIER_MATCH
    carol = await partner.account("carol")
    assert (carol.tier, carol.tier_expires_at) == ("Premium", until)
    await partner.reverse("m1:revert", "m1")
    assert (await partner.account("carol")).tier == "Regular"
    with pytest.raises(UnknownTier):
        await partner.match_tier("m2", "carol", "Platinum", until)
    await partner.match_tier("m3", "carol", "Premium", until)
    sandbox_clock.advance(timedelta(days=91))
    assert (await partner.account("carol")).tier == "Regular"


async def test_apply_then_error_is_settled_by_the_retry(partner: PartnerConnector, wallet: RunningSandbox) -> None:
    await wallet.admin.set_faults(script=[FaultKind.APPLY_THEN_ERROR])
    debit = await partner.debit("f1:debit", "alice", 1_000)
    assert debit.balance_after == 119_000
    assert len(await wallet.admin.operations()) == 1


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (FaultKind.APPLY_THEN_ERROR, PartnerServerError),
        (FaultKind.APPLY_THEN_DROP, PartnerConnectionLost),
        (FaultKind.APPLY_THEN_HANG, PartnerTimeout),
    ],
)
async def test_an_answer_lost_after_applying_is_an_unknown_outcome_that_status_resolves(
    once: ConnectorRegistry,
    sandboxes: SandboxFleet,
    wallet: RunningSandbox,
    kind: str,
    fault: FaultKind,
    error: type[Exception],
) -> None:
    partner = connect(once, sandboxes, kind, timeout="1")
    await wallet.admin.set_faults(script=[fault])
    with pytest.raises(error):
        await partner.debit("f2:debit", "alice", 1_000)
    status = await partner.operation_status("f2:debit")
    assert status is not None and status.status is OperationState.APPLIED
    assert await wallet.admin.balance("alice") == 119_000


@pytest.mark.parametrize(("fault", "error"), [(FaultKind.HANG, PartnerTimeout), (FaultKind.ERROR, PartnerServerError)])
async def test_a_fault_before_applying_applies_nothing(
    once: ConnectorRegistry,
    sandboxes: SandboxFleet,
    wallet: RunningSandbox,
    kind: str,
    fault: FaultKind,
    error: type[Exception],
) -> None:
    partner = connect(once, sandboxes, kind, timeout="1")
    await wallet.admin.set_faults(script=[fault])
    with pytest.raises(error):
        await partner.credit("f3:credit", "bob", 1_000)
    assert await partner.operation_status("f3:credit") is None
    await partner.reverse("f3:void", "f3:credit")
    with pytest.raises(OperationVoided):
        await partner.credit("f3:credit", "bob", 1_000)
    assert await wallet.admin.balance("bob") == 25_000


async def test_every_call_failing_exhausts_the_retries(partner: PartnerConnector, wallet: RunningSandbox) -> None:
    await wallet.admin.set_faults(percent={FaultKind.ERROR: 100})
    with pytest.raises(PartnerServerError):
        await partner.account("alice")
    await wallet.admin.set_faults()
    assert (await partner.account("alice")).balance == 120_000


async def test_latency_is_added_and_too_much_of_it_is_a_timeout(
    once: ConnectorRegistry, sandboxes: SandboxFleet, wallet: RunningSandbox, kind: str
) -> None:
    partner = connect(once, sandboxes, kind, timeout="1")
    await wallet.admin.set_faults(latency_ms=100)
    started = time.monotonic()
    await partner.account("alice")
    assert time.monotonic() - started >= 0.1
    await wallet.admin.set_faults(latency_ms=1_000)
    with pytest.raises(PartnerTimeout):
        await partner.account("alice")


async def test_random_faults_repeat_with_the_same_seed(
    once: ConnectorRegistry, sandboxes: SandboxFleet, wallet: RunningSandbox, kind: str
) -> None:
    registry = make_registry(partner_retry_attempts=1, partner_breaker_failure_threshold=100)
    partner = connect(registry, sandboxes, kind)

    async def run() -> list[bool]:
        await wallet.admin.set_faults(percent={FaultKind.ERROR: 50}, seed=7)
        outcomes = []
        for _ in range(12):
            try:
                await partner.account("alice")
                outcomes.append(True)
            except PartnerServerError:
                outcomes.append(False)
        return outcomes

    first = await run()
    assert await run() == first
    assert True in first and False in first
    await registry.aclose()


@pytest.mark.parametrize(
    ("points", "error", "applied"),
    [
        (11_000, PartnerServerError, False),
        (13_000, PartnerTimeout, False),
        (14_000, PartnerTimeout, True),
        (17_000, None, True),  # applied, then 500: the retry gets the recorded answer
        (19_000, None, True),  # applied, then dropped: likewise
    ],
)
async def test_magic_amounts(
    sandboxes: SandboxFleet,
    registry: ConnectorRegistry,
    wallet: RunningSandbox,
    kind: str,
    points: int,
    error: type[Exception] | None,
    applied: bool,
) -> None:
    partner = connect(registry, sandboxes, kind, timeout="1")
    if error is None:
        assert (await partner.debit("magic", "alice", points)).points == points
    else:
        with pytest.raises(error):
            await partner.debit("magic", "alice", points)
    # Asked with a deadline of its own: the second above is the debit's, short so that its
    # timeouts come quickly, and a loaded machine can take that long to answer a status.
    checking = connect(registry, sandboxes, kind, timeout="30")
    assert (await checking.operation_status("magic") is not None) is applied
    assert await wallet.admin.balance("alice") == 120_000 - (points if applied else 0)


async def test_a_restart_keeps_state_and_the_connector_fetches_a_new_token(
    partner: PartnerConnector, wallet: RunningSandbox
) -> None:
    await partner.debit("r1:debit", "alice", 1_000)
    await wallet.restart()
    assert (await partner.account("alice")).balance == 119_000
    status = await partner.operation_status("r1:debit")
    assert status is not None and status.points == 1_000


async def test_the_admin_api_restarts_the_sandbox(partner: PartnerConnector, wallet: RunningSandbox) -> None:
    await partner.debit("r2:debit", "alice", 1_000)
    await wallet.admin.request_restart()
    await wallet.server.restarts_done()
    assert (await partner.account("alice")).balance == 119_000


async def test_a_stopped_partner_refuses_connections_then_the_circuit_opens(
    sandboxes: SandboxFleet, wallet: RunningSandbox, kind: str
) -> None:
    registry = make_registry(partner_retry_attempts=1, partner_breaker_failure_threshold=2)
    partner = connect(registry, sandboxes, kind)
    await partner.account("alice")
    await wallet.stop()
    for _ in range(2):
        with pytest.raises(PartnerUnreachable):
            await partner.account("alice")
    with pytest.raises(CircuitOpen):
        await partner.account("alice")
    await registry.aclose()


async def test_an_expired_or_revoked_token_is_replaced_on_the_401(
    partner: PartnerConnector, wallet: RunningSandbox, sandbox_clock: SettableClock
) -> None:
    await partner.account("alice")
    sandbox_clock.advance(timedelta(hours=2))  # the partner's tokens lapse; ours looks fresh
    assert (await partner.account("alice")).balance == 120_000
    assert await wallet.admin.revoke_tokens() == 1
    assert (await partner.account("alice")).balance == 120_000


async def test_a_wrong_client_secret_is_an_authentication_failure(
    registry: ConnectorRegistry, sandboxes: SandboxFleet, wallet: RunningSandbox, kind: str
) -> None:
    config = sandboxes.connector_config(PROGRAM, kind)  # type: ignore[arg-type]
    wrong = config.model_copy(update={"oauth": config.oauth.model_copy(update={"client_secret": "nope"})})
    with pytest.raises(PartnerAuthenticationFailed):
        await registry.connector("wrong-secret", wrong).account("alice")


async def test_a_fleet_serves_every_sample_program(sandboxes: SandboxFleet) -> None:
    started = await sandboxes.start()
    assert len({sandbox.url for sandbox in started}) == len(started) == 6
    registry = sandboxes.registry(Settings())
    for sandbox in started:
        connector = registry.connector(sandbox.program.id, sandbox.program.connector)
        account = await connector.account("alice")
        assert account.tier == sandbox.program.tiers[-1].name
    await registry.aclose()
