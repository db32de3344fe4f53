"""The catalog: programs, their tiers, the coalition, and loading partners' declarations."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from exchange.clock import Clock
from exchange.db.database import Database
from exchange.loading import PartnersLoaded, load_directory
from exchange.money import Currency
from exchange.programs import service as programs
from exchange.programs.catalog import CatalogCache
from exchange.programs.declarations import PartnersDirectory
from exchange.programs.models import Program, ProgramTier
from exchange.programs.service import CoalitionView


@dataclass
class CatalogService:
    db: Database
    cache: CatalogCache
    clock: Clock

    async def programs(self) -> Sequence[Program]:
        """Every program, by id."""
        async with self.db.transaction() as session:
            return await programs.list_programs(session)

    async def program(self, program_id: str) -> Program:
        async with self.db.transaction() as session:
            return await programs.get_program(session, program_id)

    async def programs_by_id(self, program_ids: Iterable[str]) -> dict[str, Program]:
        """The programs with these ids (those that exist), in one query."""
        async with self.db.transaction() as session:
            return await programs.programs_by_id(session, program_ids)

    async def tiers_by_program(self, program_ids: Iterable[str]) -> dict[str, list[ProgramTier]]:
        """Each program's tiers, lowest first, in one query."""
        async with self.db.transaction() as session:
            return await programs.tiers_by_program(session, program_ids)

    async def coalition(self) -> CoalitionView:
        async with self.db.transaction() as session:
            return await programs.get_coalition(session)

    async def currency(self) -> Currency:
        """The settlement currency, from the process's catalog cache."""
        return (await self.cache.get()).currency

    async def load_partners(self, directory: PartnersDirectory) -> PartnersLoaded:
        """Create or update what a validated partners directory declares, in one unit of work."""
        async with self.db.transaction() as session:
            return await load_directory(session, directory, self.clock.now())
