"""Sandbox partners on free loopback ports, for tests and benchmarks.

    fleet = SandboxFleet(read_partners_directory(Path("partners")), tmp_path)
    await fleet.start("formosa-air", "tune-stream")   # or fleet.start() for every program
    fleet["formosa-air"].url                          # http://127.0.0.1:<free port>
    await fleet["formosa-air"].admin.set_faults(script=[FaultKind.APPLY_THEN_DROP])
    await fleet["formosa-air"].admin.operations()      # the partner's operation log
    await fleet["formosa-air"].restart()               # same port, same SQLite file
    registry = fleet.registry(settings)                # connectors pointed at the sandboxes
    app = create_app(settings, partner_base_urls=fleet.base_urls)
    await fleet.stop()

More programs than the declarations hold: pass ``ProgramDeclaration``s to ``start`` (e.g.
``declaration.model_copy(update={"id": "p7"})``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from exchange.clock import Clock
from exchange.connectors.registry import ConnectorRegistry, with_base_url
from exchange.programs.declarations import (
    ConnectorDeclaration,
    PartnersDirectory,
    ProgramDeclaration,
)
from exchange.sandbox.admin_client import SandboxAdmin
from exchange.sandbox.server import DEFAULT_TOKEN_TTL, SandboxServer
from exchange.settings import Settings


@dataclass
class RunningSandbox:
    server: SandboxServer
    admin: SandboxAdmin

    @property
    def program(self) -> ProgramDeclaration:
        return self.server.program

    @property
    def url(self) -> str:
        return self.server.url

    async def restart(self, down: float = 0.0) -> None:
        """Stop (refusing connections for ``down`` seconds) and start again; state is kept."""
        await self.server.restart(down)

    async def stop(self) -> None:
        await self.server.stop()

    async def start(self) -> None:
        await self.server.start()


class SandboxFleet:
    def __init__(
        self,
        directory: PartnersDirectory,
        data_dir: Path,
        *,
        clock: Clock | None = None,
        token_ttl: timedelta = DEFAULT_TOKEN_TTL,
    ) -> None:
        self.directory = directory
        self.data_dir = data_dir
        self.clock = clock
        self.token_ttl = token_ttl
        self._declared = {program.id: program for program in directory.programs}
        self._running: dict[str, RunningSandbox] = {}

    async def start(
        self, *programs: str | ProgramDeclaration, modes: Mapping[str, str] | None = None
    ) -> list[RunningSandbox]:
        """Start a sandbox per program (all declared programs if none are named); ``modes``
        runs some in another connector mode (``async``, ``batch``) than declared."""
        declarations = [
            self._declared[program] if isinstance(program, str) else program
            for program in (programs or tuple(self._declared))
        ]
        declarations = [
            program.model_copy(update={"connector": program.connector.model_copy(update={"mode": modes[program.id]})})
            if modes and program.id in modes
            else program
            for program in declarations
        ]
        started = []
        for program in declarations:
            secret = program.connector.oauth.client_secret or f"sandbox-{program.id}"
            if program.connector.oauth.client_secret is None:
                # Declared with client_secret_env or _file: the fleet's connectors use this secret too.
                program = program.model_copy(update={"connector": _with_secret(program.connector, secret)})
            server = SandboxServer(
                program,
                client_secret=secret,
                data_dir=self.data_dir,
                clock=self.clock,
                token_ttl=self.token_ttl,
            )
            await server.start()
            sandbox = RunningSandbox(server=server, admin=SandboxAdmin(server.url))
            self._running[program.id] = sandbox
            started.append(sandbox)
        return started

    def __getitem__(self, program_id: str) -> RunningSandbox:
        return self._running[program_id]

    def __iter__(self) -> Iterator[RunningSandbox]:
        return iter(self._running.values())

    @property
    def base_urls(self) -> dict[str, str]:
        return {program_id: sandbox.url for program_id, sandbox in self._running.items()}

    def connector_config(self, program_id: str, kind: Literal["rest", "graphql"] | None = None) -> ConnectorDeclaration:
        """The program's connector settings, pointed at its sandbox (optionally in another kind)."""
        sandbox = self._running[program_id]
        config = with_base_url(sandbox.program.connector, sandbox.url)
        return config if kind is None else config.model_copy(update={"kind": kind})

    def registry(self, settings: Settings, **options: Any) -> ConnectorRegistry:
        """A connector registry whose programs point at the running sandboxes.

        ``options`` go to :class:`ConnectorRegistry` (``timer``, ``sleep``, ``random``).
        """
        return ConnectorRegistry(settings, environ={}, base_urls=self.base_urls, **options)

    async def stop(self) -> None:
        await asyncio.gather(*(sandbox.stop() for sandbox in self._running.values()))


def _with_secret(connector: ConnectorDeclaration, secret: str) -> ConnectorDeclaration:
    oauth = connector.oauth.model_copy(
        update={"client_secret": secret, "client_secret_env": None, "client_secret_file": None}
    )
    return connector.model_copy(update={"oauth": oauth})
