"""A client's new secret ends the tokens issued with its old one: the client's own and the
member tokens it obtained, on every request and at introspection. A secret may be reset
because it leaked, and a leaked secret's tokens are as good as the secret until they expire."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from exchange.auth.clients import REVOKED_CLIENT_KEPT
from exchange.auth.keys import SigningKeys
from exchange.auth.models import RevokedClient
from exchange.auth.scopes import Role
from exchange.auth.tokens import LEEWAY_SECONDS
from exchange.services.access import AccessService
from exchange.settings import MAX_ACCESS_TOKEN_LIFETIME, Settings
from exchange.testing.kit import ExchangeKit
from tests.api.conftest import gateway_on_clock
from tests.clocks import MovableClock

VIEWER = "{ viewer { role } }"
ROTATED = "the secret of the client this token was issued to has been changed since: request a new token"


@pytest.fixture
def clock() -> MovableClock:
    # Early in a second, with room left in it to move within it.
    return MovableClock(datetime.now(UTC).replace(microsecond=200_000))


@pytest.fixture
async def gateway(gateway_settings: Settings, clock: MovableClock) -> AsyncIterator[str]:
    """A gateway whose clock the test moves (it stamps tokens' iat and the rotation)."""
    async with gateway_on_clock(gateway_settings, clock) as url:
        yield url


@pytest.fixture
def access(kit: ExchangeKit, clock: MovableClock) -> AccessService:
    """The service the partner portal's "New secret" calls, on the gateway's clock."""
    secret = kit.settings.key_encryption_secret.get_secret_value()
    return AccessService(
        db=kit.db,
        keys=SigningKeys(kit.db, secret, clock),
        clock=clock,
        key_secret=secret,
        token_lifetime=timedelta(seconds=kit.settings.access_token_lifetime),
    )


async def test_a_new_secret_ends_the_client_and_member_tokens_issued_before_it(
    kit: ExchangeKit, clock: MovableClock, access: AccessService
) -> None:
    partner = await kit.partner("wallet-pay")
    auth = (partner.client.client_id, partner.client_secret)
    client_token = await kit.client_token(partner)
    member_token = await kit.member_token("wallet-pay", "alice")
    before = await kit.graphql(VIEWER, member_token)
    assert before.status_code == 200, before.text

    clock.advance(timedelta(seconds=1))
    rotated = await access.rotate_program_client("wallet-pay", partner.client.client_id)

    for token in (client_token, member_token):
        refused = await kit.graphql(VIEWER, token)
        assert refused.status_code == 401
        assert refused.json()["errors"][0]["message"] == ROTATED
    new_auth = (partner.client.client_id, rotated.client_secret)
    for token in (client_token, member_token):
        introspected = await kit.http.post("/oauth/introspect", data={"token": token}, auth=new_auth)
        assert introspected.json() == {"active": False}
    assert (
        await kit.http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=auth)
    ).status_code == 401

    new_client_token = await kit.client_token(rotated)
    new_member_token = await kit.member_token("wallet-pay", "alice")
    for token in (new_client_token, new_member_token):
        assert (await kit.graphql(VIEWER, token)).status_code == 200
        introspected = await kit.http.post("/oauth/introspect", data={"token": token}, auth=new_auth)
        assert introspected.json()["active"] is True


async def test_a_token_issued_in_the_second_of_the_rotation_but_after_it_is_accepted(
    kit: ExchangeKit, clock: MovableClock, access: AccessService
) -> None:
    partner = await kit.partner("fresh-mart")
    rotated = await access.rotate_program_client("fresh-mart", partner.client.client_id)
    clock.advance(timedelta(milliseconds=500))  # same whole second: iat equals the rotation's
    token = await kit.client_token(rotated)
    assert (await kit.graphql(VIEWER, token)).status_code == 200


async def test_a_token_from_a_replica_whose_clock_is_behind_the_rotation_is_accepted(
    kit: ExchangeKit, clock: MovableClock, access: AccessService
) -> None:
    partner = await kit.partner("happy-card")
    rotated = await access.rotate_program_client("happy-card", partner.client.client_id)
    clock.advance(timedelta(seconds=-3))  # the replica that issues the token runs 3 s behind
    for token in (await kit.client_token(rotated), await kit.member_token("happy-card", "bob")):
        assert (await kit.graphql(VIEWER, token)).status_code == 200


async def test_a_client_deleted_and_made_again_under_its_id_does_not_bring_back_its_tokens(
    kit: ExchangeKit, clock: MovableClock, access: AccessService
) -> None:
    partner = await kit.partner("wallet-pay")
    client_id = partner.client.client_id
    leaked = (await kit.client_token(partner), await kit.member_token("wallet-pay", "alice"))
    clock.advance(timedelta(seconds=1))
    await access.revoke_program_client("wallet-pay", client_id)
    made_again = await access.renew_client(client_id, role=Role.PARTNER, program_id="wallet-pay")
    assert made_again.client.secret_set_at is None, "made anew, not a reset"

    for token in leaked:
        refused = await kit.graphql(VIEWER, token)
        assert refused.status_code == 401
        assert refused.json()["errors"][0]["message"].startswith("the client this token was issued to has been revoked")
        introspected = await kit.http.post(
            "/oauth/introspect", data={"token": token}, auth=(client_id, made_again.client_secret)
        )
        assert introspected.json() == {"active": False}
    for token in (await kit.client_token(made_again), await kit.member_token("wallet-pay", "alice")):
        assert (await kit.graphql(VIEWER, token)).status_code == 200


async def test_a_revoked_client_is_remembered_while_its_tokens_could_live_then_forgotten(
    kit: ExchangeKit, clock: MovableClock, access: AccessService
) -> None:
    """The record of a revocation only matters while a token issued before it may be unexpired;
    kept forever, a busy exchange's table would only grow."""
    assert timedelta(seconds=MAX_ACCESS_TOKEN_LIFETIME + LEEWAY_SECONDS) < REVOKED_CLIENT_KEPT
    first, second, third = [(await kit.partner(program)).client.client_id for program in PROGRAMS]
    await access.revoke_program_client(PROGRAMS[0], first)
    clock.advance(REVOKED_CLIENT_KEPT - timedelta(seconds=1))
    await access.revoke_program_client(PROGRAMS[1], second)
    assert await revoked_client_ids(kit) == {first, second}, "a token issued before the first may still live"
    clock.advance(timedelta(seconds=2))
    await access.revoke_program_client(PROGRAMS[2], third)
    assert await revoked_client_ids(kit) == {second, third}


PROGRAMS = ("wallet-pay", "happy-card", "fresh-mart")


async def revoked_client_ids(kit: ExchangeKit) -> set[str]:
    async with kit.db.transaction() as session:
        return set((await session.exec(select(RevokedClient.client_id))).all())
