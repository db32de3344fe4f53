"""Debit consents: what lets a request under one partner's token spend points held at another.

A member who arrives through partner B and wants to convert out of (or pay with) program A
asks A for a consent first, under a token A asserted: :meth:`DebitConsents.grant`. The consent
is bound to the member, to A and to the exact points; it lives a short while
(``EXCHANGE_DEBIT_CONSENT_SECONDS``) and pays for one debit. Its id is a random 256-bit secret,
shown once; only its SHA-256 is stored, and, for a consent asked for under the member's
idempotency key, the secret sealed, so that the request sent again (a retry after a lost answer)
is answered that consent, its secret shown again, and no second consent is given.

Sagas call :func:`authorize_debit` in the unit of work that records their conversion or
redemption: a presented consent is used there by one guarded ``UPDATE`` (unused, unexpired,
the member's, the program's, the points'), so of two requests presenting it exactly one
succeeds, and a request that fails later in that unit of work leaves it unused. A saga that
then fails or is reversed does not give it back: it was used.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import Clock
from exchange.db import dialects
from exchange.db.database import Database
from exchange.idempotency import claiming, keyed, record_once, same_request
from exchange.keyring.crypto import decrypt_with_secret, encrypt_with_secret
from exchange.members.authority import (
    AuthorityRequired,
    DebitAuthority,
    Refusal,
    consent_refusal,
    require_authority,
    require_own_assertion,
)
from exchange.members.models import DebitConsent, LinkedAccount
from exchange.members.service import AccountNotLinked
from exchange.pricing.limits import check_points
from exchange.programs import service as programs
from exchange.settings import Settings

#: Bytes of randomness in a consent's secret: 256 bits, so the stored SHA-256 needs no salt.
SECRET_BYTES = 32
#: The longest consent id a client can send: the secret's URL-safe base64 is 43 characters.
CONSENT_ID_LENGTH = 64
#: An unused consent is forgotten this long after it expired (refused as expired until then).
FORGET_AFTER = timedelta(days=1)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class GrantedConsent:
    """A consent just given: its secret (the client's only copy) and its terms."""

    secret: str
    consent: DebitConsent


@dataclass
class DebitConsents:
    """Grants debit consents (the ``authorizeDebit`` mutation)."""

    db: Database
    clock: Clock
    ttl: timedelta
    key_secret: str
    """Seals a keyed consent's secret (the key-encryption secret)."""

    @classmethod
    def for_settings(cls, settings: Settings, *, db: Database, clock: Clock) -> DebitConsents:
        return cls(
            db=db,
            clock=clock,
            ttl=settings.debit_consent_ttl,
            key_secret=settings.key_encryption_secret.get_secret_value(),
        )

    async def grant(
        self,
        *,
        member_id: str,
        asserted_by: str,
        program: str,
        points: int,
        field: str = "programId",
        key: str | None = None,
    ) -> GrantedConsent:
        """The member's consent to one debit of ``points`` of ``program``, given under a token
        ``program`` asserted (else :class:`~exchange.members.authority.AuthorityRequired`) while
        the member's account there is linked (else ``AccountNotLinked``: a consent given with no
        account would debit whichever is linked next); ``field`` is the argument that named
        ``program``.

        With the member's idempotency ``key`` (:mod:`exchange.idempotency`): the consent the key
        holds, if given for the same program and points, as it stands (its secret again; one
        used, expired or revoked pays for nothing more), nothing given now; ``IdempotencyConflict``
        if given for another. An unused consent forgotten a day after it expired frees its key."""
        require_own_assertion(asserted_by, program, field=field)
        check_points(points)
        now = self.clock.now()
        secret = secrets.token_urlsafe(SECRET_BYTES)
        consent = DebitConsent(
            secret_hash=secret_hash(secret),
            member_id=member_id,
            program_id=program,
            points=points,
            created_at=now,
            expires_at=now + self.ttl,
            idempotency_key=key,
            sealed_secret=None if key is None else encrypt_with_secret(secret, self.key_secret, _kid(member_id, key)),
        )

        def same(earlier: DebitConsent) -> bool:
            return (earlier.program_id, earlier.points) == (program, points)

        async with self.db.transaction() as session:
            await programs.get_program(session, program, field=field)
            await session.exec(
                delete(DebitConsent).where(
                    col(DebitConsent.used_at).is_(None), col(DebitConsent.expires_at) < now - FORGET_AFTER
                )
            )
            # A retry is answered by what its key holds, as it stands, even once the account is
            # unlinked (that consent revoked): the first request's answer, not a refusal.
            if key is not None and (earlier := await keyed(session, DebitConsent, member_id, key)) is not None:
                return self._again(same_request(earlier, key, same), member_id, key)
            # The member's account there, key-share locked as a debit reads it: an unlink waits,
            # and then revokes this consent with the rest.
            linked = await session.exec(
                select(LinkedAccount)
                .where(LinkedAccount.member_id == member_id, LinkedAccount.program_id == program)
                .with_for_update(read=True, key_share=True)
            )
            if linked.first() is None:
                raise AccountNotLinked(program, field)
            if key is None:
                session.add(consent)
                return GrantedConsent(secret=secret, consent=consent)
            claim = claiming(
                dialects.insert(session, CONSENTS).values({c.name: getattr(consent, c.name) for c in CONSENTS.columns})
            )
            given, created = await record_once(
                session,
                DebitConsent,
                claim,
                member_id=member_id,
                key=key,
                same=same,
            )
        assert given is not None, "only the key is unique but for the secret"
        if created:
            return GrantedConsent(secret=secret, consent=given)
        return self._again(given, member_id, key)

    def _again(self, given: DebitConsent, member_id: str, key: str) -> GrantedConsent:
        """The consent ``key`` holds, given again: its secret unsealed."""
        assert given.sealed_secret is not None, "a keyed consent keeps its secret sealed"
        return GrantedConsent(decrypt_with_secret(given.sealed_secret, self.key_secret, _kid(member_id, key)), given)


CONSENTS = DebitConsent.__table__  # type: ignore[attr-defined]  # a table model's


def _kid(member_id: str, key: str) -> str:
    """What a keyed consent's sealed secret is bound to: its member's key."""
    return f"debit-consent:{member_id}:{key}"


async def revoke(session: AsyncSession, *, member_id: str, program: str, now: datetime) -> None:
    """Revoke, in the caller's unit of work, the member's consents to debit ``program`` that are
    still unused (the member's account there is being unlinked): one presented afterwards is
    refused ``CONSENT_REVOKED``, whatever account the member links at ``program`` next."""
    await session.exec(
        update(DebitConsent)
        .where(
            col(DebitConsent.member_id) == member_id,
            col(DebitConsent.program_id) == program,
            col(DebitConsent.used_at).is_(None),
            col(DebitConsent.revoked_at).is_(None),
        )
        .values(revoked_at=now)
    )


async def authorize_debit(
    session: AsyncSession,
    authority: DebitAuthority,
    *,
    member_id: str,
    program: str,
    points: int,
    used_for: str,
    now: datetime,
    field: str,
) -> None:
    """Enforce the rule for debiting ``points`` of ``program`` from ``member_id``, inside the
    unit of work that records the debit (``used_for``: ``conversion:<id>``, ...).

    The token's own program needs nothing more; any other needs a consent. A presented
    consent is always checked and used, whoever asserted the token, so that a request never
    silently ignores what it was sent with.
    """
    require_authority(authority, program, field=field)
    if authority.consent is None:
        return
    digest = secret_hash(authority.consent)
    used = await session.exec(
        update(DebitConsent)
        .where(
            col(DebitConsent.secret_hash) == digest,
            col(DebitConsent.member_id) == member_id,
            col(DebitConsent.program_id) == program,
            col(DebitConsent.points) == points,
            col(DebitConsent.used_at).is_(None),
            col(DebitConsent.revoked_at).is_(None),
            col(DebitConsent.expires_at) > now,
        )
        .values(used_at=now, used_for=used_for)
    )
    if used.rowcount == 1:
        return
    consent = await session.get(DebitConsent, digest)
    refusal = consent_refusal(consent, member_id=member_id, program=program, points=points, now=now)
    raise AuthorityRequired(
        program,
        refusal or Refusal.CONSENT_USED,  # it matched, yet another request used it meanwhile
        field="consent",
        points=points,
        consented=consent.points if consent is not None else 0,
    )
