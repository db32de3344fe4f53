"""Clients and keys: OAuth clients of partners and staff tools, the public keys partners sign
member assertions with, and the exchange's own token-signing keys."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from exchange.auth import assertions, clients, keys
from exchange.auth.clients import ClientCredentials
from exchange.auth.keys import Rotation, SigningKeys
from exchange.auth.models import OAuthClient, PartnerAssertionKey
from exchange.auth.scopes import Role, Scope
from exchange.clock import Clock
from exchange.db.database import Database
from exchange.programs import service as programs
from exchange.services.requests import page_size

#: The most OAuth clients one page of ``clients`` lists.
CLIENTS_PAGE_MAX = 500


@dataclass
class AccessService:
    db: Database
    keys: SigningKeys
    clock: Clock
    key_secret: str
    """Encrypts the token-signing private keys at rest."""
    token_lifetime: timedelta

    async def clients(self, *, first: int, after: str | None) -> Sequence[OAuthClient]:
        """Every client by id, a page of them: ``first`` after the client id ``after``."""
        page = page_size(first, maximum=CLIENTS_PAGE_MAX)
        async with self.db.transaction() as session:
            return await clients.list_clients(session, first=page, after=after)

    async def create_client(
        self,
        *,
        role: Role,
        program_id: str | None,
        scopes: frozenset[Scope] | None = None,
        member_scopes: frozenset[Scope] | None = None,
        client_id: str | None = None,
    ) -> ClientCredentials:
        """A new client and its secret, shown this once (the exchange keeps only its hash)."""
        async with self.db.transaction() as session:
            return await clients.create_client(
                session,
                role=role,
                program_id=program_id,
                scopes=scopes,
                member_scopes=member_scopes,
                now=self.clock.now(),
                client_id=client_id,
            )

    async def program_clients(self, program_id: str) -> Sequence[OAuthClient]:
        """The clients of ``program_id``'s partner, by id."""
        async with self.db.transaction() as session:
            return await clients.list_clients(session, program_id=program_id)

    async def rotate_program_client(self, program_id: str, client_id: str) -> ClientCredentials:
        """A fresh secret for one of ``program_id``'s own clients: the old one stops working,
        and so do the tokens issued with it (the member tokens the client obtained too)."""
        async with self.db.transaction() as session:
            client = await clients.program_client(session, program_id, client_id)
            secret = await clients.reset_client_secret(session, client.client_id, self.clock.now())
            return ClientCredentials(client, secret)

    async def revoke_program_client(self, program_id: str, client_id: str) -> OAuthClient:
        """Delete one of ``program_id``'s own clients: no new token for it, and its tokens end."""
        async with self.db.transaction() as session:
            client = await clients.program_client(session, program_id, client_id)
            await clients.delete_client(session, client, self.clock.now())
            return client

    async def renew_client(self, client_id: str, *, role: Role, program_id: str | None) -> ClientCredentials:
        """The client ``client_id`` with a fresh secret, created with ``role`` if it is new; an
        existing client's old secret, and the tokens issued with it, stop working."""
        async with self.db.transaction() as session:
            existing = await clients.get_client(session, client_id)
            if existing is None:
                return await clients.create_client(
                    session, role=role, program_id=program_id, now=self.clock.now(), client_id=client_id
                )
            return ClientCredentials(existing, await clients.reset_client_secret(session, client_id, self.clock.now()))

    async def register_assertion_key(self, program_id: str, public_key: str) -> PartnerAssertionKey:
        """Add (or, for a kid already there, replace) a key the program's partner signs member
        assertions with."""
        async with self.db.transaction() as session:
            await programs.get_program(session, program_id, field="programId", lock=True)
            return await assertions.register_assertion_key(session, program_id, public_key, self.clock.now())

    async def remove_assertion_key(self, program_id: str, kid: str) -> PartnerAssertionKey:
        """Stop accepting assertions signed with ``kid``; the key removed."""
        async with self.db.transaction() as session:
            return await assertions.remove_assertion_key(session, program_id, kid, self.clock.now())

    async def assertion_keys(self, program_ids: Iterable[str]) -> dict[str, list[PartnerAssertionKey]]:
        """Each program's assertion keys, newest first, in one query."""
        async with self.db.transaction() as session:
            return await assertions.assertion_keys(session, program_ids)

    async def ensure_signing_key(self) -> None:
        """An active token-signing key exists (made on the first start), and this process knows it."""
        async with self.db.transaction() as session:
            await keys.ensure_active_key(session, self.key_secret, self.clock.now())
        await self.keys.refresh()

    async def rotate_signing_key(self, *, compromised: bool = False) -> Rotation:
        """Make a new signing key active; the old one keeps verifying until its tokens expire,
        or, if it is ``compromised``, is withdrawn at once (:func:`keys.rotate_signing_key`)."""
        async with self.db.transaction() as session:
            return await keys.rotate_signing_key(
                session, self.key_secret, self.clock.now(), self.token_lifetime, compromised=compromised
            )
