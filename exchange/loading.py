"""Loading a validated partners directory in one unit of work (``exchange partners load``):
the coalition and its programs (every member gets an account at the coalition point), then
every pair's rate version, the declared promotions and the declared rewards not yet published."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.members.service import link_coalition_accounts
from exchange.pricing.promotions import sync_declared_promotions
from exchange.pricing.rates import sync_declared_rates
from exchange.programs.declarations import PartnersDirectory
from exchange.programs.service import LoadReport, load_partners
from exchange.rewards.catalog import sync_declared_rewards


@dataclass(frozen=True)
class PartnersLoaded:
    programs: LoadReport
    rate_versions_started: int


async def load_directory(session: AsyncSession, directory: PartnersDirectory, now: datetime) -> PartnersLoaded:
    """Load a validated directory in the caller's unit of work."""
    report = await load_partners(session, directory, now)
    await link_coalition_accounts(session, now)
    started = await sync_declared_rates(session, directory, now)
    await sync_declared_promotions(session, directory, now)
    await sync_declared_rewards(session, directory, now)
    return PartnersLoaded(programs=report, rate_versions_started=started)
