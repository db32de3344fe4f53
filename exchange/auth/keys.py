"""The exchange's token-signing keys: one kind of :mod:`exchange.keyring` key.

Each key is a row of ``signing_key``; one is active. Rotation retires it and publishes it (at
``/.well-known/jwks.json``) until every token it may have signed has expired, about an hour:
only tokens are signed with these keys. Settlement statements, which must verify for years,
have keys of their own (:mod:`exchange.settlement.keys`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, update
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.auth.models import SigningKey
from exchange.keyring import lifecycle
from exchange.keyring.cache import KEY_REFRESH, PublishedKeys
from exchange.keyring.crypto import ALGORITHM, decrypt_private_key
from exchange.keyring.models import ACTIVE

# What token code and its tests use, whether this module or the keyring defines it.
__all__ = [
    "ALGORITHM",
    "KEY_REFRESH",
    "Rotation",
    "SigningKeys",
    "active_key",
    "decrypt_private_key",
    "ensure_active_key",
    "published_keys",
    "rotate_signing_key",
]

Rotation = lifecycle.Rotation[SigningKey]


async def active_key(session: AsyncSession) -> SigningKey | None:
    return await lifecycle.active_key(session, SigningKey)


async def ensure_active_key(session: AsyncSession, secret: str, now: datetime) -> SigningKey:
    """The active token-signing key, created on first start."""
    return await lifecycle.ensure_active_key(session, SigningKey, secret, now)


async def rotate_signing_key(
    session: AsyncSession, secret: str, now: datetime, token_lifetime: timedelta, *, compromised: bool = False
) -> Rotation:
    """Retire the active key and make a new one active.

    The retired key stays published (it verifies) until ``publish_until``: by then every
    token it can have signed has expired, counting the time other processes take to notice
    the rotation. A ``compromised`` key is withdrawn at once instead: whoever holds it could
    sign tokens of their own, so every token it signed is refused from now on, on every
    replica (each checks its key's standing on every request, and signs with the new key from
    its next token, :meth:`PublishedKeys.signing_key`); their clients request new ones. Keys
    retired earlier and still published are withdrawn with it: they sit in the same table,
    sealed with the same secret, so whatever exposed the active key exposed them too (and a
    key found compromised after its rotation can be withdrawn only so).
    """
    if compromised:
        await session.exec(update(SigningKey).where(col(SigningKey.publish_until) > now).values(publish_until=now))
    publish_until = now if compromised else now + KEY_REFRESH + token_lifetime
    new, retired = await lifecycle.rotate_key(session, SigningKey, secret, now, publish_until=publish_until)
    return lifecycle.Rotation(new=new, retired=retired, published=await published_keys(session, now))


def is_published(now: datetime) -> ColumnElement[bool]:
    """Which keys are published at ``now``: the active one and retired ones not yet withdrawn."""
    return or_(col(SigningKey.state) == ACTIVE, col(SigningKey.publish_until) > now)


async def published_keys(session: AsyncSession, now: datetime) -> Sequence[SigningKey]:
    """Keys whose tokens may still be valid: the active one and recently retired ones."""
    statement = select(SigningKey).where(is_published(now)).order_by(col(SigningKey.created_at).desc())
    return (await session.exec(statement)).all()


class SigningKeys(PublishedKeys):
    """This process's copy of the token-signing keys: the JWKS, and the key tokens are
    signed with."""

    rotate_command = "exchange keys rotate"
    model = SigningKey

    async def published(self, session: AsyncSession, now: datetime) -> Sequence[SigningKey]:
        return await published_keys(session, now)
