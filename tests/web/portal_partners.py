"""Sandbox partners for the web tests (portal and partner console): served from a thread of their own, with their member
sign-in pages set up for the test gateway as an operator would set them up (the partner's
client at the exchange, its assertion key registered, the portal's return URL at the partner)."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import update
from sqlmodel import col

from exchange.auth.models import OAuthClient
from exchange.auth.scopes import Role, Scope, scope_text
from exchange.db.database import Database
from exchange.programs.declarations import read_partners_directory
from exchange.services.container import open_services
from exchange.services.portal import RETURN_PATH
from exchange.settings import Settings
from exchange.testing.sandboxes import SandboxFleet
from tests.conftest import SAMPLE_PARTNERS
from tests.web.conftest import run_async

T = TypeVar("T")
PIN = "2468"
_refs = itertools.count(1)


class LoopThread:
    """An event loop in a thread: the sandboxes run on it, tests hand it coroutines."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sandboxes", daemon=True)
        self.thread.start()

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Partners:
    fleet: SandboxFleet
    loop: LoopThread
    #: Each program's client at the exchange that its sandbox signs members in as.
    sign_in_clients: dict[str, str] = field(default_factory=dict)

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run(work)

    def new_member(self, program_id: str, *, balance: int = 0, tier: str | None = None) -> str:
        """A new member at ``program_id``'s sandbox, whose PIN is :data:`PIN`; their member id."""
        member_ref = f"m{next(_refs)}-{program_id}"
        self.run(self.fleet[program_id].admin.add_member(member_ref, balance=balance, tier=tier, verification=PIN))
        return member_ref

    def add_member(
        self, program_id: str, member_ref: str, *, balance: int = 0, tier: str | None = None, name: str | None = None
    ) -> str:
        self.run(
            self.fleet[program_id].admin.add_member(member_ref, balance=balance, tier=tier, verification=PIN, name=name)
        )
        return member_ref

    def balance(self, program_id: str, member_ref: str) -> int:
        return self.run(self.fleet[program_id].admin.balance(member_ref))


@contextmanager
def running_partners(data_dir: Path, programs: tuple[str, ...]) -> Iterator[Partners]:
    loop = LoopThread()
    fleet = SandboxFleet(read_partners_directory(SAMPLE_PARTNERS), data_dir)
    try:
        loop.run(fleet.start(*programs))
        yield Partners(fleet, loop)
    finally:
        loop.run(fleet.stop())
        loop.close()


def set_up_member_sign_in(partners: Partners, settings: Settings) -> None:
    """Each sandbox signs members in for the gateway: a partner client at the exchange, the
    sandbox's key registered there, and the portal's return URL registered at the sandbox."""
    return_url = settings.issuer_url + RETURN_PATH
    for sandbox in partners.fleet:
        public_key = partners.run(sandbox.admin.assertion_key())

        async def register(program_id: str = sandbox.program.id, key: dict[str, Any] = public_key) -> str:
            async with open_services(settings) as services:
                credentials = await services.access.create_client(role=Role.PARTNER, program_id=program_id)
                await services.access.register_assertion_key(program_id, json.dumps(key))
            return credentials.client.client_id

        client_id = run_async(register)
        partners.run(sandbox.admin.set_member_sign_in(client_id=client_id, return_urls=[return_url]))
        partners.sign_in_clients[sandbox.program.id] = client_id


@contextmanager
def signing_in_as_a_client_with(
    partners: Partners, settings: Settings, program_id: str, member_scopes: frozenset[Scope]
) -> Iterator[str]:
    """``program_id``'s sandbox signs members in as a new client of its program (whose id the
    block gets) whose member tokens may carry only ``member_scopes``, until the block ends."""

    async def create() -> str:
        async with open_services(settings) as services:
            credentials = await services.access.create_client(
                role=Role.PARTNER, program_id=program_id, member_scopes=member_scopes
            )
        return credentials.client.client_id

    admin = partners.fleet[program_id].admin
    return_urls = [settings.issuer_url + RETURN_PATH]
    client_id = run_async(create)
    partners.run(admin.set_member_sign_in(client_id=client_id, return_urls=return_urls))
    try:
        yield client_id
    finally:
        partners.run(admin.set_member_sign_in(client_id=partners.sign_in_clients[program_id], return_urls=return_urls))


def set_member_scopes(settings: Settings, client_id: str, scopes: frozenset[Scope]) -> None:
    """The client's member scopes, narrowed or widened as its operator would."""

    async def run() -> None:
        db = Database.from_url(settings.database_url)
        try:
            async with db.transaction() as session:
                await session.exec(
                    update(OAuthClient)  # type: ignore[call-overload]
                    .where(col(OAuthClient.client_id) == client_id)
                    .values(member_scope=scope_text(scopes))
                )
        finally:
            await db.dispose()

    run_async(run)


def end_client(settings: Settings, program_id: str, client_id: str, how: str) -> None:
    """``program_id``'s client deleted (``revoke``) or given a new secret (``reset``), as its
    staff would in the partner console."""

    async def run() -> None:
        async with open_services(settings) as services:
            if how == "revoke":
                await services.access.revoke_program_client(program_id, client_id)
            else:
                await services.access.rotate_program_client(program_id, client_id)

    run_async(run)
