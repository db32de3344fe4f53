"""Client-credential tokens: fetched over the partner's client, cached, refetched once on 401."""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from exchange.connectors.connector import Call, PartnerConnector
from exchange.connectors.errors import (
    PartnerAuthenticationFailed,
    PartnerTokenUnavailable,
    PartnerUnavailable,
    PartnerUnreachable,
)
from exchange.connectors.registry import ConnectorRegistry
from exchange.connectors.transport import MAX_ANSWER_BYTES
from tests.unit.connectors.conftest import (
    PROGRAM,
    FakeTimer,
    MockPartner,
    connector_config,
    operation,
    token_answer,
)
from tests.unit.connectors.test_failures import NeverEndingBody, gzipped


def _account() -> dict[str, object]:
    return {"member_ref": "alice", "balance": 5, "tier": "Base"}


async def test_the_token_request_is_client_credentials_with_basic_auth(
    partner: MockPartner, connector: PartnerConnector, token_route: respx.Route
) -> None:
    partner.route(Call.ACCOUNT).mock(return_value=partner.answer(_account()))
    await connector.account("alice")
    request = token_route.calls.last.request
    assert parse_qs(request.content.decode()) == {
        "grant_type": ["client_credentials"],
        "scope": ["points"],
    }
    scheme, _, encoded = request.headers["authorization"].partition(" ")
    assert (scheme, base64.b64decode(encoded).decode()) == ("Basic", "exchange:s3cret")


async def test_the_token_is_reused_until_shortly_before_it_expires(
    partner: MockPartner, connector: PartnerConnector, token_route: respx.Route, timer: FakeTimer
) -> None:
    token_route.mock(side_effect=[token_answer("t1", 100), token_answer("t2", 100)])
    route = partner.route(Call.ACCOUNT).mock(return_value=partner.answer(_account()))
    await connector.account("alice")
    timer.advance(69)  # expires at 100, refreshed 30 s (the margin) before
    await connector.account("alice")
    assert token_route.call_count == 1
    timer.advance(1)
    await connector.account("alice")
    assert token_route.call_count == 2
    assert route.calls.last.request.headers["authorization"] == "Bearer t2"


async def test_a_short_lived_token_is_kept_for_half_its_life(
    partner: MockPartner, connector: PartnerConnector, token_route: respx.Route, timer: FakeTimer
) -> None:
    token_route.mock(side_effect=[token_answer("t1", 10), token_answer("t2", 10)])
    partner.route(Call.ACCOUNT).mock(return_value=partner.answer(_account()))
    await connector.account("alice")
    timer.advance(4.9)
    await connector.account("alice")
    assert token_route.call_count == 1
    timer.advance(0.1)
    await connector.account("alice")
    assert token_route.call_count == 2


async def test_a_token_without_expiry_is_kept_until_refused(
    partner: MockPartner, connector: PartnerConnector, token_route: respx.Route, timer: FakeTimer
) -> None:
    token_route.mock(return_value=token_answer("forever", None))
    partner.route(Call.ACCOUNT).mock(return_value=partner.answer(_account()))
    await connector.account("alice")
    timer.advance(10**6)
    await connector.account("alice")
    assert token_route.call_count == 1


async def test_concurrent_calls_fetch_one_token(
    partner: MockPartner, connector: PartnerConnector, token_route: respx.Route
) -> None:
    partner.route(Call.ACCOUNT).mock(return_value=partner.answer(_account()))
    await asyncio.gather(*(connector.account("alice") for _ in range(5)))
    assert token_route.call_count == 1


async def test_a_401_fetches_a_new_token_once_and_resends(
    partner: MockPartner, connector: PartnerConnector, token_route: respx.Route
) -> None:
    token_route.mock(side_effect=[token_answer("old"), token_answer("new")])
    route = partner.route(Call.DEBIT).mock(side_effect=[httpx.Response(401), partner.answer(operation())])
    assert (await connector.debit("op-1", "alice", 100)).points == 100
    assert [call.request.headers["authorization"] for call in route.calls] == [
        "Bearer old",
        "Bearer new",
    ]


async def test_a_second_401_is_an_authentication_failure_and_is_not_retried(
    partner: MockPartner, connector: PartnerConnector, token_route: respx.Route
) -> None:
    route = partner.route(Call.DEBIT).mock(return_value=httpx.Response(401))
    with pytest.raises(PartnerAuthenticationFailed) as raised:
        await connector.debit("op-1", "alice", 100)
    assert isinstance(raised.value, PartnerUnavailable)
    assert (route.call_count, token_route.call_count) == (2, 2)


async def test_a_403_is_an_authentication_failure(partner: MockPartner, connector: PartnerConnector) -> None:
    partner.route(Call.ACCOUNT).mock(return_value=httpx.Response(403))
    with pytest.raises(PartnerAuthenticationFailed):
        await connector.account("alice")


@pytest.mark.parametrize("status", [400, 401])
async def test_refused_credentials_fail_without_calling_the_partner(
    partner: MockPartner, connector: PartnerConnector, token_route: respx.Route, status: int
) -> None:
    token_route.mock(return_value=httpx.Response(status, json={"error": "invalid_client"}))
    route = partner.route(Call.DEBIT)
    with pytest.raises(PartnerAuthenticationFailed):
        await connector.debit("op-1", "alice", 100)
    assert not route.called
    assert token_route.call_count == 1


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(503),
        httpx.Response(200, text="not json"),
        httpx.Response(200, json={"token_type": "Bearer"}),
        httpx.Response(200, json={"access_token": "t", "token_type": "mac"}),
        httpx.Response(200, json={"access_token": "t", "token_type": "Bearer", "expires_in": 1.5}),
        # A token no Authorization header can carry (RFC 6749 A.12: printable ASCII only).
        httpx.Response(200, json={"access_token": "t\u20ac", "token_type": "Bearer"}),
        httpx.Response(200, json={"access_token": "t\r\nX-Injected: 1", "token_type": "Bearer"}),
        httpx.Response(200, json={"access_token": "t\u0000", "token_type": "Bearer"}),
    ],
)
async def test_a_failing_token_endpoint_means_the_call_was_not_sent(
    partner: MockPartner, connector: PartnerConnector, token_route: respx.Route, answer: httpx.Response
) -> None:
    token_route.mock(return_value=answer)
    route = partner.route(Call.DEBIT)
    with pytest.raises(PartnerTokenUnavailable) as raised:
        await connector.debit("op-1", "alice", 100)
    assert isinstance(raised.value, PartnerUnavailable)
    assert not route.called
    assert token_route.call_count == 3  # retried: nothing was sent


async def test_an_unreachable_token_endpoint_is_unreachable(
    partner: MockPartner, connector: PartnerConnector, token_route: respx.Route
) -> None:
    token_route.mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(PartnerUnreachable):
        await connector.account("alice")


async def test_a_token_endpoint_that_hangs_times_out_as_unavailable(
    registry: ConnectorRegistry, kind: str, token_route: respx.Route, partner: MockPartner
) -> None:
    token_route.mock(return_value=httpx.Response(200, stream=NeverEndingBody()))
    connector = registry.connector(PROGRAM, connector_config(kind, timeout="0.05"))
    with pytest.raises(PartnerTokenUnavailable):
        await connector.account("alice")


async def test_a_token_answer_is_read_decoded_up_to_the_limit(
    partner: MockPartner, connector: PartnerConnector, token_route: respx.Route
) -> None:
    """The token endpoint is a partner's too: a small gzip inflating past ``MAX_ANSWER_BYTES``
    (a token padded with spaces, valid JSON) is not inflated further, as for the contract's
    answers; nothing is sent with no token."""
    token_route.mock(return_value=gzipped(token_answer(), padding=8 * MAX_ANSWER_BYTES))
    route = partner.route(Call.DEBIT)
    with pytest.raises(PartnerTokenUnavailable, match=f"answer larger than {MAX_ANSWER_BYTES} bytes"):
        await connector.debit("op-1", "alice", 100)
    assert not route.called
