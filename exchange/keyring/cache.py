"""A process's copy of one kind of published keys, re-read from the database now and then."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from joserfc.jwk import RSAKey
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import Clock
from exchange.db.database import Database
from exchange.errors import ConfigurationError
from exchange.keyring.crypto import decrypt_private_key
from exchange.keyring.models import ACTIVE, StoredKey

#: How stale a process's copy of the keys may get: it picks up a key withdrawn without a
#: rotation (its ``publish_until`` passed) within this time. (Signing, the published document
#: and a kid it does not know ask which key is active first, so they follow a rotation at once.)
KEY_REFRESH = timedelta(seconds=60)


class PublishedKeys(ABC):
    """This process's copy of one kind's published keys and its active private key.

    Verifying with a kid this process holds costs a dictionary lookup, not a query. A kid it
    has not seen (a key another replica made in a rotation) costs one indexed read of which key
    is active, and a re-read of the keys only when that has changed: a made-up kid costs that
    one small read, never a re-read of the keys. A subclass says which keys its kind publishes,
    in which table, and how an operator makes a new one.
    """

    #: The command that makes a new active key of this kind, for the error when there is none.
    rotate_command: str
    #: The kind's table.
    model: type[StoredKey]

    def __init__(self, db: Database, secret: str, clock: Clock) -> None:
        self._db = db
        self._secret = secret
        self._clock = clock
        self._public: dict[str, RSAKey] = {}
        self._jwks: dict[str, Any] = {"keys": []}
        self._rows: Sequence[StoredKey] = ()
        self._private: dict[str, RSAKey] = {}
        self._loaded_at: datetime | None = None
        self._lock = asyncio.Lock()

    @abstractmethod
    async def published(self, session: AsyncSession, now: datetime) -> Sequence[StoredKey]:
        """The keys published at ``now``, the newest first: the active one and the retired
        ones still published."""

    def signs(self, key: StoredKey, now: datetime) -> bool:
        """Whether ``key`` is the one to sign with at ``now``: the active one, unless the kind
        says otherwise (statement keys sign only from a moment after their publication)."""
        return key.state == ACTIVE

    async def refresh(self, session: AsyncSession | None = None) -> None:
        """Re-read the keys, in ``session`` if the caller is inside a unit of work (on SQLite
        its one connection is taken), else in a transaction of its own."""
        async with self._lock:
            now = self._clock.now()
            if session is None:
                async with self._db.transaction() as own:
                    rows = await self.published(own, now)
            else:
                rows = await self.published(session, now)
            self._public = {row.kid: RSAKey.import_key(row.public_jwk) for row in rows}
            self._jwks = {"keys": [dict(row.public_jwk) for row in rows]}
            self._rows = rows
            self._loaded_at = now

    async def _refresh_if_older_than(self, age: timedelta, session: AsyncSession | None) -> None:
        if self._loaded_at is None or self._clock.now() - self._loaded_at >= age:
            await self.refresh(session)

    async def signing_key(self, session: AsyncSession | None = None) -> RSAKey:
        """The private key (with its kid) that signs now (:meth:`signs`). Chosen at each call
        from the keys last read, so that every process switches to a key at the moment it
        was given, not when it happens to re-read the keys.

        Each call also asks the database which key is active (one indexed read of one column)
        and re-reads the keys when that is not the one this process holds: a rotation made
        elsewhere, above all one for a compromised key (withdrawn at once), must not leave
        this process signing with the old key until its next re-read."""
        await self._refresh_if_older_than(KEY_REFRESH, session)
        await self._refresh_if_rotated(session)
        now = self._clock.now()
        signer = next((row for row in self._rows if self.signs(row, now)), None)
        if signer is None:
            raise ConfigurationError(f"there is no active signing key: run `{self.rotate_command}`")
        if signer.kid not in self._private:
            self._private = {signer.kid: decrypt_private_key(signer, self._secret)}
        return self._private[signer.kid]

    async def _refresh_if_rotated(self, session: AsyncSession | None) -> None:
        """Re-read the keys if the active key is not the one this process holds: a rotation
        was made (elsewhere) since it last read them."""
        statement = select(self.model.kid).where(col(self.model.state) == ACTIVE)
        if session is not None:
            active = (await session.exec(statement)).first()
        else:
            async with self._db.autocommit() as own:
                active = (await own.exec(statement)).first()
        if active != next((row.kid for row in self._rows if row.state == ACTIVE), None):
            await self.refresh(session)

    async def public_key(self, kid: str, session: AsyncSession | None = None) -> RSAKey | None:
        """The published key named ``kid``, or ``None`` if there is none."""
        await self._refresh_if_older_than(KEY_REFRESH, session)
        if kid not in self._public:
            await self._refresh_if_rotated(session)
        return self._public.get(kid)

    async def jwks(self) -> dict[str, Any]:
        """The JWK Set document: every published public key. It asks which key is active first,
        as signing does: verifiers cache the document for minutes, so a copy served just after
        a rotation for a compromised key must already lack that key (and hold the new one)."""
        await self._refresh_if_older_than(KEY_REFRESH, None)
        await self._refresh_if_rotated(None)
        return self._jwks
