"""OAuth clients: partners and staff tools, each with a role, scopes and a hashed secret."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.auth.hashing import hash_secret, new_client_secret
from exchange.auth.models import CLIENT_ID_LENGTH, OAuthClient, RevokedClient
from exchange.auth.scopes import (
    CLIENT_ROLES,
    Role,
    Scope,
    member_scopes_for_client,
    parse_scopes,
    scope_text,
    scopes_for_role,
)
from exchange.db import dialects
from exchange.errors import BadUserInput, NotFound
from exchange.programs import service as programs
from exchange.settings import MAX_ACCESS_TOKEN_LIFETIME
from exchange.text import text_problem

#: How long a revoked client's id is remembered: as long as a token can live, and an hour more
#: for the verifier's leeway and replicas' clocks a little apart.
REVOKED_CLIENT_KEPT = timedelta(seconds=MAX_ACCESS_TOKEN_LIFETIME, hours=1)


class ClientNotFound(NotFound):
    def __init__(self, client_id: str) -> None:
        super().__init__(f"no OAuth client has id {client_id!r}", field="client_id")


@dataclass(frozen=True)
class ClientCredentials:
    """A client and its secret, which exists in clear only here: show it once."""

    client: OAuthClient
    client_secret: str


def client_role(client: OAuthClient) -> Role:
    return Role(client.role)


def client_scopes(client: OAuthClient) -> frozenset[Scope]:
    return parse_scopes(client.scope)


def client_member_scopes(client: OAuthClient) -> frozenset[Scope]:
    """The most the member tokens ``client`` obtains may carry."""
    return parse_scopes(client.member_scope)


async def create_client(
    session: AsyncSession,
    *,
    role: Role,
    now: datetime,
    program_id: str | None = None,
    scopes: frozenset[Scope] | None = None,
    member_scopes: frozenset[Scope] | None = None,
    client_id: str | None = None,
) -> ClientCredentials:
    """A new client with a fresh secret. A partner's client names the program it runs.

    ``scopes`` default to everything the role may hold and may only narrow it;
    ``member_scopes`` (a partner's client's) default to what its scopes allow
    (:func:`~exchange.auth.scopes.member_scopes_for_client`).
    """
    if role not in CLIENT_ROLES:
        raise BadUserInput(
            f"a client's role is one of {', '.join(CLIENT_ROLES)}; members get tokens through a partner's assertion",
            field="role",
        )
    if (role is Role.PARTNER) != (program_id is not None):
        raise BadUserInput("a partner's client, and only it, names its program", field="partner")
    if program_id is not None:
        await programs.get_program(session, program_id, field="partner")
    granted = scopes_for_role(role, scopes)
    for_members = member_scopes_for_client(role, granted, member_scopes)
    secret = new_client_secret()
    client = OAuthClient(
        client_id=client_id or f"{program_id or role.value}-{secrets.token_hex(4)}",
        secret_hash=hash_secret(secret),
        role=role.value,
        program_id=program_id,
        scope=scope_text(granted),
        member_scope=scope_text(for_members),
        created_at=now,
    )
    session.add(client)
    await session.flush()
    return ClientCredentials(client=client, client_secret=secret)


async def get_client(session: AsyncSession, client_id: str) -> OAuthClient | None:
    """The client ``client_id`` names, if any. An id no client can have (too long, or text
    PostgreSQL cannot be asked about: a NUL, half a surrogate pair) names none: such ids come
    from outside unchecked, as the ``iss`` of an assertion posted back to the portal."""
    if text_problem(client_id, CLIENT_ID_LENGTH):
        return None
    return await session.get(OAuthClient, client_id)


async def reset_client_secret(session: AsyncSession, client_id: str, now: datetime) -> str:
    """Give a client a new secret; returns it, in clear, once.

    The old secret stops working, and so do the tokens issued before ``now`` (the client's
    own and the member tokens it obtained): a secret is reset because it may have leaked, and
    a leaked secret's tokens are as good as the secret until they expire.
    """
    client = await get_client(session, client_id)
    if client is None:
        raise ClientNotFound(client_id)
    secret = new_client_secret()
    client.secret_hash = hash_secret(secret)
    client.secret_set_at = now
    await session.flush()
    return secret


async def list_clients(
    session: AsyncSession, *, program_id: str | None = None, first: int | None = None, after: str | None = None
) -> Sequence[OAuthClient]:
    """Every client by id, or only ``program_id``'s partner's; ``first`` of them after the
    client id ``after`` when asked (``None``: all)."""
    statement = select(OAuthClient)
    if program_id is not None:
        statement = statement.where(OAuthClient.program_id == program_id)
    if after is not None:
        statement = statement.where(col(OAuthClient.client_id) > after)
    return (await session.exec(statement.order_by(col(OAuthClient.client_id)).limit(first))).all()


async def program_client(session: AsyncSession, program_id: str, client_id: str) -> OAuthClient:
    """``program_id``'s own client ``client_id``; another's is not found, as if it did not exist."""
    client = await session.get(OAuthClient, client_id, with_for_update=True)
    if client is None or client.program_id != program_id:
        raise ClientNotFound(client_id)
    return client


async def delete_client(session: AsyncSession, client: OAuthClient, now: datetime) -> None:
    """No token is issued to ``client`` any more, and those issued to it (member tokens it
    obtained too) are refused from now on (:class:`~exchange.auth.tokens.TokenVerifier`), even
    once a client is made again under its id: when it was revoked is kept. Records of clients
    revoked longer ago than a token can live (:data:`REVOKED_CLIENT_KEPT`) are dropped on the
    way: every token issued before them has expired."""
    await session.exec(delete(RevokedClient).where(col(RevokedClient.revoked_at) < now - REVOKED_CLIENT_KEPT))
    await session.delete(client)
    await session.exec(
        dialects.insert(session, RevokedClient)
        .values(client_id=client.client_id, revoked_at=now)
        .on_conflict_do_update(index_elements=["client_id"], set_={"revoked_at": now})
    )
    await session.flush()
