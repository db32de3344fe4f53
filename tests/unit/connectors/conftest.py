"""A partner mocked with respx, in either flavour, and connectors with fake time.

``partner.answer(...)`` and ``partner.refuse(...)`` build answers in the flavour under test,
so every test below runs against a REST and a GraphQL partner alike.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import respx

from exchange.connectors.connector import Call, PartnerConnector
from exchange.connectors.registry import ConnectorRegistry
from exchange.programs.declarations import ConnectorDeclaration
from exchange.settings import Settings

BASE_URL = "http://partner.test"
TOKEN_URL = f"{BASE_URL}/oauth/token"
PROGRAM = "wallet-pay"

REST_ROUTES: dict[Call, tuple[str, str]] = {
    Call.ACCOUNT: ("GET", "/members/alice"),
    Call.VERIFY_MEMBER: ("POST", "/members/alice/verify"),
    Call.OPERATION_STATUS: ("GET", "/operations/op-1"),
    Call.DEBIT: ("POST", "/debits"),
    Call.CREDIT: ("POST", "/credits"),
    Call.REVERSE: ("POST", "/reversals"),
    Call.MATCH_TIER: ("POST", "/tier-matches"),
}


class FakeTimer:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Sleeps:
    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def connector_config(kind: str, *, timeout: str = "2", **oauth: Any) -> ConnectorDeclaration:
    return ConnectorDeclaration.model_validate(
        {
            "kind": kind,
            "base_url": BASE_URL,
            "timeout_seconds": timeout,
            "oauth": {
                "token_url": TOKEN_URL,
                "client_id": "exchange",
                "client_secret": "s3cret",
                "scope": "points",
                **oauth,
            },
        }
    )


def token_answer(token: str = "token-1", expires_in: int | None = 3600) -> httpx.Response:
    body: dict[str, Any] = {"access_token": token, "token_type": "Bearer"}
    if expires_in is not None:
        body["expires_in"] = expires_in
    return httpx.Response(200, json=body)


def operation(
    operation_id: str = "op-1",
    kind: str = "debit",
    *,
    member_ref: str | None = "alice",
    points: Any = 100,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "operation_id": operation_id,
        "kind": kind,
        "status": "applied",
        "member_ref": member_ref,
        "points": points,
        "reversed_points": 0,
        "balance_after": 900,
        "reverses": None,
        "target": None,
        "tier": None,
        "expires_at": None,
        "created_at": "2026-11-27T10:00:00Z",
        **extra,
    }


_CAMEL = {
    "operation_id": "operationId",
    "member_ref": "memberRef",
    "reversed_points": "reversedPoints",
    "balance_after": "balanceAfter",
    "expires_at": "expiresAt",
    "created_at": "createdAt",
    "tier_expires_at": "tierExpiresAt",
    "expires_on": "expiresOn",
}


@dataclass
class MockPartner:
    """One partner's HTTP API under respx, spoken in ``kind``."""

    kind: str
    router: respx.MockRouter

    def route(self, call: Call) -> respx.Route:
        if self.kind == "graphql":
            return self.router.post(f"{BASE_URL}/graphql")
        method, path = REST_ROUTES[call]
        return self.router.request(method, f"{BASE_URL}{path}")

    def answer(self, result: Any, status: int = 200) -> httpx.Response:
        if self.kind == "graphql":
            return httpx.Response(200, json={"data": {"result": result}})
        if result is None:
            return self.refuse("OPERATION_NOT_FOUND")
        return httpx.Response(status, json=result)

    def refuse(self, code: str, detail: str = "refused", **facts: Any) -> httpx.Response:
        if self.kind == "graphql":
            error = {"message": detail, "path": ["result"], "extensions": {"code": code, **facts}}
            return httpx.Response(200, json={"data": None, "errors": [error]})
        statuses = {
            "UNKNOWN_MEMBER": 404,
            "OPERATION_NOT_FOUND": 404,
            "OPERATION_CONFLICT": 409,
            "OPERATION_VOIDED": 409,
            "INVALID_REQUEST": 400,
        }
        problem = {"title": detail, "status": statuses.get(code, 422), "code": code, "detail": detail, **facts}
        return httpx.Response(
            statuses.get(code, 422), json=problem, headers={"content-type": "application/problem+json"}
        )

    @staticmethod
    def sent(request: httpx.Request) -> dict[str, Any]:
        """What the connector sent, as snake_case contract arguments, in either flavour."""
        body = json.loads(request.content) if request.content else {}
        if "variables" in body:
            reverse = {camel: snake for snake, camel in _CAMEL.items()}
            return {reverse.get(name, name): value for name, value in body["variables"].items()}
        return body


@pytest.fixture
def timer() -> FakeTimer:
    return FakeTimer()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def settings() -> Settings:
    return Settings(
        partner_retry_attempts=3,
        partner_retry_backoff_seconds=0.1,
        partner_breaker_failure_threshold=5,
        partner_breaker_cooldown_seconds=10,
        partner_token_refresh_margin_seconds=30,
    )


@pytest.fixture
async def registry(settings: Settings, timer: FakeTimer, sleeps: Sleeps) -> AsyncIterator[ConnectorRegistry]:
    registry = ConnectorRegistry(
        settings,
        environ={"PARTNER_SECRET": "from-env"},
        timer=timer,
        sleep=sleeps,
        random=lambda: 0.0,
        transport=httpx.AsyncHTTPTransport,  # respx patches httpx's own transport
    )
    try:
        yield registry
    finally:
        await registry.aclose()


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        yield mock


@pytest.fixture(params=["rest", "graphql"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def token_route(router: respx.MockRouter) -> respx.Route:
    return router.post(TOKEN_URL).mock(return_value=token_answer())


@pytest.fixture
def partner(kind: str, router: respx.MockRouter, token_route: respx.Route) -> MockPartner:
    return MockPartner(kind=kind, router=router)


@pytest.fixture
def connector(registry: ConnectorRegistry, kind: str) -> PartnerConnector:
    return registry.connector(PROGRAM, connector_config(kind))
