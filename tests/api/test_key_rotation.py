"""Rotating the signing key: new tokens use the new key at once on every replica that has
noticed; tokens signed by the old key verify until they expire; then the old key leaves the
JWKS. A key withdrawn early stops its tokens at once, cached ones included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from joserfc import jws
from sqlalchemy import delete, update
from sqlmodel import col

from exchange.app import create_app
from exchange.auth import keys
from exchange.auth.models import SigningKey
from exchange.auth.scopes import Role
from exchange.auth.tokens import LEEWAY_SECONDS, NOT_SIGNED_BY_A_PUBLISHED_KEY
from exchange.serving import free_port, serving
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit
from tests.api.conftest import gateway_on_clock
from tests.clocks import MovableClock

VIEWER = "{ viewer { role } }"


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(datetime.now(UTC))


@pytest.fixture
async def gateway(gateway_settings: Settings, clock: MovableClock) -> AsyncIterator[str]:
    """A gateway whose clock the test moves (it decides token times and key re-reads)."""
    async with gateway_on_clock(gateway_settings, clock) as url:
        yield url


def kid_of(token: str) -> str:
    return str(jws.extract_compact(token.encode()).headers()["kid"])


async def published(http: httpx.AsyncClient) -> set[str]:
    return {key["kid"] for key in (await http.get("/.well-known/jwks.json")).json()["keys"]}


async def test_old_tokens_verify_until_they_expire_and_then_the_old_key_is_withdrawn(
    kit: ExchangeKit, clock: MovableClock
) -> None:
    lifetime = timedelta(seconds=kit.settings.access_token_lifetime)
    staff = await kit.new_client(Role.SETTLEMENT)
    old_token = await kit.client_token(staff)
    old_kid = kid_of(old_token)

    async with kit.db.transaction() as session:
        rotation = await keys.rotate_signing_key(
            session, kit.settings.key_encryption_secret.get_secret_value(), clock.now(), lifetime
        )
    clock.advance(keys.KEY_REFRESH)

    new_token = await kit.client_token(staff)
    assert kid_of(new_token) == rotation.new.kid != old_kid
    assert await published(kit.http) == {old_kid, rotation.new.kid}
    assert (await kit.graphql(VIEWER, old_token)).status_code == 200
    assert (await kit.graphql(VIEWER, new_token)).status_code == 200

    clock.advance(lifetime - keys.KEY_REFRESH + timedelta(seconds=LEEWAY_SECONDS + 1))
    expired = await kit.graphql(VIEWER, old_token)
    assert expired.json()["errors"][0]["message"] == "the token has expired: request a new token"
    assert await published(kit.http) == {old_kid, rotation.new.kid}, "until every old token expired"

    assert rotation.retired is not None and rotation.retired.publish_until is not None
    clock.current = rotation.retired.publish_until + keys.KEY_REFRESH  # this replica re-reads
    assert await published(kit.http) == {rotation.new.kid}
    withdrawn = await kit.graphql(VIEWER, old_token)
    assert (
        withdrawn.json()["errors"][0]["message"]
        == "the token is not signed by a published key of this exchange: request a new token from this exchange"
    )
    assert (await kit.graphql(VIEWER, await kit.client_token(staff))).status_code == 200


@pytest.mark.parametrize("withdrawal", ["publish_until passed", "removed"])
async def test_tokens_of_a_withdrawn_key_are_refused_at_the_next_request_though_verified_before(
    kit: ExchangeKit, clock: MovableClock, withdrawal: str
) -> None:
    staff = await kit.new_client(Role.SETTLEMENT)
    token = await kit.client_token(staff)
    assert (await kit.graphql(VIEWER, token)).status_code == 200, "verified once, so the gateway caches it"
    assert (await kit.graphql(VIEWER, token)).status_code == 200

    lifetime = timedelta(seconds=kit.settings.access_token_lifetime)
    async with kit.db.transaction() as session:
        rotation = await keys.rotate_signing_key(
            session, kit.settings.key_encryption_secret.get_secret_value(), clock.now(), lifetime
        )
        assert rotation.retired is not None and rotation.retired.kid == kid_of(token)
        withdrawn = col(SigningKey.kid) == rotation.retired.kid
        if withdrawal == "removed":
            await session.exec(delete(SigningKey).where(withdrawn))
        else:
            await session.exec(update(SigningKey).where(withdrawn).values(publish_until=clock.now()))

    refused = await kit.graphql(VIEWER, token)
    assert refused.status_code == 401
    assert refused.json()["errors"][0]["message"] == NOT_SIGNED_BY_A_PUBLISHED_KEY
    introspected = await kit.http.post(
        "/oauth/introspect", data={"token": token}, auth=(staff.client.client_id, staff.client_secret)
    )
    assert introspected.json() == {"active": False}

    clock.advance(keys.KEY_REFRESH)  # the gateway now signs with the new key
    assert (await kit.graphql(VIEWER, await kit.client_token(staff))).status_code == 200


async def test_a_compromised_key_is_refused_and_replaced_on_every_replica_at_once(
    kit: ExchangeKit, gateway_settings: Settings, clock: MovableClock
) -> None:
    """A compromised key stayed published (its tokens, forged ones too, verified) for an hour,
    and a replica that had read the keys went on signing with it, and publishing it in the
    JWKS that resource servers cache for five minutes, for up to a minute. A key
    retired in an earlier rotation, kept in the same table under the same secret, is withdrawn
    with it: it stayed published too."""
    staff = await kit.new_client(Role.SETTLEMENT)
    secret = gateway_settings.key_encryption_secret.get_secret_value()
    lifetime = timedelta(seconds=gateway_settings.access_token_lifetime)
    earlier_token = await kit.client_token(staff)
    async with kit.db.transaction() as session:
        await keys.rotate_signing_key(session, secret, clock.now(), lifetime)
    async with (
        serving(create_app(gateway_settings, clock=clock), port=free_port()) as replica,
        httpx.AsyncClient(base_url=replica.url, timeout=30) as other,
    ):
        other_kit = ExchangeKit(settings=gateway_settings, http=other, db=kit.db)
        token = await other_kit.client_token(staff)  # the replica has read the keys, and signs
        for gateway in (kit, other_kit):
            assert (await gateway.graphql(VIEWER, token)).status_code == 200
            assert (await gateway.graphql(VIEWER, earlier_token)).status_code == 200

        async with kit.db.transaction() as session:
            rotation = await keys.rotate_signing_key(session, secret, clock.now(), lifetime, compromised=True)
        assert rotation.retired is not None and rotation.retired.kid == kid_of(token)
        assert [key.kid for key in rotation.published] == [rotation.new.kid]

        for http in (kit.http, other):  # what a resource server caching the JWKS fetches now
            assert await published(http) == {rotation.new.kid}
        for gateway in (kit, other_kit):
            for withdrawn in (token, earlier_token):
                refused = await gateway.graphql(VIEWER, withdrawn)
                assert refused.json()["errors"][0]["message"] == NOT_SIGNED_BY_A_PUBLISHED_KEY
        fresh = await other_kit.client_token(staff)
        assert kid_of(fresh) == rotation.new.kid, "the replica signs with the new key at once"
        for gateway in (kit, other_kit):
            assert (await gateway.graphql(VIEWER, fresh)).status_code == 200
