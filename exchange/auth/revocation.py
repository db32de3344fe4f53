"""Revoked access tokens (RFC 7009): remembered by ``jti`` until they would have expired."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.auth.models import RevokedToken
from exchange.db import dialects


async def revoke(session: AsyncSession, *, jti: str, client_id: str, expires_at: datetime, now: datetime) -> None:
    """Refuse the token from now on. Revoking twice is harmless; records of tokens that have
    expired anyway are dropped on the way."""
    await session.exec(delete(RevokedToken).where(col(RevokedToken.expires_at) < now))
    await session.exec(
        dialects.insert(session, RevokedToken)
        .values(jti=jti, client_id=client_id, revoked_at=now, expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=["jti"])
    )
