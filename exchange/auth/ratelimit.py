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

A check that comes before the count cannot, alone, hold back attempts made at the same time:
a burst of guesses all passed the check before the first had failed, and every one was judged
(and cost its Argon2 check). So each replica also holds the attempts it is judging
(:class:`AttemptsUnderWay`): an attempt is admitted only while no other is under way for the
same (client id, address) and the failures counted stay under the limit; the others wait for
it to finish, then look again. A client's own burst of right secrets runs one at a time and
every one succeeds (after the first without Argon2:
:func:`~exchange.auth.hashing.verify_client_secret`); a burst of guesses gets ``limit`` judged, the rest refused.

That guard sees only its own replica's attempts: a burst spread over four replicas would get
``limit`` judged on each. So the judging itself takes a turn in the database
(:func:`take_turn`): on PostgreSQL a transaction-level advisory lock per (client id, address),
held by the unit of work that judges the attempt and counts its failure, so that across every
replica one attempt at a time is judged per (client id, address), and each reads the failures
afresh once it has its turn (:func:`standing`), after the one before it has committed its
own. The failures counted therefore never pass the limit, however the attempts are spread. A
lock is no write: a right secret still costs no row written, only the lock's statement. The
in-process guard stays in front, so that a replica holds at most one database connection
waiting for a (client id, address)'s turn (a burst cannot tie up its pool), and answers the
rest of a burst without asking the database once the limit is reached. SQLite, the embedded
single-process store, has no such lock and needs none.

Counted per (client id, address) alone, a caller that names a new client id with each request
(or a new username at the console's sign-in) never reaches a limit, and each unknown id costs
an Argon2 check all the same (:func:`~exchange.auth.hashing.verify_nobody`, so that the time of
the answer does not tell which ids exist). So the failures from one address are counted over
every id too (:func:`every_id`), at a limit of their own (``EXCHANGE_TOKEN_FAILURE_ADDRESS_LIMIT``):
past it the address is answered 429 for every id until the window closes, which bounds the
Argon2 checks one address makes the gateway spend. Attempts for that key are not judged one at
a time (that would queue every request of a partner's servers sharing one address): as many as
the limit leaves room for are admitted at once, each attempt under way counted as a failure to
come (:meth:`AttemptsUnderWay.attempt`'s ``pooled``). Only each replica holds its own attempts
so: a burst spread over several replicas may have up to the limit judged on each before the
failures counted catch up.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import math
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Set
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, delete, func, literal, not_
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
#: Sets the advisory locks of judging turns apart from any other advisory lock.
TURN_LOCK_NAMESPACE = b"exchange.ratelimit.turn"
#: A key's failures from every address together lock it at this many times the limit of one
#: address's: enough that one caller cannot lock a person (or an account) out, few enough that
#: guesses spread over many addresses stay bounded.
EVERY_ADDRESS_FACTOR = 10
#: The address under which a key's failures from every address are counted together (no
#: caller's address has this form).
EVERY_ADDRESS = "*"
#: The key under which an address's failures over every client id and username are counted
#: together (no client id holds a colon, and usernames' keys have a prefix of their own).
EVERY_ID = "every:"


@dataclass(frozen=True)
class FailureLimit:
    failures: int
    window: timedelta


#: What failures are counted against: a client id (or a username's key) and an address.
Counted = tuple[str, str]


def every_id(address: str) -> Counted:
    """The key of ``address``'s failures over every id (see the module's docstring)."""
    return (EVERY_ID, address)


@dataclass(frozen=True)
class Standing:
    """A request's clients, from its address, when it asks: ``retry_after`` seconds to wait
    if any of them is locked out, and each one's failures in its current window."""

    retry_after: int | None
    failures: Mapping[Counted, int]

    def __or__(self, other: Standing) -> Standing:
        """Both standings: the longer wait, and the failures of each."""
        waits = [wait for wait in (self.retry_after, other.retry_after) if wait is not None]
        return Standing(max(waits, default=None), {**self.failures, **other.failures})


class AttemptsUnderWay:
    """The attempts this replica is judging, per (client id, address): at most one at a time,
    and none once the failures counted so far reach their limit (see the module's docstring).

    Admission reads the counted failures and counts itself in under one lock per (client id,
    address), so two requests cannot both take the last place; judging runs unlocked. A
    finished attempt counts its failure before it leaves, and wakes the ones waiting.
    """

    def __init__(self) -> None:
        self._admitting: dict[Counted, asyncio.Lock] = {}
        self._users: Counter[Counted] = Counter()
        self._under_way: Counter[Counted] = Counter()
        self._finishes = 0
        self._waiting: set[asyncio.Future[None]] = set()

    @asynccontextmanager
    async def attempt(
        self,
        limits: Mapping[Counted, int],
        standing: Callable[[], Awaitable[Standing]],
        *,
        pooled: Mapping[Counted, int] | None = None,
    ) -> AsyncIterator[Standing]:
        """Wait for room for an attempt counted against each of ``limits`` (at most that many
        failures, one attempt at a time) and each of ``pooled`` (at most that many failures
        counted and attempts under way together, several at a time); yield the standing it was
        admitted on. A standing with ``retry_after`` is a refusal: nothing was admitted, the
        caller answers 429. ``standing`` reads the counted failures afresh."""
        keys, shared = sorted(limits), sorted(pooled or {})
        if not keys:  # names no client: nothing to count it against
            yield Standing(None, {})
            return
        while True:
            finishes = self._finishes
            now = None
            async with self._admission(sorted({*keys, *shared})):
                # Nobody else is admitted meanwhile, and a finishing attempt counts its failure
                # before it leaves. While one is under way, the failures are not read: it is
                # waited for first (one read per admission, not one per waiter per finish).
                if not any(self._under_way[key] for key in keys):
                    # Counted before the read: one finishing during it may have had its failure
                    # counted after the read began, and must not be missed from both.
                    under_way = {key: self._under_way[key] for key in shared}
                    now = await standing()
                    admitted = (
                        now.retry_after is None
                        and all(now.failures.get(key, 0) < limit for key, limit in limits.items())
                        and all(
                            now.failures.get(key, 0) + under_way[key] < limit for key, limit in (pooled or {}).items()
                        )
                    )
                    if admitted:
                        self._under_way.update([*keys, *shared])
                        break
            if now is not None and now.retry_after is not None:
                yield now
                return
            if all(self._under_way[key] == 0 for key in [*keys, *shared]):
                continue  # the ones under way have finished: read the failures again
            if self._finishes == finishes:  # none finished since it looked: wait for one
                await self._next_finish()
        try:
            yield now
        finally:
            self._under_way.subtract([*keys, *shared])
            for key in {*keys, *shared}:
                if not self._under_way[key]:
                    del self._under_way[key]
            self._finishes += 1
            for waiter in self._waiting:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiting.clear()

    async def _next_finish(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.add(waiter)
        try:
            await waiter
        finally:
            self._waiting.discard(waiter)

    @asynccontextmanager
    async def _admission(self, keys: list[Counted]) -> AsyncIterator[None]:
        """Hold the admission lock of every key, taken in one order so that two requests naming
        the same clients never wait on each other; a lock nobody holds or waits for is dropped."""
        async with AsyncExitStack() as held:
            for key in keys:
                lock = self._admitting.setdefault(key, asyncio.Lock())
                self._users[key] += 1
                held.callback(self._release, key)
                await held.enter_async_context(lock)
            yield

    def _release(self, key: Counted) -> None:
        self._users[key] -= 1
        if not self._users[key]:
            del self._users[key], self._admitting[key]


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


async def standing(
    session: AsyncSession, client_ids: Set[str], address: str, limit: FailureLimit, now: datetime
) -> Standing:
    """How ``client_ids`` stand from ``address`` now: the longest wait of any of them locked
    out, if one is, and each one's failures in its current window."""
    rows = await session.exec(
        select(ClientAuthFailure).where(
            col(ClientAuthFailure.client_id).in_(list(client_ids)),
            col(ClientAuthFailure.address) == address,
        )
    )
    failures: dict[Counted, int] = {}
    remaining = 0.0
    for row in rows:
        left = (row.window_started_at + limit.window - now).total_seconds()
        if left <= 0:
            continue  # its window has closed: the next failure opens a new one
        failures[row.client_id, address] = row.failures
        if row.failures >= limit.failures:
            remaining = max(remaining, left)
    return Standing(math.ceil(remaining) if remaining > 0 else None, failures)


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


async def take_turn(session: AsyncSession, counted: Set[Counted]) -> None:
    """Wait for the turn to judge an attempt counted against each of ``counted``, and hold it
    until ``session``'s transaction ends (see the module's docstring): read the standing in
    ``session`` after this, and count the attempt's failure in it.

    One ``pg_advisory_xact_lock`` statement per key, taken in one order so that two attempts
    naming the same keys never wait on each other. Nothing on SQLite (one process, one
    connection: :class:`AttemptsUnderWay` sees every attempt)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for key in sorted(counted):
        await session.exec(select(func.pg_advisory_xact_lock(turn_lock_id(key))))


def turn_lock_id(key: Counted) -> int:
    """The advisory lock id of ``key``'s judging turn: 64 bits of a hash of the key. Two keys
    that share one only take turns with each other."""
    client_id, address = key
    digest = hashlib.blake2b(
        f"{client_id}\0{address}".encode(errors="surrogatepass"), digest_size=8, key=TURN_LOCK_NAMESPACE
    ).digest()
    return int.from_bytes(digest, "big", signed=True)
