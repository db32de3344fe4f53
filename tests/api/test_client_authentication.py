"""How the OAuth endpoints authenticate a client, against a client that tries to cheat: one
method per request, credentials beside an assertion are checked and must name its issuer,
and only failures to authenticate count towards the failure rate limit."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import pytest

from exchange.app import create_app
from exchange.auth import hashing
from exchange.auth.clients import ClientCredentials
from exchange.auth.scopes import Role
from exchange.serving import free_port, serving
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_CREDENTIALS = {"grant_type": "client_credentials"}
VIEWER = "{ viewer { clientId } }"

FORM = {"content-type": "application/x-www-form-urlencoded"}


def basic(text: str) -> dict[str, str]:
    """An ``Authorization: Basic`` header holding exactly ``text`` (user name, maybe no colon)."""
    return {"authorization": "Basic " + base64.b64encode(text.encode()).decode()}


def mixed_attempts(victim: ClientCredentials, secret: str) -> list[tuple[dict[str, str], dict[str, str]]]:
    """(headers, form) pairs that authenticate ``victim`` with ``secret`` one way and put a
    decoy, or the same client, in another."""
    client_id = victim.client.client_id
    return [
        (basic("decoy"), {"client_id": client_id, "client_secret": secret}),
        (basic("decoy:decoy-secret"), {"client_id": client_id, "client_secret": secret}),
        (basic(f"{client_id}:{secret}"), {"client_id": "decoy"}),
        (basic(f"{client_id}:{secret}"), {"client_secret": "decoy-secret"}),
        (basic(f"{client_id}:{secret}"), {"client_id": client_id}),
    ]


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
async def test_a_client_authenticating_two_ways_at_once_is_refused_even_with_its_right_secret(
    kit: ExchangeKit, path: str
) -> None:
    victim = await kit.partner("formosa-air")
    token = await kit.client_token(victim)
    for headers, form in mixed_attempts(victim, victim.client_secret):
        response = await kit.http.post(path, data={**CLIENT_CREDENTIALS, "token": token, **form}, headers=headers)
        assert (response.status_code, response.json()["error"]) == (400, "invalid_request"), (headers, form)
        assert "one way only" in response.json()["error_description"]
    assert (await kit.graphql("{ viewer { role } }", token)).status_code == 200, "nothing was revoked"


@pytest.mark.parametrize("attempt", range(3), ids=["basic-name-decoy", "basic-decoy", "form-decoy"])
async def test_mixed_guesses_count_against_the_client_they_try_until_it_is_locked_out(
    kit: ExchangeKit, gateway_settings: Settings, attempt: int
) -> None:
    victim = await kit.partner("formosa-air")
    limit = gateway_settings.token_failure_limit
    statuses = []
    for guess in range(25):
        headers, form = mixed_attempts(victim, f"guess-{guess}")[attempt]
        response = await kit.http.post("/oauth/token", data={**CLIENT_CREDENTIALS, **form}, headers=headers)
        statuses.append(response.status_code)
    assert statuses == [400] * limit + [429] * (25 - limit)
    locked = await kit.request_token(victim)
    assert locked.status_code == 429, "the right secret waits out the window too"
    form_post = await kit.http.post(
        "/oauth/token",
        data={**CLIENT_CREDENTIALS, "client_id": victim.client.client_id, "client_secret": victim.client_secret},
    )
    assert form_post.status_code == 429


async def test_guesses_sent_all_at_once_are_checked_no_more_often_than_one_by_one(
    kit: ExchangeKit, gateway_settings: Settings
) -> None:
    """Every guess in a burst used to pass the limit's check before any had failed: all of them
    were checked (and cost their Argon2 hashing), however many the limit allows."""
    victim = await kit.partner("formosa-air")
    limit = gateway_settings.token_failure_limit
    burst = [
        kit.http.post("/oauth/token", data=CLIENT_CREDENTIALS, auth=(victim.client.client_id, f"guess-{guess}"))
        for guess in range(3 * limit)
    ]
    statuses = Counter(response.status_code for response in await asyncio.gather(*burst))
    assert statuses == {401: limit, 429: 2 * limit}


async def test_guesses_spread_over_two_replicas_are_checked_no_more_often_than_on_one(
    kit: ExchangeKit, gateway_settings: Settings
) -> None:
    """Each replica held a burst to the limit by itself: two replicas judged twice the limit's
    guesses before the failures counted in the database locked the client out."""
    victim = await kit.partner("formosa-air")
    limit = gateway_settings.token_failure_limit
    async with (
        serving(create_app(gateway_settings), port=free_port()) as replica,
        httpx.AsyncClient(base_url=replica.url, timeout=30) as other,
    ):
        burst = [
            http.post("/oauth/token", data=CLIENT_CREDENTIALS, auth=(victim.client.client_id, f"guess-{guess}"))
            for guess in range(3 * limit)
            for http in (kit.http, other)
        ]
        statuses = Counter(response.status_code for response in await asyncio.gather(*burst))
        assert statuses == {401: limit, 429: 5 * limit}
        assert (
            await other.post(
                "/oauth/token", data=CLIENT_CREDENTIALS, auth=(victim.client.client_id, victim.client_secret)
            )
        ).status_code == 429


async def test_a_client_asking_for_tokens_all_at_once_gets_every_one(
    kit: ExchangeKit, gateway_settings: Settings
) -> None:
    partner = await kit.partner("fresh-mart")
    burst = [kit.request_token(partner) for _ in range(2 * gateway_settings.token_failure_limit)]
    assert {response.status_code for response in await asyncio.gather(*burst)} == {200}


async def test_an_assertion_alone_or_with_its_issuers_right_credentials_gets_a_member_token(kit: ExchangeKit) -> None:
    partner = await kit.partner("wallet-pay")
    alone = await kit.request_member_token(await kit.assertion("wallet-pay", "alice"))
    assert alone.status_code == 200, alone.text
    with_basic = await kit.http.post(
        "/oauth/token",
        data={"grant_type": JWT_BEARER, "assertion": await kit.assertion("wallet-pay", "alice")},
        auth=(partner.client.client_id, partner.client_secret),
    )
    assert with_basic.status_code == 200, with_basic.text
    with_form = await kit.request_member_token(
        await kit.assertion("wallet-pay", "alice"),
        client_id=partner.client.client_id,
        client_secret=partner.client_secret,
    )
    assert with_form.status_code == 200, with_form.text


@pytest.mark.parametrize("how", ["basic", "form", "client_id only"])
async def test_an_assertion_with_wrong_client_credentials_is_invalid_client(kit: ExchangeKit, how: str) -> None:
    partner = await kit.partner("wallet-pay")
    assertion = await kit.assertion("wallet-pay", "bob")
    data = {"grant_type": JWT_BEARER, "assertion": assertion}
    auth = None
    if how == "basic":
        auth = (partner.client.client_id, "not-the-secret")
    elif how == "form":
        data |= {"client_id": partner.client.client_id, "client_secret": "not-the-secret"}
    else:
        data |= {"client_id": partner.client.client_id}
    response = await kit.http.post("/oauth/token", data=data, auth=auth)
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert "access_token" not in response.json()


async def test_another_partners_client_cannot_present_an_assertion(kit: ExchangeKit) -> None:
    other = await kit.partner("fresh-mart")
    assertion = await kit.assertion("wallet-pay", "carol")
    response = await kit.http.post(
        "/oauth/token",
        data={"grant_type": JWT_BEARER, "assertion": assertion},
        auth=(other.client.client_id, other.client_secret),
    )
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    assert "not the client that authenticated" in response.json()["error_description"]
    issuer = await kit.request_member_token(assertion)
    assert issuer.status_code == 200, "the refused request did not use up the assertion"


async def test_refusals_to_an_authenticated_client_do_not_lock_it_out(
    kit: ExchangeKit, gateway_settings: Settings
) -> None:
    caller = await kit.new_client(Role.PARTNER, "harbor-bank")
    auth = (caller.client.client_id, caller.client_secret)
    others_token = await kit.partner_token("fresh-mart")
    member_token = await kit.member_token("wallet-pay", "dave")
    for _ in range(gateway_settings.token_failure_limit + 1):
        for token in (others_token, member_token):
            revoke = await kit.http.post("/oauth/revoke", data={"token": token}, auth=auth)
            assert (revoke.status_code, revoke.json()["error"]) == (400, "invalid_grant"), "not its token (RFC 7009)"
            introspect = await kit.http.post("/oauth/introspect", data={"token": token}, auth=auth)
            assert introspect.json() == {"active": False}
        widened = await kit.request_token(caller, scope="admin:read")
        assert widened.json()["error"] == "invalid_scope"
    assert (await kit.request_token(caller)).status_code == 200
    assert (await kit.graphql("{ viewer { role } }", others_token)).status_code == 200


async def test_wrong_secrets_beside_an_assertion_lock_out_its_issuer(
    kit: ExchangeKit, gateway_settings: Settings
) -> None:
    partner = await kit.partner("tune-stream")
    for _ in range(gateway_settings.token_failure_limit):
        response = await kit.http.post(
            "/oauth/token",
            data={"grant_type": JWT_BEARER, "assertion": await kit.assertion("tune-stream", "alice")},
            auth=(partner.client.client_id, "guess"),
        )
        assert response.status_code == 401
    assert (await kit.request_member_token(await kit.assertion("tune-stream", "alice"))).status_code == 429


async def test_two_authorization_headers_at_the_oauth_endpoints_are_invalid_request(kit: ExchangeKit) -> None:
    """Authlib read the first of two Basic headers (another client's, say) and issued a token."""
    formosa, fresh = await kit.partner("formosa-air"), await kit.partner("fresh-mart")
    basic = [
        "Basic " + base64.b64encode(f"{c.client.client_id}:{c.client_secret}".encode()).decode()
        for c in (formosa, fresh)
    ]
    token = await kit.client_token(formosa)
    for path, form in (
        ("/oauth/token", {"grant_type": "client_credentials"}),
        ("/oauth/introspect", {"token": token}),
        ("/oauth/revoke", {"token": token}),
    ):
        response = await kit.http.post(
            path, data=form, headers=[("authorization", basic[0]), ("authorization", basic[1])]
        )
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"] == "invalid_request"
    assert (await kit.graphql(VIEWER, token)).status_code == 200  # the revocation was refused too


async def test_an_undecodable_basic_header_is_still_a_second_method(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/oauth/token",
        data={**CLIENT_CREDENTIALS, "client_id": "anyone", "client_secret": "anything"},
        headers={"authorization": "Basic !!!"},
    )
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


async def test_a_wrong_secret_or_an_unknown_grant_is_refused_saying_what_to_check(kit: ExchangeKit) -> None:
    partner = await kit.partner("formosa-air")
    wrong = await kit.http.post("/oauth/token", data=CLIENT_CREDENTIALS, auth=(partner.client.client_id, "not-it"))
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    assert wrong.json()["error_description"].startswith("the client did not authenticate: its secret is wrong")
    password = await kit.http.post(
        "/oauth/token", data={"grant_type": "password"}, auth=(partner.client.client_id, partner.client_secret)
    )
    assert (password.status_code, password.json()["error"]) == (400, "unsupported_grant_type")
    assert password.json()["error_description"] == (
        f"grant_type 'password' is not granted here: use client_credentials, or {JWT_BEARER} for a member's token"
    )


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
async def test_an_unknown_client_is_refused_as_a_wrong_secret_is(
    kit: ExchangeKit, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether a client id exists is not told (a client id is not secret, but the list of them
    is nobody's business): the developer reads the same advice either way, and the refusal
    costs the same Argon2 check, so its time does not tell either."""
    partner = await kit.partner("formosa-air")
    form = {**CLIENT_CREDENTIALS, "token": await kit.client_token(partner)}
    checks: list[str] = []
    check = hashing.verify_secret
    monkeypatch.setattr(hashing, "verify_secret", lambda hash, secret: checks.append(secret) or check(hash, secret))
    wrong = await kit.http.post(path, data=form, auth=(partner.client.client_id, "not-it"))
    unknown = await kit.http.post(path, data=form, auth=("no-such-client", "not-it"))
    unknown_in_form = await kit.http.post(path, data={**form, "client_id": "no-such-client", "client_secret": "x"})
    for refused in (wrong, unknown, unknown_in_form):
        assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")
        assert refused.json()["error_description"] == wrong.json()["error_description"]
    assert "client_id" in wrong.json()["error_description"]
    assert len(checks) == 3, checks  # one Argon2 check each: the wrong secret's and two for nobody


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
async def test_a_parameter_sent_twice_or_in_the_url_is_invalid_request(kit: ExchangeKit, path: str) -> None:
    """RFC 6749 §3.2: no parameter is sent twice, and the parameters go in the body. One in
    the address would be ignored (the exchange reads the body), and a proxy reading the address
    would see another request than the exchange. Either way the request is refused as a whole."""
    partner = await kit.partner("wallet-pay")
    auth = (partner.client.client_id, partner.client_secret)
    token = await kit.client_token(partner)
    fair = {"grant_type": "client_credentials", "token": token}
    twice = {
        "grant_type": [*fair.items(), ("grant_type", "client_credentials")],
        "scope": [*fair.items(), ("scope", "partner:read"), ("scope", "partner:write")],
        "client_id, token": [*fair.items(), ("token", token), ("client_id", "a"), ("client_id", "b")],
    }
    for named, form in twice.items():
        response = await kit.http.post(path, content=urlencode(form), headers=FORM, auth=auth)
        assert response.status_code == 400, (form, response.text)
        assert response.json() == {"error": "invalid_request", "error_description": f"{named} is sent more than once"}
    in_address = [("scope", "partner:read"), ("grant_type", "client_credentials"), ("token_type_hint", "access_token")]
    for name, value in in_address:
        # In the address and the body, or in the address alone, where it would be ignored: a
        # scope meant to narrow the token would have given one with every scope of the client.
        for body in ({**fair, name: value}, fair):
            response = await kit.http.post(path, params={name: value}, content=urlencode(body), headers=FORM, auth=auth)
            assert response.status_code == 400, (name, response.text)
            assert response.json() == {
                "error": "invalid_request",
                "error_description": f"{name} is sent in the address: send every parameter once, in the body",
            }
    assert (await kit.http.post(path, content=urlencode(fair), headers=FORM, auth=auth)).status_code == 200


ADDRESS_LIMIT = 5


@pytest.fixture
async def address_limited(
    gateway_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    """A replica whose limit per address is ``ADDRESS_LIMIT`` failures, and the secrets each
    Argon2 check of the process was given (a right secret seen lately is checked without one)."""
    checked: list[str] = []
    verify = hashing.verify_secret

    def counted(secret_hash: str, secret: str) -> bool:
        checked.append(secret)
        return verify(secret_hash, secret)

    monkeypatch.setattr(hashing, "verify_secret", counted)
    settings = gateway_settings.model_copy(update={"token_failure_address_limit": ADDRESS_LIMIT})
    async with (
        serving(create_app(settings), port=free_port()) as replica,
        httpx.AsyncClient(base_url=replica.url, timeout=30) as http,
    ):
        yield http, checked


async def test_a_caller_naming_a_new_client_id_each_time_is_locked_out_at_the_address_limit(
    kit: ExchangeKit, address_limited: tuple[httpx.AsyncClient, list[str]]
) -> None:
    """Counted per client id alone, each new id was a first failure, and each cost an Argon2
    check (an unknown id as much as a wrong secret, so that the time does not tell which ids
    exist): one address made the gateway hash as often as it asked."""
    http, checked = address_limited
    partner = await kit.partner("formosa-air")
    statuses = [
        (await http.post("/oauth/token", data=CLIENT_CREDENTIALS, auth=(f"made-up-{n}", "guess"))).status_code
        for n in range(3 * ADDRESS_LIMIT)
    ]
    assert statuses == [401] * ADDRESS_LIMIT + [429] * (2 * ADDRESS_LIMIT)
    assert len(checked) == ADDRESS_LIMIT
    refused = await http.post("/oauth/token", data=CLIENT_CREDENTIALS, auth=(partner.client.client_id, "guess"))
    assert refused.status_code == 429 and "every client" in refused.json()["error_description"]
    right = await http.post(
        "/oauth/token", data=CLIENT_CREDENTIALS, auth=(partner.client.client_id, partner.client_secret)
    )
    assert right.status_code == 429, "the address waits out the window, right secret or not"
    assert len(checked) == ADDRESS_LIMIT
    assert (await kit.request_token(partner)).status_code == 200, "other addresses' callers are served"


async def test_new_client_ids_sent_all_at_once_are_checked_no_more_often_than_the_address_limit(
    address_limited: tuple[httpx.AsyncClient, list[str]],
) -> None:
    http, checked = address_limited
    burst = [
        http.post("/oauth/token", data=CLIENT_CREDENTIALS, auth=(f"made-up-{n}", "guess"))
        for n in range(4 * ADDRESS_LIMIT)
    ]
    statuses = Counter(response.status_code for response in await asyncio.gather(*burst))
    assert statuses == {401: ADDRESS_LIMIT, 429: 3 * ADDRESS_LIMIT}
    assert len(checked) == ADDRESS_LIMIT


async def test_clients_sharing_an_address_asking_for_tokens_all_at_once_get_every_one(
    kit: ExchangeKit, address_limited: tuple[httpx.AsyncClient, list[str]]
) -> None:
    """Attempts under way count towards the address's limit, as failures to come: more of them
    at once than the limit wait their turn, and none is refused."""
    http, _ = address_limited
    partners = [await kit.partner("formosa-air"), await kit.partner("wallet-pay")]
    burst = [
        http.post("/oauth/token", data=CLIENT_CREDENTIALS, auth=(partner.client.client_id, partner.client_secret))
        for partner in partners
        for _ in range(2 * ADDRESS_LIMIT)
    ]
    assert {response.status_code for response in await asyncio.gather(*burst)} == {200}
