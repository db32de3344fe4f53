"""What every resolver may use: the application services, the caller, and per-request loaders."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response
from strawberry.dataloader import DataLoader

from exchange.auth.models import PartnerAssertionKey
from exchange.auth.principal import Principal
from exchange.errors import Unauthenticated
from exchange.members.models import LinkedAccount
from exchange.money import Currency
from exchange.pricing.models import Promotion, RateVersion
from exchange.programs.models import Program, ProgramTier
from exchange.services.container import Services

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: A page of a program's linked accounts: (program id, first, after).
AccountsPage = tuple[str, int, str | None]


def _rows(load_many: Callable[[list[K]], Awaitable[Mapping[K, V]]]) -> DataLoader[K, V]:
    """One row per key, all keys of a tick in one call; every key must exist."""

    async def load(keys: list[K]) -> list[V]:
        found = await load_many(keys)
        return [found[key] for key in keys]

    return DataLoader(load_fn=load)


def _lists(load_many: Callable[[list[K]], Awaitable[Mapping[K, list[V]]]]) -> DataLoader[K, list[V]]:
    """A list per key (empty when there is none), all keys of a tick in one call."""

    async def load(keys: list[K]) -> list[list[V]]:
        found = await load_many(keys)
        return [found.get(key, []) for key in keys]

    return DataLoader(load_fn=load)


def _accounts_pages(services: Services) -> DataLoader[AccountsPage, list[LinkedAccount]]:
    """A page of linked accounts per program: one call per distinct page asked for."""

    async def load(keys: list[AccountsPage]) -> list[list[LinkedAccount]]:
        pages: dict[tuple[int, str | None], dict[str, list[LinkedAccount]]] = {}
        for first, after in dict.fromkeys((first, after) for _, first, after in keys):
            program_ids = [program_id for program_id, f, a in keys if (f, a) == (first, after)]
            pages[first, after] = await services.members.accounts_at_programs(program_ids, first=first, after=after)
        return [pages[first, after].get(program_id, []) for program_id, first, after in keys]

    return DataLoader(load_fn=load)


@dataclass
class Loaders:
    """Per-request DataLoaders, so a list of parents costs one query per child kind."""

    programs: DataLoader[str, Program]
    tiers: DataLoader[str, list[ProgramTier]]
    assertion_keys: DataLoader[str, list[PartnerAssertionKey]]
    rate_versions: DataLoader[int, RateVersion]
    incoming_rates: DataLoader[str, list[RateVersion]]
    promotions: DataLoader[str, list[Promotion]]
    linked_accounts: DataLoader[AccountsPage, list[LinkedAccount]]

    @classmethod
    def for_request(cls, services: Services) -> Loaders:
        return cls(
            programs=_rows(services.catalog.programs_by_id),
            tiers=_lists(services.catalog.tiers_by_program),
            assertion_keys=_lists(services.access.assertion_keys),
            rate_versions=_rows(services.pricing.rate_versions),
            incoming_rates=_lists(services.pricing.incoming_rates),
            promotions=_lists(services.pricing.promotions),
            linked_accounts=_accounts_pages(services),
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
        self.loaders = Loaders.for_request(self.services)

    def caller(self) -> Principal:
        """The principal, in a resolver whose rule already required a token."""
        if self.principal is None:
            raise Unauthenticated("an access token is needed")
        return self.principal

    async def currency(self) -> Currency:
        """The settlement currency, which money fields are shown in."""
        return await self.services.catalog.currency()
