"""How often a member may fail to prove an account they link, so that a partner's verification
value (often a four-digit PIN) cannot be guessed through the exchange.

A partner confirms a link by checking the value the member gives; the exchange asks it as
often as it is asked. Without a limit a member token could try every PIN of someone else's
account in minutes (fifteen aliased ``linkAccount`` fields a request) and learn the right one
from the answer that follows it; with that PIN the account can be signed in to at its partner.

Failures count against the account tried (its program and id), as a console sign-in's count
against a username (:mod:`exchange.auth.ratelimit`): from the member trying it, where the limit
locks that account for that member for the rest of the window, right value or not; from every
member together, at :data:`~exchange.auth.ratelimit.EVERY_ADDRESS_FACTOR` times the limit; and
against the member trying, over every account, at that many times too, so that one value tried
on many accounts is bounded as well. One member cannot lock an account's owner out: the owner
links as another member (and signs in through the partner in any case).

The partner is asked outside any unit of work (a slow partner holds no database connection),
so attempts made at once are held to the limits by this replica (one at a time per key); a
burst spread over several replicas may have one attempt per replica judged past the limit.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from exchange.auth import ratelimit
from exchange.auth.ratelimit import EVERY_ADDRESS, EVERY_ADDRESS_FACTOR, Counted, FailureLimit, Standing
from exchange.clock import Clock
from exchange.db.database import Database
from exchange.errors import BadUserInput, ErrorCode, ExchangeError
from exchange.settings import Settings
from exchange.text import counted

#: Keys of link failures, apart from any client id or username counted in the same table.
ACCOUNT_PREFIX = "link:"
MEMBER_PREFIX = "linker:"


class TooManyLinkAttempts(ExchangeError):
    """The member has failed to prove accounts too often lately; nothing was asked or linked."""

    code = ErrorCode.LIMIT_EXCEEDED

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many verifications failed lately: try again in {counted(retry_after, 'second')}",
            field="verification",
            limit="link_attempts",
            retryAfter=retry_after,
        )


def account_key(program_id: str, member_ref: str) -> str:
    """The key an account's failures count against: a digest, so that it fits the table's
    64-character keys whatever the program's and the account's ids."""
    digest = hashlib.blake2b(f"{program_id}\0{member_ref}".encode(errors="surrogatepass"), digest_size=16)
    return ACCOUNT_PREFIX + digest.hexdigest()


#: Why a link was refused when the partner did not confirm the account (a page reads it back
#: into the reader's language: exchange.web.said).
NOT_CONFIRMED = (
    "{program} does not confirm this account with that verification: check the member id you have "
    "at {program} and the verification value {program} gave you (such as a PIN)"
)


class VerificationFailed(BadUserInput):
    """The partner does not confirm the account with the value given, or has no such account:
    one refusal for both, so that trying ids tells nobody which accounts exist."""

    def __init__(self, program_id: str) -> None:
        super().__init__(NOT_CONFIRMED.format(program=program_id), field="verification")


@dataclass
class LinkAttempts:
    db: Database
    clock: Clock
    limit: FailureLimit
    _under_way: ratelimit.AttemptsUnderWay = field(default_factory=ratelimit.AttemptsUnderWay)

    @classmethod
    def for_settings(cls, settings: Settings, *, db: Database, clock: Clock) -> LinkAttempts:
        """Failed proofs count against the token endpoint's limit and window, as sign-ins do."""
        window = timedelta(seconds=settings.token_failure_window)
        return cls(db, clock, FailureLimit(failures=settings.token_failure_limit, window=window))

    @asynccontextmanager
    async def attempt(self, member_id: str, program_id: str, member_ref: str) -> AsyncIterator[None]:
        """Run one attempt of ``member_id`` to prove ``member_ref`` at ``program_id`` if the
        limits let it in (else :class:`TooManyLinkAttempts`, and the partner is not asked);
        a :class:`VerificationFailed` leaving it is counted."""
        account = account_key(program_id, member_ref)
        wide = FailureLimit(failures=self.limit.failures * EVERY_ADDRESS_FACTOR, window=self.limit.window)
        watched: dict[Counted, FailureLimit] = {
            (account, member_id): self.limit,
            (account, EVERY_ADDRESS): wide,
            (MEMBER_PREFIX + member_id, EVERY_ADDRESS): wide,
        }

        async def standing() -> Standing:
            now = self.clock.now()
            standings = Standing(None, {})
            async with self.db.transaction() as session:
                for (key, address), limit in watched.items():
                    standings |= await ratelimit.standing(session, {key}, address, limit, now)
            return standings

        limits = {key: limit.failures for key, limit in watched.items()}
        async with self._under_way.attempt(limits, standing) as admitted:
            if admitted.retry_after is not None:
                raise TooManyLinkAttempts(admitted.retry_after)
            try:
                yield
            except VerificationFailed:
                now = self.clock.now()
                async with self.db.transaction() as session:
                    for (key, address), limit in sorted(watched.items()):
                        await ratelimit.record_failure(session, key, address, limit, now)
                raise
