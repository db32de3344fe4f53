"""``exchange partners load``: validate a partners directory, then load it in one unit of work."""

from __future__ import annotations

import asyncio

from exchange.clock import Clock, SystemClock
from exchange.db import migrate
from exchange.db.database import Database
from exchange.programs.declarations import read_partners_directory
from exchange.programs.service import LoadReport, load_partners
from exchange.settings import Settings


async def load_partners_directory(settings: Settings, clock: Clock | None = None) -> LoadReport:
    """Read and validate ``settings.partners_dir`` whole, then create or update its programs."""
    directory = read_partners_directory(settings.partners_dir)
    await asyncio.to_thread(migrate.ensure_migrated, settings.database_url)
    db = Database.from_url(settings.database_url)
    try:
        async with db.transaction() as session:
            return await load_partners(session, directory, (clock or SystemClock()).now())
    finally:
        await db.dispose()
