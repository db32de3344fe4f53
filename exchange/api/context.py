"""What every resolver may use: the database, the settings, the clock, the caller, and
per-request loaders."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response
from strawberry.dataloader import DataLoader

from exchange.auth import assertions
from exchange.auth.models import PartnerAssertionKey
from exchange.auth.principal import Principal
from exchange.clock import Clock
from exchange.connectors.registry import ConnectorRegistry
from exchange.conversions.quoting import Quoting
from exchange.conversions.saga import ConversionSaga
from exchange.db.database import Database
from exchange.errors import Unauthenticated
from exchange.federation.accounts import Federation
from exchange.members.consents import DebitConsents
from exchange.pricing import rates
from exchange.pricing.models import RateVersion
from exchange.programs import service as programs
from exchange.programs.catalog import CatalogCache
from exchange.programs.models import Program, ProgramTier
from exchange.rewards.redemption import RedemptionSaga
from exchange.settings import Settings
from exchange.settlement.service import SettlementService
from exchange.tiers.matching import StatusMatching


@dataclass
class Services:
    """Long-lived parts shared by every request; built once by ``create_app``."""

    settings: Settings
    db: Database
    clock: Clock
    connectors: ConnectorRegistry
    quoting: Quoting
    saga: ConversionSaga
    federation: Federation
    catalog: CatalogCache
    matching: StatusMatching
    redemptions: RedemptionSaga
    settlement: SettlementService
    consents: DebitConsents


def _tiers_loader(db: Database) -> DataLoader[str, list[ProgramTier]]:
    async def load(program_ids: list[str]) -> list[list[ProgramTier]]:
        async with db.transaction() as session:
            tiers = await programs.tiers_by_program(session, program_ids)
        return [tiers.get(program_id, []) for program_id in program_ids]

    return DataLoader(load_fn=load)


def _programs_loader(db: Database) -> DataLoader[str, Program]:
    async def load(program_ids: list[str]) -> list[Program]:
        async with db.transaction() as session:
            rows = await programs.programs_by_id(session, program_ids)
        return [rows[program_id] for program_id in program_ids]

    return DataLoader(load_fn=load)


def _assertion_keys_loader(db: Database) -> DataLoader[str, list[PartnerAssertionKey]]:
    async def load(program_ids: list[str]) -> list[list[PartnerAssertionKey]]:
        async with db.transaction() as session:
            keys = await assertions.assertion_keys(session, program_ids)
        return [keys.get(program_id, []) for program_id in program_ids]

    return DataLoader(load_fn=load)


def _rate_versions_loader(db: Database) -> DataLoader[int, RateVersion]:
    async def load(version_ids: list[int]) -> list[RateVersion]:
        async with db.transaction() as session:
            rows = await rates.versions_by_id(session, version_ids)
        return [rows[version_id] for version_id in version_ids]

    return DataLoader(load_fn=load)


@dataclass
class Loaders:
    """Per-request DataLoaders, so a list of parents costs one query per child kind."""

    tiers: DataLoader[str, list[ProgramTier]]
    programs: DataLoader[str, Program]
    assertion_keys: DataLoader[str, list[PartnerAssertionKey]]
    rate_versions: DataLoader[int, RateVersion]

    @classmethod
    def for_request(cls, db: Database) -> Loaders:
        return cls(
            tiers=_tiers_loader(db),
            programs=_programs_loader(db),
            assertion_keys=_assertion_keys_loader(db),
            rate_versions=_rate_versions_loader(db),
        )


@dataclass
class Context:
    """``principal`` is the caller behind the request's access token (``None``: no token)."""

    services: Services
    request: Request
    response: Response
    principal: Principal | None = None
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders.for_request(self.services.db)

    def caller(self) -> Principal:
        """The principal, in a resolver whose rule already required a token."""
        if self.principal is None:
            raise Unauthenticated("an access token is needed")
        return self.principal
