"""A kind of key's life on its table: created on first start, one active, rotated.

The functions take the kind's table model; what a kind decides for itself (how long a retired
key stays published) its own module passes in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db import dialects
from exchange.keyring.crypto import ALGORITHM, decrypt_private_key, encrypt_private_key, generate_key
from exchange.keyring.models import ACTIVE, RETIRED, StoredKey

K = TypeVar("K", bound=StoredKey)


def new_key(model: type[K], secret: str, now: datetime, **columns: Any) -> K:
    """A new active key of ``model``'s kind, its private half encrypted with ``secret`` (and
    ``columns`` of the kind's own set)."""
    key = generate_key()
    return model(
        kid=str(key.kid),
        algorithm=ALGORITHM,
        public_jwk=key.as_dict(private=False),
        encrypted_private_key=encrypt_private_key(key, secret),
        state=ACTIVE,
        created_at=now,
        **columns,
    )


async def active_key(session: AsyncSession, model: type[K]) -> K | None:
    return (await session.exec(select(model).where(model.state == ACTIVE))).first()


async def ensure_active_key(session: AsyncSession, model: type[K], secret: str, now: datetime) -> K:
    """The active key, created on first start. Replicas starting together create one between
    them: the partial unique index lets the first insert win and the others yield.

    Raises :class:`ConfigurationError` when ``secret`` does not decrypt the key's private half:
    a gateway started with another EXCHANGE_KEY_ENCRYPTION_SECRET than the one the key was
    stored with said it was ready, and then answered every request to sign with a 500."""
    if (key := await active_key(session, model)) is None:
        candidate = new_key(model, secret, now)
        await session.exec(
            dialects.insert(session, model)
            .values(**candidate.model_dump())
            .on_conflict_do_nothing(index_elements=["state"], index_where=col(model.state) == ACTIVE)
        )
        key = await active_key(session, model)
        assert key is not None
    decrypt_private_key(key, secret)
    return key


@dataclass(frozen=True)
class Rotation(Generic[K]):
    new: K
    retired: K | None
    published: Sequence[K]


async def rotate_key(
    session: AsyncSession,
    model: type[K],
    secret: str,
    now: datetime,
    *,
    retire_at: datetime | None = None,
    new_columns: Mapping[str, Any] | None = None,
    **retirement: Any,
) -> tuple[K, K | None]:
    """Retire the active key as of ``retire_at`` (by default ``now``; setting ``retirement``'s
    columns as well) and make a new one active, with ``new_columns``: ``(new, retired)``."""
    retired = await active_key(session, model)
    if retired is not None:
        await session.exec(
            update(model)
            .where(col(model.kid) == retired.kid)
            .values(state=RETIRED, retired_at=retire_at or now, **retirement)
        )
        await session.refresh(retired)
    new = new_key(model, secret, now, **(new_columns or {}))
    session.add(new)
    await session.flush()
    return new, retired
