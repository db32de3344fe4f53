"""``exchange partners load``: validate a partners directory, then load it in one unit of work:
the coalition and its programs, then every pair's rate version, the declared promotions and
the declared rewards not yet published."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import Clock, SystemClock
from exchange.db import migrate
from exchange.db.database import Database
from exchange.pricing.promotions import sync_declared_promotions
from exchange.pricing.rates import sync_declared_rates
from exchange.programs.declarations import PartnersDirectory, read_partners_directory
from exchange.programs.service import LoadReport, load_partners
from exchange.rewards.catalog import sync_declared_rewards
from exchange.settings import Settings


@dataclass(frozen=True)
class PartnersLoaded:
    programs: LoadReport
    rate_versions_started: int


async def load_directory(session: AsyncSession, directory: PartnersDirectory, now: datetime) -> PartnersLoaded:
    """Load a validated directory in the caller's unit of work."""
    report = await load_partners(session, directory, now)
    started = await sync_declared_rates(session, directory, now)
    await sync_declared_promotions(session, directory, now)
    await sync_declared_rewards(session, directory, now)
    return PartnersLoaded(programs=report, rate_versions_started=started)


async def load_partners_directory(settings: Settings, clock: Clock | None = None) -> PartnersLoaded:
    """Read and validate ``settings.partners_dir`` whole, then create or update what it declares.

    In production a declaration with an inline connector secret is refused."""
    directory = read_partners_directory(
        settings.partners_dir, allow_inline_secrets=settings.environment != "production"
    )
    await asyncio.to_thread(migrate.ensure_migrated, settings.database_url)
    db = Database.from_url(settings.database_url)
    try:
        async with db.transaction() as session:
            return await load_directory(session, directory, (clock or SystemClock()).now())
    finally:
        await db.dispose()
