"""The auth package's records on both databases: clients, signing keys, assertion keys,
revocations, replay protection and the failure counter behind rate limiting."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from joserfc.jwk import ECKey, OKPKey, RSAKey
from sqlmodel import col, select

from exchange.auth import assertions, clients, keys, ratelimit, revocation
from exchange.auth.errors import AssertionRejected
from exchange.auth.hashing import verify_secret
from exchange.auth.models import ClientAuthFailure, PartnerAssertionKey, RevokedToken, SigningKey
from exchange.auth.scopes import InvalidScope, Role, Scope
from exchange.db.database import Database
from exchange.errors import BadUserInput, ConfigurationError, NotFound
from exchange.programs.declarations import read_partners_directory
from exchange.programs.service import load_partners
from exchange.retention import REMOVED_GRACE, Pruned, Retention
from tests.clocks import MovableClock
from tests.conftest import SAMPLE_PARTNERS

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
#: Two callers' addresses.
A, B = "203.0.113.7", "198.51.100.9"
SECRET = "a test key-encryption secret of some length"


@pytest.fixture
async def loaded(db: Database) -> Database:
    async with db.transaction() as session:
        await load_partners(session, read_partners_directory(SAMPLE_PARTNERS), NOW)
    return db


async def test_a_partner_client_gets_its_roles_scopes_and_only_a_hash_of_its_secret(loaded: Database) -> None:
    async with loaded.transaction() as session:
        issued = await clients.create_client(session, role=Role.PARTNER, program_id="formosa-air", now=NOW)
    async with loaded.transaction() as session:
        stored = await clients.get_client(session, issued.client.client_id)
    assert stored is not None
    assert stored.client_id.startswith("formosa-air-")
    assert clients.client_scopes(stored) == {Scope.PARTNER_READ, Scope.PARTNER_WRITE}
    assert issued.client_secret not in stored.secret_hash
    assert stored.secret_hash.startswith("$argon2id$")
    assert verify_secret(stored.secret_hash, issued.client_secret)
    assert not verify_secret(stored.secret_hash, issued.client_secret + "x")


async def test_client_scopes_may_narrow_the_role_but_not_cross_it(loaded: Database) -> None:
    async with loaded.transaction() as session:
        narrow = await clients.create_client(
            session, role=Role.SETTLEMENT, scopes=frozenset({Scope.SETTLEMENT_READ}), now=NOW
        )
        assert narrow.client.scope == "settlement:read"
        with pytest.raises(InvalidScope, match="the settlement role cannot hold admin:write"):
            await clients.create_client(session, role=Role.SETTLEMENT, scopes=frozenset({Scope.ADMIN_WRITE}), now=NOW)


@pytest.mark.parametrize(
    ("role", "program_id", "error"),
    [
        (Role.PARTNER, None, BadUserInput),
        (Role.ADMIN, "formosa-air", BadUserInput),
        (Role.MEMBER, None, BadUserInput),
        (Role.PARTNER, "no-such-program", NotFound),
    ],
)
async def test_impossible_clients_are_refused(
    loaded: Database, role: Role, program_id: str | None, error: type[Exception]
) -> None:
    async with loaded.transaction() as session:
        with pytest.raises(error):
            await clients.create_client(session, role=role, program_id=program_id, now=NOW)


async def test_a_reset_secret_replaces_the_old_one(loaded: Database) -> None:
    async with loaded.transaction() as session:
        issued = await clients.create_client(session, role=Role.ADMIN, now=NOW, client_id="admin-tool")
        assert issued.client.secret_set_at is None, "the secret it was made with"
        new_secret = await clients.reset_client_secret(session, "admin-tool", NOW + timedelta(minutes=5))
        stored = await clients.get_client(session, "admin-tool")
        assert stored is not None
        assert stored.secret_set_at == NOW + timedelta(minutes=5), "tokens issued before it are refused"
        assert verify_secret(stored.secret_hash, new_secret)
        assert not verify_secret(stored.secret_hash, issued.client_secret)
        with pytest.raises(clients.ClientNotFound):
            await clients.reset_client_secret(session, "nobody", NOW)


async def test_private_signing_keys_are_stored_encrypted_and_need_the_secret(db: Database) -> None:
    async with db.transaction() as session:
        row = await keys.ensure_active_key(session, SECRET, NOW)
    assert row.state == "active" and row.algorithm == "RS256"
    assert '"d"' not in row.encrypted_private_key and "PRIVATE" not in row.encrypted_private_key
    assert set(row.public_jwk) >= {"kty", "n", "e", "kid"} and "d" not in row.public_jwk
    private = keys.decrypt_private_key(row, SECRET)
    assert private.is_private and private.kid == row.kid
    with pytest.raises(ConfigurationError, match="EXCHANGE_KEY_ENCRYPTION_SECRET"):
        keys.decrypt_private_key(row, "another secret")


async def test_a_start_with_another_key_encryption_secret_is_refused_naming_it(db: Database) -> None:
    """Started with a secret that does not open the stored key, a gateway said it was ready and
    then answered every request for a token with a 500."""
    async with db.transaction() as session:
        await keys.ensure_active_key(session, SECRET, NOW)
    async with db.transaction() as session:
        with pytest.raises(ConfigurationError, match="is not the secret it was stored with"):
            await keys.ensure_active_key(session, "another secret", NOW)
        assert (await keys.ensure_active_key(session, SECRET, NOW)).state == "active"


async def test_rotation_retires_the_active_key_and_publishes_it_until_its_tokens_expire(db: Database) -> None:
    lifetime = timedelta(hours=1)
    async with db.transaction() as session:
        first = await keys.ensure_active_key(session, SECRET, NOW)
        assert (await keys.ensure_active_key(session, SECRET, NOW)).kid == first.kid
        rotation = await keys.rotate_signing_key(session, SECRET, NOW + timedelta(minutes=5), lifetime)
    assert rotation.retired is not None and rotation.retired.kid == first.kid
    assert rotation.retired.publish_until == NOW + timedelta(minutes=5) + keys.KEY_REFRESH + lifetime
    assert [key.kid for key in rotation.published] == [rotation.new.kid, first.kid]
    async with db.transaction() as session:
        still = await keys.published_keys(session, rotation.retired.publish_until - timedelta(seconds=1))
        later = await keys.published_keys(session, rotation.retired.publish_until)
        states = {k.kid: k.state for k in (await session.exec(select(SigningKey))).all()}
    assert [k.kid for k in still] == [rotation.new.kid, first.kid]
    assert [k.kid for k in later] == [rotation.new.kid]
    assert states == {first.kid: "retired", rotation.new.kid: "active"}


@pytest.mark.postgres_only
async def test_replicas_starting_together_make_one_active_key(pg_db: Database) -> None:
    async def start() -> str:
        async with pg_db.transaction() as session:
            return (await keys.ensure_active_key(session, SECRET, NOW)).kid

    assert len(set(await asyncio.gather(*(start() for _ in range(6))))) == 1


async def test_the_key_cache_follows_a_rotation_made_elsewhere(db: Database) -> None:
    clock = MovableClock(NOW)
    async with db.transaction() as session:
        first = await keys.ensure_active_key(session, SECRET, NOW)
    cache = keys.SigningKeys(db, SECRET, clock)
    assert (await cache.signing_key()).kid == first.kid
    async with db.transaction() as session:
        rotation = await keys.rotate_signing_key(session, SECRET, NOW, timedelta(hours=1))
    assert await cache.public_key(rotation.new.kid) is not None, "an unknown kid re-reads the keys at once"
    assert (await cache.signing_key()).kid == rotation.new.kid
    assert {k["kid"] for k in (await cache.jwks())["keys"]} == {first.kid, rotation.new.kid}
    assert await cache.public_key("made-up") is None
    async with db.transaction() as session:
        third = await keys.rotate_signing_key(session, SECRET, NOW, timedelta(hours=1))
    assert (await cache.signing_key()).kid == third.new.kid, "signing asks which key is active"


def _pem(key: RSAKey | ECKey | OKPKey) -> str:
    return key.as_pem(private=False).decode()


async def test_partners_register_public_keys_as_jwk_or_pem(loaded: Database) -> None:
    ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
    ed = OKPKey.generate_key("Ed25519")
    async with loaded.transaction() as session:
        first = await assertions.register_assertion_key(
            session, "wallet-pay", json.dumps(ec.as_dict(private=False)), NOW
        )
        second = await assertions.register_assertion_key(session, "wallet-pay", _pem(ed), NOW + timedelta(seconds=1))
    assert first.kid == "ec-1" and second.kid == ed.thumbprint()
    async with loaded.transaction() as session:
        registered = await assertions.assertion_keys(session, ["wallet-pay", "formosa-air"])
        assert [k.kid for k in registered["wallet-pay"]] == [second.kid, "ec-1"]
        assert "formosa-air" not in registered
        await assertions.remove_assertion_key(session, "wallet-pay", "ec-1", NOW)
        with pytest.raises(assertions.AssertionKeyNotFound):
            await assertions.remove_assertion_key(session, "formosa-air", second.kid, NOW)
        assert [k.kid for k in (await assertions.assertion_keys(session, ["wallet-pay"]))["wallet-pay"]] == [second.kid]


async def test_a_removed_assertion_key_answers_its_removals_retry_until_the_grace_then_is_pruned(
    loaded: Database,
) -> None:
    """A removed key stays (a retried removal answers it) for ``REMOVED_GRACE``, then the
    retention job deletes it; a live key, and one removed then registered again, stay."""
    keys = {kid: ECKey.generate_key("P-256", parameters={"kid": kid}) for kid in ("gone", "again", "live")}
    async with loaded.transaction() as session:
        for key in keys.values():
            await assertions.register_assertion_key(session, "wallet-pay", json.dumps(key.as_dict(private=False)), NOW)
        await assertions.remove_assertion_key(session, "wallet-pay", "gone", NOW)
        await assertions.remove_assertion_key(session, "wallet-pay", "again", NOW)

    def retention(after: timedelta) -> Retention:
        return Retention(loaded, MovableClock(NOW + after), timedelta(days=90), batch=1)

    assert await retention(REMOVED_GRACE).run_once() == Pruned()
    async with loaded.transaction() as session:
        retried = await assertions.remove_assertion_key(session, "wallet-pay", "gone", NOW + REMOVED_GRACE)
        assert retried.removed_at == NOW, "the retry answers the first removal"
        again = json.dumps(keys["again"].as_dict(private=False))
        await assertions.register_assertion_key(session, "wallet-pay", again, NOW + REMOVED_GRACE)
    assert await retention(REMOVED_GRACE + timedelta(seconds=1)).run_once() == Pruned(assertion_keys=1)
    async with loaded.transaction() as session:
        kept = (await session.exec(select(PartnerAssertionKey.kid).order_by(col(PartnerAssertionKey.kid)))).all()
        assert list(kept) == ["again", "live"]
        with pytest.raises(assertions.AssertionKeyNotFound):
            await assertions.remove_assertion_key(session, "wallet-pay", "gone", NOW + REMOVED_GRACE)


async def test_an_assertion_jti_is_accepted_once(db: Database) -> None:
    expires = NOW + timedelta(minutes=5)
    async with db.transaction() as session:
        await assertions.record_assertion_use(session, issuer="wallet-pay-1", jti="j1", expires_at=expires, now=NOW)
        await assertions.record_assertion_use(session, issuer="fresh-mart-1", jti="j1", expires_at=expires, now=NOW)
    async with db.transaction() as session:
        with pytest.raises(AssertionRejected, match="replayed"):
            await assertions.record_assertion_use(session, issuer="wallet-pay-1", jti="j1", expires_at=expires, now=NOW)


async def test_revocations_are_remembered_until_the_token_expires(db: Database) -> None:
    async with db.transaction() as session:
        await revocation.revoke(session, jti="t1", client_id="c", expires_at=NOW + timedelta(minutes=1), now=NOW)
        await revocation.revoke(session, jti="t1", client_id="c", expires_at=NOW + timedelta(minutes=1), now=NOW)
        assert await session.get(RevokedToken, "t1") is not None
        assert await session.get(RevokedToken, "t2") is None
    async with db.transaction() as session:
        await revocation.revoke(
            session, jti="t2", client_id="c", expires_at=NOW + timedelta(hours=1), now=NOW + timedelta(minutes=2)
        )
        assert await session.get(RevokedToken, "t1") is None, "expired records are dropped"


async def test_failures_open_a_window_that_blocks_at_the_limit_and_then_closes(db: Database) -> None:
    limit = ratelimit.FailureLimit(failures=3, window=timedelta(seconds=60))
    async with db.transaction() as session:
        for second in range(3):
            assert (
                await ratelimit.standing(session, {"c1"}, A, limit, NOW + timedelta(seconds=second))
            ).retry_after is None
            await ratelimit.record_failure(session, "c1", A, limit, NOW + timedelta(seconds=second))
        assert (await ratelimit.standing(session, {"c1"}, A, limit, NOW + timedelta(seconds=10))).retry_after == 50
        assert (await ratelimit.standing(session, {"c2"}, A, limit, NOW + timedelta(seconds=10))).retry_after is None
        assert await ratelimit.standing(session, {"c1", "c2"}, A, limit, NOW + timedelta(seconds=10)) == (
            ratelimit.Standing(retry_after=50, failures={("c1", A): 3})
        )
        closed = await ratelimit.standing(session, {"c1"}, A, limit, NOW + timedelta(seconds=60))
        assert closed == ratelimit.Standing(retry_after=None, failures={}), "a closed window counts nothing"
        await ratelimit.record_failure(session, "c1", A, limit, NOW + timedelta(seconds=61))
        row = await session.get(ClientAuthFailure, ("c1", A))
        assert row is not None and (row.failures, row.window_started_at) == (1, NOW + timedelta(seconds=61))
        await ratelimit.record_failure(session, "x" * 65, A, limit, NOW)
        assert await session.get(ClientAuthFailure, ("x" * 65, A)) is None
        await ratelimit.record_failures(session, {"named-in-basic", "named-in-form"}, A, limit, NOW)
        for client_id in ("named-in-basic", "named-in-form"):
            named = await session.get(ClientAuthFailure, (client_id, A))
            assert named is not None and named.failures == 1, "a failure counts against every client named"


async def test_failures_from_one_address_do_not_block_another(db: Database) -> None:
    limit = ratelimit.FailureLimit(failures=2, window=timedelta(seconds=60))
    async with db.transaction() as session:
        for _ in range(2):
            await ratelimit.record_failure(session, "c1", A, limit, NOW)
        assert (await ratelimit.standing(session, {"c1"}, A, limit, NOW)).retry_after == 60
        assert (await ratelimit.standing(session, {"c1"}, B, limit, NOW)).retry_after is None
        await ratelimit.record_failure(session, "c1", B, limit, NOW)
        assert (await ratelimit.standing(session, {"c1"}, B, limit, NOW)).retry_after is None, "B's own count is 1"
        await ratelimit.record_failure(session, "c2", B, limit, NOW + timedelta(seconds=61))
        assert await session.get(ClientAuthFailure, ("c1", A)) is None, "closed windows are pruned"


@pytest.mark.postgres_only
async def test_concurrent_failures_are_all_counted(pg_db: Database) -> None:
    limit = ratelimit.FailureLimit(failures=100, window=timedelta(seconds=60))

    async def fail() -> None:
        async with pg_db.transaction() as session:
            await ratelimit.record_failure(session, "c1", A, limit, NOW)

    await asyncio.gather(*(fail() for _ in range(20)))
    async with pg_db.transaction() as session:
        row = await session.get(ClientAuthFailure, ("c1", A))
    assert row is not None and row.failures == 20
