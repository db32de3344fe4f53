"""Operator commands on a migrated database: create OAuth clients, rotate signing keys."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.auth import clients, keys
from exchange.auth.clients import ClientCredentials
from exchange.auth.scopes import Role, Scope
from exchange.clock import Clock, SystemClock
from exchange.db import migrate
from exchange.db.database import Database
from exchange.settings import Settings

T = TypeVar("T")


async def _in_one_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    await asyncio.to_thread(migrate.ensure_migrated, settings.database_url)
    db = Database.from_url(settings.database_url)
    try:
        async with db.transaction() as session:
            return await work(session)
    finally:
        await db.dispose()


async def create_client(
    settings: Settings,
    *,
    role: Role,
    program_id: str | None,
    scopes: frozenset[Scope] | None,
    clock: Clock | None = None,
) -> ClientCredentials:
    now = (clock or SystemClock()).now()
    return await _in_one_transaction(
        settings,
        lambda session: clients.create_client(session, role=role, program_id=program_id, scopes=scopes, now=now),
    )


async def rotate_keys(settings: Settings, clock: Clock | None = None) -> keys.Rotation:
    now = (clock or SystemClock()).now()
    return await _in_one_transaction(
        settings,
        lambda session: keys.rotate_signing_key(
            session,
            settings.key_encryption_secret.get_secret_value(),
            now,
            timedelta(seconds=settings.access_token_lifetime),
        ),
    )
