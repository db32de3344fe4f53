"""Building connectors from programs' ``[connector]`` declarations, one per partner.

The registry owns one ``httpx.AsyncClient`` per partner (with its token cache and circuit
breaker) and closes them all on shutdown; ``create_app`` wires it into the app's lifespan.
Connectors are built on first use from the program's connector settings (the ``connector``
JSON of the ``program`` row, or a declaration), and built anew if those settings change.

``base_urls`` points programs elsewhere than their declarations say — tests run sandbox
partners on free ports. The token URL moves along when it lies under the declared base URL.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random as random_module
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from exchange.connectors.breaker import CircuitBreaker
from exchange.connectors.client import CookielessClient, PartnerClient
from exchange.connectors.connector import ContractConnector, Flavour, PartnerConnector
from exchange.connectors.errors import PartnerNotConfigured
from exchange.connectors.graphql import GraphQLFlavour
from exchange.connectors.rest import RestFlavour
from exchange.connectors.retry import RetryPolicy
from exchange.connectors.tokens import ClientCredentials, TokenCache
from exchange.connectors.transport import ACCEPT_ENCODING, AiohttpTransport
from exchange.programs.declarations import ConnectorDeclaration
from exchange.programs.models import Program, ProgramKind
from exchange.programs.secrets import SecretUnavailable, client_secret
from exchange.settings import Settings

logger = logging.getLogger("exchange.connectors")

USER_AGENT = "coalition-points-exchange"


def with_base_url(config: ConnectorDeclaration, base_url: str) -> ConnectorDeclaration:
    """``config`` pointed at ``base_url``; a token URL or sign-in page under the old base URL
    moves with it."""
    old = config.base_url.rstrip("/")
    new = base_url.rstrip("/")

    def moved(url: str) -> str:
        return new + url[len(old) :] if url == old or url.startswith(old + "/") else url

    oauth = config.oauth.model_copy(update={"token_url": moved(config.oauth.token_url)})
    sign_in_url = None if config.sign_in_url is None else moved(config.sign_in_url)
    return config.model_copy(update={"base_url": new, "oauth": oauth, "sign_in_url": sign_in_url})


def _flavour(config: ConnectorDeclaration) -> Flavour:
    if config.kind == "graphql":
        return GraphQLFlavour(config.base_url)
    return RestFlavour(config.base_url)


class ConnectorRegistry:
    """One connector per program, built lazily; :meth:`aclose` closes every client."""

    def __init__(
        self,
        settings: Settings,
        *,
        environ: Mapping[str, str],
        base_urls: Mapping[str, str] | None = None,
        timer: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = random_module.random,
        coalition: Callable[[Program], PartnerConnector] | None = None,
        transport: Callable[[], httpx.AsyncBaseTransport] = AiohttpTransport,
    ) -> None:
        """``environ`` resolves ``client_secret_env``; ``timer``, ``sleep`` and ``random``
        drive token expiry, the breaker and retry backoff (tests pass fakes). ``coalition``
        builds the connector of the coalition point (a program of kind ``COALITION``), which
        the exchange serves itself. ``transport`` makes each partner's connection pool
        (unit tests that mock partners with respx pass httpx's own, which respx patches)."""
        self.settings = settings
        self._coalition = coalition
        self._internal: dict[str, PartnerConnector] = {}
        self.base_urls = dict(base_urls or {})
        self._environ = environ
        self._transport = transport
        self._timer = timer
        self._sleep = sleep
        self._random = random
        self._connectors: dict[str, tuple[ConnectorDeclaration, ContractConnector]] = {}
        self._retired: list[ContractConnector] = []
        self._by_settings: dict[str, tuple[dict[str, Any], PartnerConnector]] = {}

    def connector(self, program_id: str, config: ConnectorDeclaration | Mapping[str, Any]) -> PartnerConnector:
        """The connector of ``program_id`` with connector settings ``config``.

        Raises ``PartnerNotConfigured`` when the client secret cannot be had (an unset
        environment variable, a missing or empty file, an inline secret in production).
        """
        declaration = (
            config if isinstance(config, ConnectorDeclaration) else ConnectorDeclaration.model_validate(config)
        )
        if program_id in self.base_urls:
            declaration = with_base_url(declaration, self.base_urls[program_id])
        cached = self._connectors.get(program_id)
        if cached is not None:
            if cached[0] == declaration:
                return cached[1]
            # In-flight calls may still use the old client; it is closed with the others.
            self._retired.append(cached[1])
        connector = self._build(program_id, declaration)
        self._connectors[program_id] = (declaration, connector)
        return connector

    def sign_in_url(self, program: Program) -> str | None:
        """Where the program's partner signs members in for the portal, if it does (the
        coalition point has no partner to sign members in)."""
        if program.kind == ProgramKind.COALITION:
            return None
        declaration = ConnectorDeclaration.model_validate(program.connector)
        if program.id in self.base_urls:
            declaration = with_base_url(declaration, self.base_urls[program.id])
        return declaration.sign_in_url

    def for_program(self, program: Program) -> PartnerConnector:
        """The connector of a loaded program, from its stored connector settings; the
        coalition point's is the exchange's own.

        Every partner call starts here: settings equal to those the connector was last asked
        for (plain JSON, compared as such) skip validating them again."""
        if program.kind == ProgramKind.COALITION:
            return self._coalition_connector(program)
        settings = program.connector
        known = self._by_settings.get(program.id)
        current = self._connectors.get(program.id)
        if known is not None and current is not None and known[1] is current[1] and known[0] == settings:
            return current[1]
        connector = self.connector(program.id, settings)
        self._by_settings[program.id] = (copy.deepcopy(settings), connector)
        return connector

    def callback_secret(self, program: Program) -> str:
        """The key the program's partner signs its callbacks with: the client secret it issued
        the exchange (:mod:`exchange.connectors.callbacks`). The coalition point has no partner,
        so nothing signs callbacks for it."""
        if program.kind == ProgramKind.COALITION:
            raise PartnerNotConfigured(
                f"{program.id} is the exchange's own: no partner calls back for it",
                program_id=program.id,
                call="callback",
            )
        return self._secret(program.id, ConnectorDeclaration.model_validate(program.connector))

    def _coalition_connector(self, program: Program) -> PartnerConnector:
        if self._coalition is None:
            raise PartnerNotConfigured(
                f"this process serves no coalition point ({program.id})", program_id=program.id, call="configure"
            )
        if program.id not in self._internal:
            self._internal[program.id] = self._coalition(program)
        return self._internal[program.id]

    def _secret(self, program_id: str, config: ConnectorDeclaration) -> str:
        """The client secret, read when the connector is built (a secret file: on first use
        after start, and again only when the program's connector settings change)."""
        try:
            if config.oauth.client_secret is not None and self.settings.environment == "production":
                raise SecretUnavailable("client_secret", "an inline secret is refused in production")
            return client_secret(config.oauth, self._environ)
        except SecretUnavailable as unavailable:
            logger.error("program %s: no OAuth client secret: %s", program_id, unavailable)
            raise PartnerNotConfigured(
                f"the exchange has no client secret for program {program_id}",
                program_id=program_id,
                call="configure",
            ) from None

    def _build(self, program_id: str, config: ConnectorDeclaration) -> ContractConnector:
        settings = self.settings
        timeout = float(config.timeout_seconds)
        credentials = ClientCredentials(
            token_url=config.oauth.token_url,
            client_id=config.oauth.client_id,
            client_secret=self._secret(program_id, config),
            scope=config.oauth.scope,
        )
        http = CookielessClient(
            transport=self._transport(),
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers={"user-agent": USER_AGENT, "accept-encoding": ACCEPT_ENCODING},
        )
        client = PartnerClient(
            program_id=program_id,
            http=http,
            tokens=TokenCache(
                http,
                credentials,
                program_id=program_id,
                timeout=timeout,
                refresh_margin=settings.partner_token_refresh_margin_seconds,
                timer=self._timer,
            ),
            breaker=CircuitBreaker(
                failure_threshold=settings.partner_breaker_failure_threshold,
                cooldown=settings.partner_breaker_cooldown_seconds,
                timer=self._timer,
            ),
            retry=RetryPolicy(
                attempts=settings.partner_retry_attempts,
                backoff=settings.partner_retry_backoff_seconds,
                random=self._random,
            ),
            timeout=timeout,
            sleep=self._sleep,
        )
        return ContractConnector(client, _flavour(config), config.base_url)

    async def aclose(self) -> None:
        connectors = [connector for _, connector in self._connectors.values()] + self._retired
        self._connectors.clear()
        self._retired.clear()
        self._by_settings.clear()
        await asyncio.gather(*(connector.aclose() for connector in connectors))
