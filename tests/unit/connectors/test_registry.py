"""The registry: one connector per program, flavour by kind, secrets, base URL overrides."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

import httpx
import pytest
import respx

from exchange.connectors.connector import ContractConnector
from exchange.connectors.errors import PartnerNotConfigured
from exchange.connectors.graphql import GraphQLFlavour
from exchange.connectors.registry import ConnectorRegistry, with_base_url
from exchange.connectors.rest import RestFlavour
from exchange.programs.models import Program, ProgramKind
from exchange.settings import Settings
from tests.unit.connectors.conftest import (
    BASE_URL,
    PROGRAM,
    connector_config,
    token_answer,
)


def test_kind_picks_the_flavour(registry: ConnectorRegistry) -> None:
    rest = registry.connector("a", connector_config("rest"))
    graphql = registry.connector("b", connector_config("graphql"))
    assert isinstance(rest, ContractConnector) and isinstance(graphql, ContractConnector)
    assert isinstance(rest.flavour, RestFlavour)
    assert isinstance(graphql.flavour, GraphQLFlavour)


def test_the_same_program_and_settings_give_the_same_connector(registry: ConnectorRegistry) -> None:
    config = connector_config("rest")
    first = registry.connector(PROGRAM, config)
    assert registry.connector(PROGRAM, config.model_dump(mode="json")) is first
    assert registry.connector(PROGRAM, connector_config("graphql")) is not first


def test_a_program_keeps_its_connector_until_its_connector_settings_change(registry: ConnectorRegistry) -> None:
    def program(**changes: str) -> Program:
        # The registry reads a program's id, kind and connector settings only.
        settings = connector_config("rest", **changes).model_dump()
        return cast(Program, SimpleNamespace(id=PROGRAM, kind=ProgramKind.PARTNER, connector=settings))

    first = registry.for_program(program())
    assert registry.for_program(program()) is first
    changed = registry.for_program(program(timeout="5"))
    assert changed is not first
    assert registry.for_program(program(timeout="5")) is changed
    assert registry.for_program(program()) is not changed


async def test_closing_closes_every_client_built(settings: Settings) -> None:
    registry = ConnectorRegistry(settings, environ={}, transport=httpx.AsyncHTTPTransport)
    old = registry.connector(PROGRAM, connector_config("rest"))
    new = registry.connector(PROGRAM, connector_config("rest", timeout="5"))
    await registry.aclose()
    for connector in (old, new):
        assert isinstance(connector, ContractConnector)
        assert connector.client.is_closed


async def test_a_secret_from_the_environment(registry: ConnectorRegistry) -> None:
    config = connector_config("rest", client_secret=None, client_secret_env="PARTNER_SECRET")
    connector = registry.connector(PROGRAM, config)
    with respx.mock(assert_all_called=False) as router:
        token = router.post(f"{BASE_URL}/oauth/token").mock(return_value=token_answer())
        router.get(f"{BASE_URL}/members/alice").mock(
            return_value=httpx.Response(200, json={"member_ref": "alice", "balance": 0, "tier": "B"})
        )
        await connector.account("alice")
    assert token.calls.last.request.headers["authorization"] == httpx.BasicAuth("exchange", "from-env")._auth_header


def test_a_missing_secret_variable_is_partner_not_configured(registry: ConnectorRegistry) -> None:
    config = connector_config("rest", client_secret=None, client_secret_env="NOT_SET_ANYWHERE")
    with pytest.raises(PartnerNotConfigured, match=PROGRAM):
        registry.connector(PROGRAM, config)


async def test_a_secret_from_a_file(registry: ConnectorRegistry, tmp_path: Path) -> None:
    secret_file = tmp_path / "partner-secret"
    secret_file.write_text("from-file\n")
    connector = registry.connector(
        PROGRAM, connector_config("rest", client_secret=None, client_secret_file=str(secret_file))
    )
    with respx.mock(assert_all_called=False) as router:
        token = router.post(f"{BASE_URL}/oauth/token").mock(return_value=token_answer())
        router.get(f"{BASE_URL}/members/alice").mock(
            return_value=httpx.Response(200, json={"member_ref": "alice", "balance": 0, "tier": "B"})
        )
        await connector.account("alice")
    assert token.calls.last.request.headers["authorization"] == httpx.BasicAuth("exchange", "from-file")._auth_header


def test_a_missing_secret_file_is_partner_not_configured(registry: ConnectorRegistry, tmp_path: Path) -> None:
    config = connector_config("rest", client_secret=None, client_secret_file=str(tmp_path / "absent"))
    with pytest.raises(PartnerNotConfigured, match=PROGRAM):
        registry.connector(PROGRAM, config)


def test_production_never_uses_an_inline_secret(settings: Settings) -> None:
    """Even one stored by a load that ran outside production."""
    registry = ConnectorRegistry(
        settings.model_copy(update={"environment": "production"}), environ={}, transport=httpx.AsyncHTTPTransport
    )
    with pytest.raises(PartnerNotConfigured, match=PROGRAM):
        registry.connector(PROGRAM, connector_config("rest"))


def test_an_overridden_base_url_moves_a_token_url_under_it() -> None:
    moved = with_base_url(connector_config("rest"), "http://127.0.0.1:5555/")
    assert moved.base_url == "http://127.0.0.1:5555"
    assert moved.oauth.token_url == "http://127.0.0.1:5555/oauth/token"
    elsewhere = connector_config("rest", token_url="https://login.partner.example/token")
    assert with_base_url(elsewhere, "http://127.0.0.1:5555").oauth.token_url == ("https://login.partner.example/token")


async def test_the_registry_applies_base_url_overrides(settings: Settings) -> None:
    registry = ConnectorRegistry(
        settings, environ={}, base_urls={PROGRAM: "http://127.0.0.1:5555"}, transport=httpx.AsyncHTTPTransport
    )
    connector = registry.connector(PROGRAM, connector_config("rest"))
    assert isinstance(connector, ContractConnector)
    assert isinstance(connector.flavour, RestFlavour)
    assert connector.flavour.base_url == "http://127.0.0.1:5555"
    await registry.aclose()


async def test_a_cookie_a_partner_sets_never_rides_on_a_later_call(registry: ConnectorRegistry) -> None:
    """One client serves every member: a cookie from one member's answer must not reach the next call."""
    connector = registry.connector(PROGRAM, connector_config("rest"))
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{BASE_URL}/oauth/token").mock(return_value=token_answer())
        account = router.get(f"{BASE_URL}/members/alice").mock(
            return_value=httpx.Response(
                200,
                json={"member_ref": "alice", "balance": 0, "tier": "B"},
                headers={"set-cookie": "session=alice-secret; Path=/"},
            )
        )
        await connector.account("alice")
        await connector.account("alice")
    assert account.call_count == 2
    assert "cookie" not in account.calls.last.request.headers


def test_no_partner_signs_callbacks_for_the_coalition_point(registry: ConnectorRegistry) -> None:
    point = cast(Program, SimpleNamespace(id="coalition", kind=ProgramKind.COALITION, connector={"kind": "internal"}))
    with pytest.raises(PartnerNotConfigured, match="no partner calls back"):
        registry.callback_secret(point)
