"""The exchange's token-signing keys: stored encrypted, rotated, cached in each process.

RS256 (RSA 2048): RFC 9068 makes RS256 the one algorithm every JWT access-token verifier
must support, so partners' stock JOSE libraries verify our tokens and statements; and
verifying, which happens on every request, costs about 40 µs against ES256's 100 µs. (Signing
is dearer, but happens once per token.)

Each key is a row of ``signing_key``: the public JWK in clear, the private JWK as a JWE
(A256KW + A256GCM) under a key derived from ``EXCHANGE_KEY_ENCRYPTION_SECRET``, so the
database alone never yields a signing key. One key is active; rotation retires it and
publishes it until every token it may have signed has expired.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import OctKey, RSAKey
from sqlalchemy import or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.auth.models import SigningKey
from exchange.clock import Clock
from exchange.db import dialects
from exchange.db.database import Database
from exchange.errors import ConfigurationError

ALGORITHM = "RS256"
RSA_KEY_BITS = 2048
ACTIVE = "active"
RETIRED = "retired"

#: How stale a process's copy of the keys may get: it picks up a rotation within this time,
#: so a retired key may still sign for this long after its rotation.
KEY_REFRESH = timedelta(seconds=60)
#: A token naming an unknown kid makes a process re-read the keys at most this often.
UNKNOWN_KID_REFRESH = timedelta(seconds=5)

_KEY_ENCRYPTION = {"alg": "A256KW", "enc": "A256GCM"}


def key_encryption_key(secret: str) -> OctKey:
    """The AES key that wraps private keys, derived from the configured secret."""
    derived = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"coalition-exchange signing keys").derive(
        secret.encode()
    )
    return OctKey.import_key(derived)


def encrypt_with_secret(plaintext: str, secret: str, kid: str) -> str:
    """A compact JWE of ``plaintext`` under the key derived from ``secret``. ``kid`` names what
    it holds; the header is authenticated, so :func:`decrypt_with_secret` can insist on it."""
    return jwe.encrypt_compact({**_KEY_ENCRYPTION, "kid": kid}, plaintext, key_encryption_key(secret))


def decrypt_with_secret(token: str, secret: str, kid: str) -> str:
    """The plaintext of :func:`encrypt_with_secret`'s ``token``, which must name ``kid``.

    Raises :class:`ConfigurationError` when ``secret`` is not the one it was encrypted with
    (or the token was made for something else).
    """
    try:
        decrypted = jwe.decrypt_compact(token, key_encryption_key(secret))
    except (JoseError, ValueError):
        decrypted = None
    if decrypted is None or decrypted.plaintext is None or decrypted.protected.get("kid") != kid:
        raise ConfigurationError(
            f"{kid!r} cannot be decrypted: EXCHANGE_KEY_ENCRYPTION_SECRET is not the secret it was stored with"
        )
    return decrypted.plaintext.decode()


def encrypt_private_key(key: RSAKey, secret: str) -> str:
    return encrypt_with_secret(json.dumps(key.as_dict(private=True)), secret, str(key.kid))


def decrypt_private_key(row: SigningKey, secret: str) -> RSAKey:
    return RSAKey.import_key(json.loads(decrypt_with_secret(row.encrypted_private_key, secret, row.kid)))


def new_signing_key(secret: str, now: datetime) -> SigningKey:
    key = RSAKey.generate_key(RSA_KEY_BITS, parameters={"alg": ALGORITHM, "use": "sig"}, auto_kid=True)
    return SigningKey(
        kid=str(key.kid),
        algorithm=ALGORITHM,
        public_jwk=key.as_dict(private=False),
        encrypted_private_key=encrypt_private_key(key, secret),
        state=ACTIVE,
        created_at=now,
    )


async def active_key(session: AsyncSession) -> SigningKey | None:
    return (await session.exec(select(SigningKey).where(SigningKey.state == ACTIVE))).first()


async def ensure_active_key(session: AsyncSession, secret: str, now: datetime) -> SigningKey:
    """The active key, created on first start. Replicas starting together create one between
    them: the partial unique index lets the first insert win and the others yield."""
    if (key := await active_key(session)) is not None:
        return key
    candidate = new_signing_key(secret, now)
    await session.exec(
        dialects.insert(session, SigningKey)
        .values(**candidate.model_dump())
        .on_conflict_do_nothing(index_elements=["state"], index_where=col(SigningKey.state) == ACTIVE)
    )  # type: ignore[call-overload]
    key = await active_key(session)
    assert key is not None
    return key


@dataclass(frozen=True)
class Rotation:
    new: SigningKey
    retired: SigningKey | None
    published: Sequence[SigningKey]


async def rotate_signing_key(session: AsyncSession, secret: str, now: datetime, token_lifetime: timedelta) -> Rotation:
    """Retire the active key and make a new one active.

    The retired key stays published (it verifies) until ``publish_until``: by then every
    token it can have signed has expired, counting the time other processes take to notice
    the rotation.
    """
    retired = await active_key(session)
    if retired is not None:
        await session.exec(
            update(SigningKey)
            .where(col(SigningKey.kid) == retired.kid)
            .values(state=RETIRED, retired_at=now, publish_until=now + KEY_REFRESH + token_lifetime)
        )  # type: ignore[call-overload]
        await session.refresh(retired)
    new = new_signing_key(secret, now)
    session.add(new)
    await session.flush()
    return Rotation(new=new, retired=retired, published=await published_keys(session, now))


async def published_keys(session: AsyncSession, now: datetime) -> Sequence[SigningKey]:
    """Keys whose tokens may still be valid: the active one and recently retired ones."""
    statement = (
        select(SigningKey)
        .where(or_(col(SigningKey.state) == ACTIVE, col(SigningKey.publish_until) > now))
        .order_by(col(SigningKey.created_at).desc())
    )
    return (await session.exec(statement)).all()


class SigningKeys:
    """This process's copy of the published keys, re-read from the database now and then.

    Verifying a token costs a dictionary lookup, not a query. A kid this process has not seen
    (a key another replica made after a rotation) triggers an early re-read, rate-limited so
    that made-up kids cannot turn into a query per request.
    """

    def __init__(self, db: Database, secret: str, clock: Clock) -> None:
        self._db = db
        self._secret = secret
        self._clock = clock
        self._public: dict[str, RSAKey] = {}
        self._jwks: dict[str, Any] = {"keys": []}
        self._active_kid: str | None = None
        self._private: dict[str, RSAKey] = {}
        self._loaded_at: datetime | None = None
        self._lock = asyncio.Lock()

    async def refresh(self, session: AsyncSession | None = None) -> None:
        """Re-read the keys, in ``session`` if the caller is inside a unit of work (on SQLite
        its one connection is taken), else in a transaction of its own."""
        async with self._lock:
            now = self._clock.now()
            if session is None:
                async with self._db.transaction() as own:
                    rows = await published_keys(own, now)
            else:
                rows = await published_keys(session, now)
            self._public = {row.kid: RSAKey.import_key(row.public_jwk) for row in rows}
            self._jwks = {"keys": [dict(row.public_jwk) for row in rows]}
            active = next((row for row in rows if row.state == ACTIVE), None)
            self._active_kid = active.kid if active else None
            if active is not None and active.kid not in self._private:
                self._private = {active.kid: decrypt_private_key(active, self._secret)}
            self._loaded_at = now

    async def _refresh_if_older_than(self, age: timedelta, session: AsyncSession | None) -> None:
        if self._loaded_at is None or self._clock.now() - self._loaded_at >= age:
            await self.refresh(session)

    async def signing_key(self, session: AsyncSession | None = None) -> RSAKey:
        """The active private key (with its kid)."""
        await self._refresh_if_older_than(KEY_REFRESH, session)
        if self._active_kid is None:
            raise ConfigurationError("there is no active signing key: run `exchange keys rotate`")
        return self._private[self._active_kid]

    async def public_key(self, kid: str, session: AsyncSession | None = None) -> RSAKey | None:
        """The published key named ``kid``, or ``None`` if there is none."""
        await self._refresh_if_older_than(KEY_REFRESH, session)
        if kid not in self._public:
            await self._refresh_if_older_than(UNKNOWN_KID_REFRESH, session)
        return self._public.get(kid)

    async def jwks(self) -> dict[str, Any]:
        """The JWK Set document: every published public key."""
        await self._refresh_if_older_than(KEY_REFRESH, None)
        return self._jwks
