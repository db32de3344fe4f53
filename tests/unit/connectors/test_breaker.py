"""The circuit breaker: closed, open after N consecutive failures, half-open probe after cool-down."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from exchange.connectors.breaker import BreakerState, CircuitBreaker
from exchange.connectors.connector import Call, ContractConnector
from exchange.connectors.errors import (
    CircuitOpen,
    InsufficientPoints,
    PartnerServerError,
    PartnerUnreachable,
)
from exchange.connectors.registry import ConnectorRegistry
from exchange.settings import Settings
from tests.unit.connectors.conftest import (
    PROGRAM,
    FakeTimer,
    MockPartner,
    Sleeps,
    connector_config,
)


def test_failures_below_the_threshold_keep_it_closed() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown=10, timer=FakeTimer())
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


def test_open_half_open_closed() -> None:
    timer = FakeTimer()
    breaker = CircuitBreaker(failure_threshold=2, cooldown=10, timer=timer)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    timer.advance(9.99)
    assert not breaker.allow()
    timer.advance(0.01)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow(), "one probe"
    assert not breaker.allow(), "only one probe at a time"
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


def test_a_failed_probe_opens_it_for_another_cool_down() -> None:
    timer = FakeTimer()
    breaker = CircuitBreaker(failure_threshold=1, cooldown=10, timer=timer)
    breaker.record_failure()
    timer.advance(10)
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    timer.advance(9)
    assert not breaker.allow()
    timer.advance(1)
    assert breaker.allow()


def test_a_released_probe_lets_another_call_probe() -> None:
    timer = FakeTimer()
    breaker = CircuitBreaker(failure_threshold=1, cooldown=10, timer=timer)
    breaker.record_failure()
    timer.advance(10)
    assert breaker.allow()
    breaker.release()
    assert breaker.allow()


@pytest.fixture
async def fragile(timer: FakeTimer, sleeps: Sleeps, kind: str) -> ContractConnector:
    """Opens after 3 consecutive failures, for 10 s; never retries."""
    settings = Settings(
        partner_retry_attempts=1,
        partner_breaker_failure_threshold=3,
        partner_breaker_cooldown_seconds=10,
    )
    registry = ConnectorRegistry(settings, environ={}, timer=timer, sleep=sleeps, transport=httpx.AsyncHTTPTransport)
    connector = registry.connector(PROGRAM, connector_config(kind))
    assert isinstance(connector, ContractConnector)
    return connector


async def test_a_dead_partner_costs_no_request_once_the_circuit_is_open(
    partner: MockPartner, fragile: ContractConnector, timer: FakeTimer
) -> None:
    route = partner.route(Call.ACCOUNT).mock(side_effect=httpx.ConnectError("refused"))
    for _ in range(3):
        with pytest.raises(PartnerUnreachable):
            await fragile.account("alice")
    with pytest.raises(CircuitOpen):
        await fragile.account("alice")
    assert route.call_count == 3
    assert fragile.client.breaker.state is BreakerState.OPEN

    timer.advance(10)
    route.mock(side_effect=None, return_value=partner.answer({"member_ref": "alice", "balance": 1, "tier": "Base"}))
    assert (await fragile.account("alice")).balance == 1
    assert fragile.client.breaker.state is BreakerState.CLOSED


async def test_while_a_probe_is_out_other_calls_fail_fast(
    partner: MockPartner, fragile: ContractConnector, timer: FakeTimer
) -> None:
    route = partner.route(Call.ACCOUNT).mock(side_effect=httpx.ConnectError("refused"))
    for _ in range(3):
        with pytest.raises(PartnerUnreachable):
            await fragile.account("alice")
    timer.advance(10)
    probe_sent = asyncio.Event()
    release = asyncio.Event()

    async def slow_answer(request: httpx.Request) -> httpx.Response:
        probe_sent.set()
        await release.wait()
        return partner.answer({"member_ref": "alice", "balance": 1, "tier": "Base"})

    route.mock(side_effect=slow_answer)
    probe = asyncio.create_task(fragile.account("alice"))
    await probe_sent.wait()
    with pytest.raises(CircuitOpen):
        await fragile.account("alice")
    release.set()
    assert (await probe).balance == 1
    assert fragile.client.breaker.state is BreakerState.CLOSED


async def test_a_failed_probe_opens_the_circuit_again(
    partner: MockPartner, fragile: ContractConnector, timer: FakeTimer
) -> None:
    route = partner.route(Call.ACCOUNT).mock(return_value=httpx.Response(500))
    for _ in range(3):
        with pytest.raises(PartnerServerError):
            await fragile.account("alice")
    timer.advance(10)
    with pytest.raises(PartnerServerError):
        await fragile.account("alice")
    assert route.call_count == 4
    with pytest.raises(CircuitOpen):
        await fragile.account("alice")


async def test_refusals_do_not_open_the_circuit(partner: MockPartner, fragile: ContractConnector) -> None:
    partner.route(Call.DEBIT).mock(return_value=partner.refuse("INSUFFICIENT_POINTS"))
    for _ in range(5):
        with pytest.raises(InsufficientPoints):
            await fragile.debit("op-1", "alice", 100)
    assert fragile.client.breaker.state is BreakerState.CLOSED


async def test_retries_stop_when_the_circuit_opens(
    partner: MockPartner, timer: FakeTimer, sleeps: Sleeps, kind: str
) -> None:
    settings = Settings(partner_retry_attempts=5, partner_breaker_failure_threshold=2)
    registry = ConnectorRegistry(settings, environ={}, timer=timer, sleep=sleeps, transport=httpx.AsyncHTTPTransport)
    connector = registry.connector(PROGRAM, connector_config(kind))
    route = partner.route(Call.ACCOUNT).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(CircuitOpen):
        await connector.account("alice")
    assert route.call_count == 2
    await registry.aclose()
