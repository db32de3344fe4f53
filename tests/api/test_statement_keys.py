"""Statements outlive key rotation. A statement's JWS that a partner downloaded verifies with the
documents the gateway publishes over HTTP alone after the token keys and the statement keys
were rotated, and for as long as statements are kept; after that its key is withdrawn. A
statement key never signs anything the gateway accepts as an access token."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError
from joserfc.jwk import KeySet
from sqlalchemy import delete
from sqlmodel import col

from exchange.auth import keys
from exchange.auth.scopes import Role, Scope
from exchange.auth.tokens import TOKEN_TYPE, access_token_claims
from exchange.keyring.cache import KEY_REFRESH
from exchange.settings import Settings
from exchange.settlement.issued import sign
from exchange.settlement.keys import PUBLICATION_LEAD, STATEMENT_KEYS_MAX_AGE_SECONDS, StatementKeys
from exchange.settlement.models import IssuedStatement
from exchange.settlement.statements import JWS_TYPE, canonical_json
from exchange.testing.kit import ExchangeKit
from tests.api.conftest import gateway_on_clock, post_last_month
from tests.api.test_settlement_api import STATEMENT, close
from tests.clocks import MovableClock

STATEMENT_KEYS = "/.well-known/statement-keys.json"
TOKEN_KEYS = "/.well-known/jwks.json"
PARTNERS_GUIDE = Path(__file__).parents[2] / "partners" / "SETTLEMENT.md"


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(datetime.now(UTC))


@pytest.fixture
async def gateway(gateway_settings: Settings, clock: MovableClock) -> AsyncIterator[str]:
    """A gateway whose clock the test moves (it decides key re-reads and which keys are published)."""
    async with gateway_on_clock(gateway_settings, clock) as url:
        yield url


@pytest.fixture
def statement_keys(kit: ExchangeKit, clock: MovableClock) -> StatementKeys:
    """The statement keys as an operator's command sees them, on the gateway's database."""
    return StatementKeys.for_settings(kit.settings, db=kit.db, clock=clock)


async def fetched(kit: ExchangeKit, path: str) -> KeySet:
    response = await kit.http.get(path)
    assert response.status_code == 200 and response.headers["content-type"] == "application/jwk-set+json"
    return KeySet.import_key_set(response.json())


def kids(key_set: KeySet) -> set[str]:
    return {str(key.kid) for key in key_set.keys}


def verified(statement: dict[str, Any], key_set: KeySet) -> str:
    """The statement's signed JSON, if its JWS verifies with ``key_set`` alone."""
    signed = jws.deserialize_compact(statement["jws"], key_set, algorithms=["RS256"])
    assert signed.protected == {"alg": "RS256", "kid": statement["keyId"], "typ": JWS_TYPE, "cty": "json"}
    return signed.payload.decode()


async def test_a_statement_downloaded_before_both_rotations_verifies_for_as_long_as_statements_are_kept(
    kit: ExchangeKit, clock: MovableClock, statement_keys: StatementKeys
) -> None:
    period = await post_last_month(kit)
    await close(kit, period)
    partner = await kit.partner_token("wallet-pay")
    downloaded = (await kit.data(STATEMENT, partner, partner="wallet-pay", period=period))["statement"]
    first_kid = downloaded["keyId"]

    secret = kit.settings.key_encryption_secret.get_secret_value()
    lifetime = timedelta(seconds=kit.settings.access_token_lifetime)
    async with kit.db.transaction() as session:
        token_rotation = await keys.rotate_signing_key(session, secret, clock.now(), lifetime)
    clock.advance(KEY_REFRESH)
    after_tokens = (await kit.data(STATEMENT, partner, partner="wallet-pay", period=period))["statement"]
    assert after_tokens["keyId"] == first_kid, "rotating the token keys leaves statements' keys alone"

    async with kit.db.transaction() as session:
        rotation = await statement_keys.rotate(session)
    clock.advance(PUBLICATION_LEAD)
    refetched = (await kit.data(STATEMENT, partner, partner="wallet-pay", period=period))["statement"]
    assert rotation.retired is not None and rotation.retired.kid == first_kid
    assert refetched == downloaded, "the statement as issued at the closing: same bytes, same signature"

    published = await fetched(kit, STATEMENT_KEYS)
    assert kids(published) == {first_kid, rotation.new.kid}
    assert verified(downloaded, published) == verified(refetched, published) == downloaded["json"]
    assert token_rotation.retired is not None
    old_token_kid = token_rotation.retired.kid
    token_kids = kids(await fetched(kit, TOKEN_KEYS))
    assert token_kids == {token_rotation.new.kid, old_token_kid}
    assert not token_kids & kids(published), "the two kinds of key are published apart"

    until = statement_keys.published_until(rotation.retired)
    assert until is not None and until.year == clock.now().year + kit.settings.statement_retention_years
    clock.current = until - timedelta(days=1)
    years_later = await fetched(kit, STATEMENT_KEYS)
    assert verified(downloaded, years_later) == downloaded["json"]
    assert old_token_kid not in kids(await fetched(kit, TOKEN_KEYS)), "the old token key left long ago"

    clock.current = until + KEY_REFRESH  # past the retention, and the gateway has re-read its keys
    withdrawn = await fetched(kit, STATEMENT_KEYS)
    assert kids(withdrawn) == {rotation.new.kid}
    with pytest.raises(InvalidKeyIdError):  # kept no longer: past the retention period
        jws.deserialize_compact(downloaded["jws"], withdrawn, algorithms=["RS256"])


@pytest.mark.parametrize("typ", [TOKEN_TYPE, JWS_TYPE])
async def test_an_access_token_signed_with_a_statement_key_is_refused(
    kit: ExchangeKit, statement_keys: StatementKeys, typ: str
) -> None:
    """Well-formed token claims signed with the active statement key, whatever the ``typ``."""
    key = await statement_keys.signing_key()
    claims = access_token_claims(
        issuer=kit.settings.issuer_url,
        audience=kit.settings.audience,
        client_id="admin-forged",
        role=Role.ADMIN,
        scopes=frozenset({Scope.ADMIN_READ}),
        subject="admin-forged",
        now=datetime.now(UTC),
        lifetime=timedelta(minutes=5),
    )
    forged = jwt.encode({"alg": "RS256", "typ": typ, "kid": key.kid}, claims, key, algorithms=["RS256"])
    response = await kit.graphql("{ viewer { role } }", forged)
    assert response.status_code == 401
    reason = response.json()["errors"][0]["message"]
    assert reason == (
        "the token is not signed by a published key of this exchange: request a new token from this exchange"
        if typ == TOKEN_TYPE
        else f"not an access token (typ must be {TOKEN_TYPE})"
    )
    assert str(key.kid) in kids(await fetched(kit, STATEMENT_KEYS))


def documented_verification(issuer: str, partner: str, period: str) -> str:
    """The Python partners/SETTLEMENT.md gives a finance team to verify a statement, as they copy
    it: only the exchange's address, the partner and the period are theirs."""
    guide = PARTNERS_GUIDE.read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(.*?)```", guide[guide.index("### Verifying a statement") :], re.DOTALL)
    assert snippet is not None, "the guide shows how to verify a statement"
    code = snippet.group(1)
    for example, theirs in (
        ('ISSUER = "https://exchange.example"', f"ISSUER = {issuer!r}"),
        ('PARTNER, PERIOD = "fresh-mart", "2026-11"', f"PARTNER, PERIOD = {partner!r}, {period!r}"),
    ):
        assert code.count(example) == 1, example
        code = code.replace(example, theirs)
    return code


async def verify_as_documented(downloads: Path, issuer: str, partner: str, period: str, signed: str, text: str) -> None:
    """Run the guide's verification on the statement saved as ``signed`` (its JWS) and ``text``
    (its JSON), under the names the partner console gives its downloads."""
    (downloads / f"statement-{partner}-{period}.jws").write_text(signed, encoding="utf-8")
    (downloads / f"statement-{partner}-{period}.json").write_bytes(text.encode())
    # The guide's code is synchronous (httpx.get); the gateway serves on this event loop.
    await asyncio.to_thread(exec, documented_verification(issuer, partner, period), {})


def with_figure_changed(document: str) -> str:
    """The statement's JSON, canonical as the exchange writes it, with its closing position one cent off."""
    changed = json.loads(document)
    changed["closingPosition"] = str(Decimal(changed["closingPosition"]) + Decimal("0.01"))
    return json.dumps(changed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_the_guides_verification_accepts_a_partners_own_statement_after_a_rotation_and_refuses_any_other(
    kit: ExchangeKit,
    clock: MovableClock,
    statement_keys: StatementKeys,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # where the finance team saved its downloads
    issuer = kit.settings.issuer_url
    period = await post_last_month(kit)
    await close(kit, period)
    partner = await kit.partner_token("wallet-pay")
    downloaded = (await kit.data(STATEMENT, partner, partner="wallet-pay", period=period))["statement"]
    await verify_as_documented(tmp_path, issuer, "wallet-pay", period, downloaded["jws"], downloaded["json"])

    # A month of many lines: past the 128,000 bytes joserfc verifies by default.
    long_month = json.loads(downloaded["json"])
    long_month["lines"] = long_month["lines"] * (200_000 // len(canonical_json(long_month["lines"])) + 1)
    long_text = canonical_json(long_month)
    assert len(long_text.encode()) > 200_000
    async with kit.db.transaction() as session:
        await statement_keys.refresh(session)
    long_signed = sign(long_text.encode(), await statement_keys.signing_key())
    await verify_as_documented(tmp_path, issuer, "wallet-pay", period, long_signed, long_text)

    async with kit.db.transaction() as session:
        rotation = await statement_keys.rotate(session)
    clock.advance(PUBLICATION_LEAD)
    refetched = (await kit.data(STATEMENT, partner, partner="wallet-pay", period=period))["statement"]
    assert refetched == downloaded and rotation.retired is not None and refetched["keyId"] == rotation.retired.kid
    # Signed at the closing with the key retired since: it verifies with the keys published now.
    await verify_as_documented(tmp_path, issuer, "wallet-pay", period, refetched["jws"], refetched["json"])

    header, _, signature = downloaded["jws"].split(".")
    forged = f"{header}.{_b64(with_figure_changed(downloaded['json']).encode())}.{signature}"
    with pytest.raises(BadSignatureError):
        await verify_as_documented(tmp_path, issuer, "wallet-pay", period, forged, downloaded["json"])
    with pytest.raises(AssertionError, match="not the statement the exchange signed"):
        await verify_as_documented(
            tmp_path, issuer, "wallet-pay", period, downloaded["jws"], with_figure_changed(downloaded["json"])
        )
    fresh_mart = await kit.partner_token("fresh-mart")
    another = (await kit.data(STATEMENT, fresh_mart, partner="fresh-mart", period=period))["statement"]
    with pytest.raises(AssertionError):  # signed by the exchange, but fresh-mart's
        await verify_as_documented(tmp_path, issuer, "wallet-pay", period, another["jws"], another["json"])


async def forget_issued(kit: ExchangeKit, period: str) -> None:
    """As for a period closed before statements were stored: its next download issues its
    statements, signed with the key that signs at that moment."""
    async with kit.db.transaction() as session:
        await session.exec(delete(IssuedStatement).where(col(IssuedStatement.period) == period))  # type: ignore[call-overload]


async def test_a_statement_signed_right_after_a_rotation_verifies_with_the_keys_a_verifier_cached_before_it(
    kit: ExchangeKit, clock: MovableClock, statement_keys: StatementKeys
) -> None:
    """The new key is published at once and signs only once every copy cached before its
    publication has expired; until then the old key signs."""
    period = await post_last_month(kit)
    await close(kit, period)
    partner = await kit.partner_token("wallet-pay")
    cached = await fetched(kit, STATEMENT_KEYS)  # a verifier's copy, kept for the max-age
    async with kit.db.transaction() as session:
        rotation = await statement_keys.rotate(session)
    assert rotation.retired is not None and kids(cached) == {rotation.retired.kid}

    for moment in (timedelta(0), KEY_REFRESH, timedelta(seconds=STATEMENT_KEYS_MAX_AGE_SECONDS)):
        clock.current = rotation.new.created_at + moment
        await forget_issued(kit, period)
        fresh = (await kit.data(STATEMENT, partner, partner="wallet-pay", period=period))["statement"]
        assert fresh["keyId"] == rotation.retired.kid
        assert verified(fresh, cached) == fresh["json"]
    clock.current = rotation.new.created_at + KEY_REFRESH  # every gateway has read the new key by now
    recached = await fetched(kit, STATEMENT_KEYS)
    assert kids(recached) == {rotation.new.kid, rotation.retired.kid}

    # Once every copy cached before the publication has expired, the new key signs.
    clock.current = rotation.new.created_at + PUBLICATION_LEAD
    await forget_issued(kit, period)
    after = (await kit.data(STATEMENT, partner, partner="wallet-pay", period=period))["statement"]
    assert after["keyId"] == rotation.new.kid
    assert verified(after, recached) == after["json"]


async def test_a_rotation_for_a_compromised_key_signs_with_the_new_key_at_once(
    kit: ExchangeKit, clock: MovableClock, statement_keys: StatementKeys
) -> None:
    """No lead time when the old key must stop: verifiers holding a cached copy fetch it again
    when a statement names a kid their copy lacks. The gateway, which read the keys before the
    rotation, signs with the new key at once too (it went on with the compromised one for up
    to a minute)."""
    period = await post_last_month(kit)
    await close(kit, period)
    partner = await kit.partner_token("wallet-pay")
    cached = await fetched(kit, STATEMENT_KEYS)
    signed_once = STATEMENT.replace("keyId", "keyId resignedAt")
    before = (await kit.data(signed_once, partner, partner="wallet-pay", period=period))["statement"]
    assert before["resignedAt"] is None
    async with kit.db.transaction() as session:
        first = await statement_keys.rotate(session)  # an ordinary rotation, still in its lead
        rotation = await statement_keys.rotate(session, compromised=True)
    assert (await statement_keys.signing_key()).kid == rotation.new.kid  # this process: at once
    # The statement issued at the closing is signed again by the new key, its document unchanged.
    assert rotation.resigned >= 1
    fresh = (await kit.data(signed_once, partner, partner="wallet-pay", period=period))["statement"]
    assert (fresh["keyId"], fresh["json"]) == (rotation.new.kid, before["json"])
    assert datetime.fromisoformat(fresh["resignedAt"]) == clock.now()
    with pytest.raises(InvalidKeyIdError):
        jws.deserialize_compact(fresh["jws"], cached, algorithms=["RS256"])
    refetched = await fetched(kit, STATEMENT_KEYS)
    assert verified(fresh, refetched) == fresh["json"]
    # Every key published before the rotation is withdrawn: a statement forged with one must not verify.
    assert first.retired is not None and set(rotation.withdrawn) == {first.new.kid, first.retired.kid}
    assert kids(refetched) == {rotation.new.kid}
