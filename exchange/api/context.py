"""What every resolver may use: the application services, the caller, and per-request loaders."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response
from strawberry.dataloader import DataLoader

from exchange.auth.models import PartnerAssertionKey
from exchange.auth.principal import Principal
from exchange.errors import ExchangeError, Unauthenticated
from exchange.members.models import LinkedAccount
from exchange.money import Currency
from exchange.pricing.models import Promotion, RateVersion
from exchange.programs.models import Program, ProgramTier
from exchange.services.container import Services
from exchange.services.webhooks import Page
from exchange.settlement.models import IssuedStatement
from exchange.webhooks.models import WebhookAttempt
from exchange.webhooks.subscriptions import DeliveryView

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
A = TypeVar("A", bound=Hashable)

#: A page of a program's linked accounts, or of its promotions: ((first, after), program id).
ProgramPage = tuple[tuple[int, str | None], str]
#: A page of a webhook subscription's deliveries: ((tenant, status, first, after), subscription id).
DeliveriesPage = tuple[tuple[str | None, str | None, int, str | None], str]
#: A page of a webhook subscription's delivery log: ((tenant, first, after), subscription id).
AttemptsPage = tuple[tuple[str | None, int, str | None], str]


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


def _each(load_one: Callable[[K], Awaitable[V]]) -> DataLoader[K, V]:
    """One row per key, read one by one (each once a request, however many fields ask)."""

    async def load(keys: list[K]) -> list[V]:
        return [await load_one(key) for key in keys]

    return DataLoader(load_fn=load)


def _pages(
    load_many: Callable[[A, list[str]], Awaitable[Mapping[str, V | ExchangeError]]], empty: Callable[[], V]
) -> DataLoader[tuple[A, str], V]:
    """A page per (arguments, parent id): one call per distinct arguments asked for, for every
    parent asked with them (``empty()`` when a parent has none). A call refused (a ``first`` out
    of range) is the answer of its own keys only, not of the pages asked otherwise; a parent's
    own refusal (a cursor given out for another parent) is its answer alone."""

    async def load(keys: list[tuple[A, str]]) -> list[V | BaseException]:
        answers: dict[A, Mapping[str, V | ExchangeError] | ExchangeError] = {}
        for arguments in dict.fromkeys(arguments for arguments, _ in keys):
            parents = [parent for asked, parent in keys if asked == arguments]
            try:
                answers[arguments] = await load_many(arguments, parents)
            except ExchangeError as refused:
                answers[arguments] = refused
        return [
            answer if isinstance(answer := answers[arguments], ExchangeError) else answer.get(parent, empty())
            for arguments, parent in keys
        ]

    return DataLoader(load_fn=load)


class Loaders:
    """Per-request DataLoaders, so a list of parents costs one query per child kind. Each is
    made when a field first asks for it: most requests (a conversion's) ask for none."""

    def __init__(self, services: Services) -> None:
        self._services = services

    @cached_property
    def programs(self) -> DataLoader[str, Program]:
        return _rows(self._services.catalog.programs_by_id)

    @cached_property
    def tiers(self) -> DataLoader[str, list[ProgramTier]]:
        return _lists(self._services.catalog.tiers_by_program)

    @cached_property
    def assertion_keys(self) -> DataLoader[str, list[PartnerAssertionKey]]:
        return _lists(self._services.access.assertion_keys)

    @cached_property
    def rate_versions(self) -> DataLoader[int, RateVersion]:
        return _rows(self._services.pricing.rate_versions)

    @cached_property
    def incoming_rates(self) -> DataLoader[str, list[RateVersion]]:
        return _lists(self._services.pricing.incoming_rates)

    @cached_property
    def promotions(self) -> DataLoader[ProgramPage, list[Promotion]]:
        pricing = self._services.pricing
        return _pages(
            lambda page, program_ids: pricing.promotions_by_id(program_ids, first=page[0], after=page[1]), list
        )

    @cached_property
    def linked_accounts(self) -> DataLoader[ProgramPage, list[LinkedAccount]]:
        members = self._services.members
        return _pages(
            lambda page, program_ids: members.accounts_at_programs(program_ids, first=page[0], after=page[1]), list
        )

    @cached_property
    def webhook_deliveries(self) -> DataLoader[DeliveriesPage, Page[DeliveryView]]:
        webhooks = self._services.webhooks
        return _pages(
            lambda page, subscription_ids: webhooks.delivery_pages(
                page[0], subscription_ids, status=page[1], first=page[2], after=page[3]
            ),
            Page.empty,
        )

    @cached_property
    def webhook_attempts(self) -> DataLoader[AttemptsPage, Page[WebhookAttempt]]:
        webhooks = self._services.webhooks
        return _pages(
            lambda page, subscription_ids: webhooks.attempt_pages(
                page[0], subscription_ids, first=page[1], after=page[2]
            ),
            Page.empty,
        )

    @cached_property
    def issued_statements(self) -> DataLoader[tuple[str, str], IssuedStatement]:
        """A statement's stored document and signature by (participant, period), read once for
        however many of its fields ask (each is a busy month's whole document)."""
        settlement = self._services.settlement
        return _each(lambda key: settlement.issued_statement(*key))


@dataclass
class Context:
    """``principal`` is the caller behind the request's access token (``None``: no token)."""

    services: Services
    request: Request
    response: Response
    principal: Principal | None = None
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.services)

    def caller(self) -> Principal:
        """The principal, in a resolver whose rule already required a token."""
        if self.principal is None:
            raise Unauthenticated("an access token is needed")
        return self.principal

    async def currency(self) -> Currency:
        """The settlement currency, which money fields are shown in."""
        return await self.services.catalog.currency()
