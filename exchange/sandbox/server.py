"""Running a sandbox partner: start, stop and restart it on its port, in the current loop.

``exchange sandbox serve``, ``exchange demo`` and the tests all run sandboxes through
:class:`SandboxServer`. A restart is what a crash-and-recover looks like from outside: the
listening socket goes away (connections are refused), requests in flight are cut off, issued
tokens are forgotten, and the server comes back on the same port with the state of its
SQLite file. The fault knobs survive restarts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from exchange.clock import Clock, SystemClock
from exchange.errors import ConfigurationError
from exchange.programs.declarations import ProgramDeclaration
from exchange.programs.secrets import SecretUnavailable, client_secret
from exchange.sandbox import late
from exchange.sandbox.app import create_sandbox_app
from exchange.sandbox.auth import TokenIssuer
from exchange.sandbox.faults import FaultInjector
from exchange.sandbox.late import CallbackTarget, LateSettler
from exchange.sandbox.member_sign_in import MemberSignIn
from exchange.sandbox.points import PointsSystem
from exchange.sandbox.storage import Storage
from exchange.serving import RunningServer, start_server, wait_for_stop_signal

DEFAULT_TOKEN_TTL = timedelta(hours=1)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def sandbox_secret(program: ProgramDeclaration, environ: Mapping[str, str]) -> str:
    """The client secret the sandbox expects: the one the exchange will present."""
    try:
        return client_secret(program.connector.oauth, environ)
    except SecretUnavailable as unavailable:
        raise ConfigurationError(f"program {program.id}: no OAuth client secret: {unavailable}") from None


class SandboxServer:
    def __init__(
        self,
        program: ProgramDeclaration,
        *,
        client_secret: str,
        data_dir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        token_ttl: timedelta = DEFAULT_TOKEN_TTL,
        clock: Clock | None = None,
        faults: FaultInjector | None = None,
        log_level: str = "warning",
    ) -> None:
        """``port`` 0 picks a free port at the first start; restarts keep the port."""
        self.program = program
        self.client_secret = client_secret
        self.data_file = data_dir / f"{program.id}.sqlite3"
        self.host = host
        self.token_ttl = token_ttl
        self.clock = clock or SystemClock()
        self.faults = faults or FaultInjector()
        #: The member sign-in page's key and settings, kept across restarts like the fault knobs.
        self.sign_in = MemberSignIn(self.clock)
        #: Where an async sandbox posts its callbacks, kept across restarts too.
        self.callbacks = CallbackTarget()
        self._settler: asyncio.Task[None] | None = None
        self.log_level = log_level
        self._port = port
        self._server: RunningServer | None = None
        self._storage: Storage | None = None
        self._released = asyncio.Event()
        self._lock = asyncio.Lock()
        self._restarts: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        async with self._lock:
            await self._start()

    async def stop(self) -> None:
        async with self._lock:
            await self._stop()
        if self._restarts:
            await asyncio.gather(*self._restarts, return_exceptions=True)

    async def restart(self, down: float = 0.0) -> None:
        """Stop, stay down for ``down`` seconds (connections are refused), start again."""
        async with self._lock:
            await self._stop()
            if down:
                await asyncio.sleep(down)
            await self._start()

    async def restarts_done(self) -> None:
        """Wait until every restart asked for through the admin API has finished."""
        while self._restarts:
            await asyncio.gather(*self._restarts, return_exceptions=True)

    def request_restart(self, down: float) -> None:
        """Restart soon, without waiting: how the admin API restarts the server it runs on."""
        task = asyncio.create_task(self.restart(down))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _start(self) -> None:
        if self._server is not None:
            return
        storage, new = await Storage.open(self.data_file, self.program.id)
        try:
            points = PointsSystem(storage, self.program, self.clock)
            if new:
                await points.seed()
            self._released = asyncio.Event()
            app = create_sandbox_app(
                points=points,
                faults=self.faults,
                issuer=TokenIssuer(
                    client_id=self.program.connector.oauth.client_id,
                    client_secret=self.client_secret,
                    ttl=self.token_ttl,
                    clock=self.clock,
                ),
                sign_in=self.sign_in,
                callbacks=self.callbacks,
                released=self._released,
                restart=self.request_restart,
            )
            self._server = await start_server(
                app,
                host=self.host,
                port=self._port,
                log_level=self.log_level,
                handle_signals=False,
                name=f"sandbox {self.program.id}",
            )
        except BaseException:
            await storage.close()
            raise
        self._storage = storage
        self._port = self._server.port
        if self.program.connector.mode == "async":
            settler = LateSettler(points, self.faults, self.callbacks, secret=self.client_secret, clock=self.clock)
            self._settler = asyncio.create_task(settler.run(), name=f"sandbox {self.program.id} settler")

    async def _stop(self) -> None:
        if self._server is None:
            return
        self._released.set()  # hanging requests end now, not when their clients give up
        await late.stop(self._settler)
        self._settler = None
        server, self._server = self._server, None
        await server.stop()
        if self._storage is not None:
            await self._storage.close()
            self._storage = None


def declared_address(program: ProgramDeclaration) -> tuple[str, int] | None:
    """Host and port of the program's ``base_url`` if it is on this machine's loopback."""
    url = urlsplit(program.connector.base_url)
    if url.hostname not in LOOPBACK_HOSTS:
        return None
    return url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80)


def demo_sandboxes(
    programs: Iterable[ProgramDeclaration], data_dir: Path, environ: Mapping[str, str]
) -> list[SandboxServer]:
    """A sandbox for every program whose connector points at loopback, on that very port."""
    servers = []
    for program in programs:
        address = declared_address(program)
        if address is None:
            continue
        host, port = address
        servers.append(
            SandboxServer(
                program,
                client_secret=sandbox_secret(program, environ),
                data_dir=data_dir,
                host=host,
                port=port,
            )
        )
    return servers


async def serve_until_signalled(servers: list[SandboxServer], ready: Callable[[], None]) -> None:
    """Start ``servers``, call ``ready``, and stop them all on SIGINT or SIGTERM."""
    try:
        for server in servers:
            await server.start()
        ready()
        await wait_for_stop_signal()
    finally:
        await asyncio.gather(*(server.stop() for server in servers))
