"""The keys settlement statements are signed with: a kind of :mod:`exchange.keyring` key of
their own, apart from the OAuth server's token-signing keys.

A partner's finance team verifies a statement it downloaded years ago, so a retired statement
key stays published for the retention period (``EXCHANGE_STATEMENT_RETENTION_YEARS``, at least
seven) after the last moment it may have signed, where a token key is published for about an
hour. And a statement key never passes for a token key: the token verifier reads only the
token keys' table, and statement keys are published in a document of their own
(``/.well-known/statement-keys.json``), never in the JWKS that resource servers trust for
tokens. Rotating either kind leaves the other alone.

Verifiers cache the published document (``Cache-Control: max-age``, five minutes), and one that
meets a statement signed by a key its copy lacks may refuse it rather than fetch the document
again. So a rotation publishes the new key at once but lets it sign only after
:data:`PUBLICATION_LEAD`, by when every cached copy has expired, and the old key signs until
then. A rotation because a key is compromised cannot wait: ``compromised=True`` switches at once,
and verifiers holding a cached copy must fetch it again. It also withdraws the keys published
until then (a statement forged with one must not verify for years) and signs again, with the new
key, every issued statement they signed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import Clock
from exchange.db.database import Database
from exchange.keyring import lifecycle
from exchange.keyring.cache import KEY_REFRESH, PublishedKeys
from exchange.keyring.models import StoredKey
from exchange.settings import Settings
from exchange.settlement import issued
from exchange.settlement.models import StatementKey


@dataclass(frozen=True)
class Rotation(lifecycle.Rotation[StatementKey]):
    """A statement key's rotation; for a compromised key, also the keys it withdrew and how many
    issued statements it signed again with the new key."""

    withdrawn: Sequence[str] = ()
    resigned: int = 0


#: How long verifiers may cache the published statement keys (``Cache-Control: max-age``).
STATEMENT_KEYS_MAX_AGE_SECONDS = 300
#: How long after a rotation the new key starts signing: a gateway publishes it within
#: :data:`KEY_REFRESH`, and a verifier's cached copy without it expires within the max-age.
PUBLICATION_LEAD = KEY_REFRESH + timedelta(seconds=STATEMENT_KEYS_MAX_AGE_SECONDS)


def years_after(moment: datetime, years: int) -> datetime:
    """The same moment ``years`` calendar years later (29 February becomes 1 March)."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, month=3, day=1)


class StatementKeys(PublishedKeys):
    """The statement keys: the active one that signs, and the published document of every key
    whose statements are still kept."""

    rotate_command = "exchange keys rotate --statements"
    model = StatementKey

    def __init__(self, db: Database, secret: str, clock: Clock, *, retention_years: int) -> None:
        super().__init__(db, secret, clock)
        self.retention_years = retention_years

    @classmethod
    def for_settings(cls, settings: Settings, *, db: Database, clock: Clock) -> StatementKeys:
        return cls(
            db,
            settings.key_encryption_secret.get_secret_value(),
            clock,
            retention_years=settings.statement_retention_years,
        )

    def published_until(self, key: StatementKey) -> datetime | None:
        """When a retired key leaves the published document: the retention period after the
        last statement it may have signed (this process, or another that had not yet noticed
        the rotation). ``None`` for the active key."""
        if key.retired_at is None:
            return None
        return years_after(key.retired_at + KEY_REFRESH, self.retention_years)

    def is_published(self, key: StatementKey, now: datetime) -> bool:
        """Until :meth:`published_until`, unless withdrawn as compromised before then."""
        if key.withdrawn_at is not None and key.withdrawn_at <= now:
            return False
        until = self.published_until(key)
        return until is None or now < until

    def signs(self, key: StoredKey, now: datetime) -> bool:
        """From ``signs_from`` (its creation if none) until its retirement."""
        assert isinstance(key, StatementKey)
        starts = key.signs_from or key.created_at
        return starts <= now and (key.retired_at is None or now < key.retired_at)

    async def published(self, session: AsyncSession, now: datetime) -> Sequence[StatementKey]:
        # One row per rotation, a handful in a decade: the rule is applied here, in exactly the
        # form published_until states it, rather than restated as calendar arithmetic in SQL.
        rows = (await session.exec(select(StatementKey).order_by(col(StatementKey.created_at).desc()))).all()
        return [row for row in rows if self.is_published(row, now)]

    async def ensure_active(self, session: AsyncSession) -> StatementKey:
        """The active statement key, created on first start."""
        return await lifecycle.ensure_active_key(session, StatementKey, self._secret, self._clock.now())

    async def rotate(self, session: AsyncSession, *, compromised: bool = False) -> Rotation:
        """Make a new key active and published now. It signs from :data:`PUBLICATION_LEAD`
        later, the old one until then (at once if no key signs now). The retired key stays
        published until :meth:`published_until`.

        With ``compromised`` the new key signs at once (every process from its next statement:
        :meth:`PublishedKeys.signing_key`), and every key published until now, the active one and
        the retired ones alike (their private halves are kept the same way), is withdrawn: no
        longer published, so a statement forged with one of them verifies no more. Each
        statement one of them signed is signed again with the new key (:func:`issued.resign`),
        its document unchanged, so what partners fetch again verifies."""
        now = self._clock.now()
        published = await self.published(session, now)
        # The lead lets the old key sign while verifiers' copies catch up. With no key signing
        # now (the database's first statement key, made by this command rather than by a
        # gateway's first start) nothing would sign through it and every closing would be
        # refused for six minutes: the new key signs at once, as a first start's does.
        waits = not compromised and any(self.signs(key, now) for key in published)
        switch = now + PUBLICATION_LEAD if waits else now
        withdrawn = [key.kid for key in published] if compromised else []
        if withdrawn:
            await session.exec(
                update(StatementKey).where(col(StatementKey.kid).in_(withdrawn)).values(withdrawn_at=now)
            )
        # A key still signing in an earlier rotation's lead stops at this switch at the latest.
        await session.exec(update(StatementKey).where(col(StatementKey.retired_at) > switch).values(retired_at=switch))
        new, retired = await lifecycle.rotate_key(
            session, StatementKey, self._secret, now, retire_at=switch, new_columns={"signs_from": switch}
        )
        await self.refresh(session)  # this process publishes (and, compromised, signs with) it at once
        resigned = await issued.resign(session, withdrawn, await self.signing_key(session), now) if withdrawn else 0
        return Rotation(
            new=new,
            retired=retired,
            published=await self.published(session, now),
            withdrawn=withdrawn,
            resigned=resigned,
        )
