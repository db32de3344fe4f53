"""What every resolver may use: the database, the settings, the clock, and per-request loaders."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response
from strawberry.dataloader import DataLoader

from exchange.clock import Clock
from exchange.connectors.registry import ConnectorRegistry
from exchange.db.database import Database
from exchange.programs import service as programs
from exchange.programs.models import ProgramTier
from exchange.settings import Settings


@dataclass
class Services:
    """Long-lived parts shared by every request; built once by ``create_app``."""

    settings: Settings
    db: Database
    clock: Clock
    connectors: ConnectorRegistry


def _tiers_loader(db: Database) -> DataLoader[str, list[ProgramTier]]:
    async def load(program_ids: list[str]) -> list[list[ProgramTier]]:
        async with db.transaction() as session:
            tiers = await programs.tiers_by_program(session, program_ids)
        return [tiers.get(program_id, []) for program_id in program_ids]

    return DataLoader(load_fn=load)


@dataclass
class Loaders:
    """Per-request DataLoaders, so a list of parents costs one query per child kind."""

    tiers: DataLoader[str, list[ProgramTier]]

    @classmethod
    def for_request(cls, db: Database) -> Loaders:
        return cls(tiers=_tiers_loader(db))


@dataclass
class Context:
    services: Services
    request: Request
    response: Response
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders.for_request(self.services.db)
