"""Rate limiting failed client authentications, per client id and caller, across every replica.

Failures are counted per (client id, caller's address), not per client id alone. A client id
is not secret: partners put it in configuration, logs and support tickets. A limit per client
id would let anyone who knows one lock its partner out, right secret or not, by sending wrong
secrets: a denial of service that needs no credential. Counted per address, a caller's
failures lock out that caller's address for that client, and the partner's own servers keep
getting tokens. (What keeps a secret from being guessed is its 256 random bits; the limit only
slows a caller down and keeps it from spending the gateway's Argon2 checks.)

The address is the ASGI scope's client host: uvicorn's ProxyHeadersMiddleware has already
replaced it with the forwarded address when the request came through a trusted proxy
(``FORWARDED_ALLOW_IPS``). An IPv6 caller is counted by its /64, the block one host is
usually given, so that cycling through its addresses does not multiply its tries.

Each (client id, address) has a window that opens with its first failure; once ``limit``
failures fall in it, the OAuth endpoints refuse that client from that address (even with the
right secret) until the window closes. The count lives in the database so that replicas behind
a load balancer share it; the increment is one atomic upsert, so concurrent failures are all
counted.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Set
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, delete, literal, not_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.auth.models import ADDRESS_LENGTH, ClientAuthFailure
from exchange.db import dialects
from exchange.db.types import UTCDateTime

#: Longer ids cannot name a client; they are not counted (nor stored).
CLIENT_ID_MAX_LENGTH = 64
#: The address of a request whose caller's address is unknown.
ANY_ADDRESS = ""
#: The IPv6 prefix one caller is counted by.
IPV6_PREFIX = 64


@dataclass(frozen=True)
class FailureLimit:
    failures: int
    window: timedelta


def caller_address(host: str | None) -> str:
    """The address failures of a caller whose ASGI client host is ``host`` count against: an
    IPv4 address, an IPv6 /64 network, or (not an IP address) the host as given, cut to fit."""
    if not host:
        return ANY_ADDRESS
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:ADDRESS_LENGTH]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # an IPv4 caller on a dual-stack socket
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


async def retry_after(
    session: AsyncSession, client_ids: Set[str], address: str, limit: FailureLimit, now: datetime
) -> int | None:
    """Seconds until a request from ``address`` naming ``client_ids`` may try again (the
    longest wait of any of them), or ``None`` if it may try now."""
    rows = await session.exec(
        select(ClientAuthFailure).where(
            col(ClientAuthFailure.client_id).in_(list(client_ids)),
            col(ClientAuthFailure.address) == address,
            col(ClientAuthFailure.failures) >= limit.failures,
        )
    )
    remaining = max(((row.window_started_at + limit.window - now).total_seconds() for row in rows), default=0)
    return math.ceil(remaining) if remaining > 0 else None


async def record_failures(
    session: AsyncSession, client_ids: Set[str], address: str, limit: FailureLimit, now: datetime
) -> None:
    """Count one failed authentication from ``address`` against each of ``client_ids``, in a
    fixed order so that concurrent failures naming the same clients never deadlock."""
    for client_id in sorted(client_ids):
        await record_failure(session, client_id, address, limit, now)


async def record_failure(
    session: AsyncSession, client_id: str, address: str, limit: FailureLimit, now: datetime
) -> None:
    """Count one failed authentication of ``client_id`` from ``address`` (a new window if the
    last closed)."""
    if len(client_id) > CLIENT_ID_MAX_LENGTH:
        return
    window_closed_before = now - limit.window
    table = ClientAuthFailure.__table__  # type: ignore[attr-defined]
    expired = table.c.window_started_at <= literal(window_closed_before, UTCDateTime())
    await session.exec(
        delete(ClientAuthFailure).where(
            col(ClientAuthFailure.window_started_at) <= window_closed_before,
            not_(and_(col(ClientAuthFailure.client_id) == client_id, col(ClientAuthFailure.address) == address)),
        )
    )
    await session.exec(
        dialects.insert(session, ClientAuthFailure)
        .values(client_id=client_id, address=address, window_started_at=now, failures=1)
        .on_conflict_do_update(
            index_elements=["client_id", "address"],
            set_={
                "failures": case((expired, 1), else_=table.c.failures + 1),
                "window_started_at": case((expired, literal(now, UTCDateTime())), else_=table.c.window_started_at),
            },
        )
    )
