"""The program catalog, cached in each process for a few seconds.

Programs, their connector settings and tier levels, and the coalition's settings (currency,
fees, tier bonuses) change only when an operator runs ``exchange partners load``; hot paths
(every federated view, every quote, every saga step) read them from here instead of the
database. A change reaches every process within ``ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from exchange.db.database import Database
from exchange.money import Currency
from exchange.programs import service as programs
from exchange.programs.models import CoalitionSettings, Program


@dataclass(frozen=True, slots=True)
class Catalog:
    programs: dict[str, Program]
    tier_levels: dict[str, dict[str, int]]
    """Each program's tiers, by name, with their coalition levels."""
    coalition: CoalitionSettings

    @property
    def currency(self) -> Currency:
        """The settlement currency."""
        return self.coalition.currency

    @property
    def exchange_held(self) -> frozenset[str]:
        """The programs whose points the exchange holds itself: the coalition point, if declared."""
        point = self.coalition.point_program_id
        return frozenset() if point is None else frozenset({point})

    def program(self, program_id: str, *, field: str = "id") -> Program:
        """The program, or ``NOT_FOUND`` naming ``field``."""
        program = self.programs.get(program_id)
        if program is None:
            raise programs.ProgramNotFound(program_id, field=field, known=self.programs)
        return program


class CatalogCache:
    def __init__(self, db: Database, *, ttl: float, timer: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.ttl = ttl
        self._timer = timer
        self._catalog: Catalog | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> Catalog:
        if self._catalog is not None and self._timer() - self._loaded_at < self.ttl:
            return self._catalog
        async with self._lock:
            if self._catalog is None or self._timer() - self._loaded_at >= self.ttl:
                async with self.db.transaction() as session:
                    rows = await programs.list_programs(session)
                    tiers = await programs.tiers_by_program(session, [row.id for row in rows])
                    coalition = await programs.get_coalition(session)
                self._catalog = Catalog(
                    coalition=coalition.settings,
                    programs={row.id: row for row in rows},
                    tier_levels={
                        program_id: {tier.name: tier.level for tier in program_tiers}
                        for program_id, program_tiers in tiers.items()
                    },
                )
                self._loaded_at = self._timer()
        return self._catalog
