"""Member assertions (RFC 7523): a partner signs a JWT naming a member it has authenticated.

A partner registers the public keys it signs with (several at once, so it can rotate its
own). An assertion is accepted when a registered key of the issuing partner verifies it,
its claims are in order (``iss`` the partner's client, ``sub`` the member's ref there,
``aud`` the exchange, a near ``exp``) and its ``jti`` has not been used before.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    InvalidKeyTypeError,
    JoseError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey
from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.auth.errors import AssertionRejected
from exchange.auth.models import CLIENT_ID_LENGTH, JTI_LENGTH, KID_LENGTH, PartnerAssertionKey, UsedAssertion
from exchange.db import dialects
from exchange.db.grouping import grouped
from exchange.errors import BadUserInput, ErrorCode, ExchangeError, NotFound
from exchange.members.models import MEMBER_REF_MAX_LENGTH
from exchange.text import json_value, text_problem

#: What partners may sign with. ``Ed25519`` is RFC 9864's name for what ``EdDSA`` meant.
ASSERTION_ALGORITHMS = ("RS256", "ES256", "Ed25519", "EdDSA")
#: An assertion is a one-off proof: it may not be valid for longer than this (what
#: Authlib's and Google's assertion clients sign by default); its jti is kept as long.
MAX_ASSERTION_LIFETIME = timedelta(hours=1)
#: Clock difference tolerated between a partner and the exchange.
ASSERTION_LEEWAY_SECONDS = 60
MINIMUM_RSA_BITS = 2048
#: The longest public key text taken (an RSA 4096 JWK or PEM is under 1 KiB).
PUBLIC_KEY_LENGTH = 16_384
#: The most keys one program may have registered at once: room to rotate (the key in use, its
#: successor and spares), while the list a partner reads, and the key set each of its
#: assertions is checked against, stay small.
MAX_ASSERTION_KEYS = 10

PublicKey = RSAKey | ECKey | OKPKey


class InvalidAssertionKey(BadUserInput):
    def __init__(self, reason: str) -> None:
        super().__init__(f"public key {reason}", field="publicKey")


class TooManyAssertionKeys(ExchangeError):
    code = ErrorCode.LIMIT_EXCEEDED

    def __init__(self) -> None:
        super().__init__(
            f"at most {MAX_ASSERTION_KEYS} assertion keys: remove one first",
            field="publicKey",
            limit="assertion_keys",
        )


class AssertionKeyNotFound(NotFound):
    def __init__(self, kid: str) -> None:
        super().__init__(f"no assertion key has kid {kid!r}", field="kid")


def parse_public_key(text: str) -> PublicKey:
    """A partner's public key, as a JWK (JSON) or PEM. Private or weak keys are refused.

    The key's ``kid`` is the one it names, else its RFC 7638 thumbprint.
    """
    data: str | dict[str, Any] = text.strip()
    if isinstance(data, str) and data.startswith("{"):
        try:
            data = json_value(data)
        except ValueError:
            raise InvalidAssertionKey("is neither a JWK nor a PEM key") from None
    key = _import_public_key(data)
    if key.is_private:
        raise InvalidAssertionKey("is a private key: register the public half only")
    if isinstance(key, RSAKey) and key.raw_value.key_size < MINIMUM_RSA_BITS:
        raise InvalidAssertionKey(f"is an RSA key under {MINIMUM_RSA_BITS} bits")
    if isinstance(key, ECKey) and key.curve_name != "P-256":
        raise InvalidAssertionKey("must be on curve P-256 (ES256)")
    if isinstance(key, OKPKey) and key.curve_name != "Ed25519":
        raise InvalidAssertionKey("must be an Ed25519 key")
    key.ensure_kid()
    if problem := text_problem(str(key.kid), KID_LENGTH, min_length=1, printable=True):
        raise InvalidAssertionKey(f"kid {problem}")
    return key


def _import_public_key(data: str | dict[str, Any]) -> PublicKey:
    key_types: Sequence[type[PublicKey]] = (RSAKey, ECKey, OKPKey)
    if isinstance(data, dict):
        key_types = [kind for kind in key_types if kind.key_type == data.get("kty")]
    for kind in key_types:
        try:
            return kind.import_key(data)
        except (JoseError, ValueError, TypeError):
            continue
    raise InvalidAssertionKey("is not an RSA, P-256 or Ed25519 public key (JWK or PEM)")


async def register_assertion_key(
    session: AsyncSession, program_id: str, public_key: str, now: datetime
) -> PartnerAssertionKey:
    """Add (or, for a kid already there, replace) a key ``program_id`` signs assertions with;
    a new kid past :data:`MAX_ASSERTION_KEYS` is :class:`TooManyAssertionKeys` (the caller
    locks the program's row, so that two at once cannot both take its last place).

    One upsert: ``session.merge`` reads, then inserts or updates, so two registrations of a
    new kid at once both inserted and the second failed on the primary key."""
    key = parse_public_key(public_key)
    others = await session.exec(
        select(func.count())
        .select_from(PartnerAssertionKey)
        .where(
            PartnerAssertionKey.program_id == program_id,
            PartnerAssertionKey.kid != str(key.kid),
            col(PartnerAssertionKey.removed_at).is_(None),
        )
    )
    if others.one() >= MAX_ASSERTION_KEYS:
        raise TooManyAssertionKeys()
    row = PartnerAssertionKey(
        program_id=program_id,
        kid=str(key.kid),
        public_jwk=key.as_dict(private=False),
        created_at=now,
    )
    await session.exec(
        dialects.insert(session, PartnerAssertionKey)
        .values(program_id=row.program_id, kid=row.kid, public_jwk=row.public_jwk, created_at=row.created_at)
        .on_conflict_do_update(
            index_elements=["program_id", "kid"],
            set_={"public_jwk": row.public_jwk, "created_at": row.created_at, "removed_at": None},
        )
    )
    return row


async def remove_assertion_key(session: AsyncSession, program_id: str, kid: str, now: datetime) -> PartnerAssertionKey:
    """Stop accepting ``kid``; the key removed. One removed already (a retry after a lost
    answer) is the answer as that removal left it; a kid the program never had is not found."""
    row = await session.get(PartnerAssertionKey, (program_id, kid), with_for_update=True)
    if row is None:
        raise AssertionKeyNotFound(kid)
    if row.removed_at is None:
        row.removed_at = now
        session.add(row)
        await session.flush()  # the unit of work's next read of its keys no longer finds it
    return row


async def assertion_keys(session: AsyncSession, program_ids: Iterable[str]) -> dict[str, list[PartnerAssertionKey]]:
    """Each program's keys it accepts (none removed), newest first, in one query."""
    rows = await session.exec(
        select(PartnerAssertionKey)
        .where(
            col(PartnerAssertionKey.program_id).in_(list(program_ids)), col(PartnerAssertionKey.removed_at).is_(None)
        )
        .order_by(col(PartnerAssertionKey.program_id), col(PartnerAssertionKey.created_at).desc())
    )
    return grouped(rows, lambda key: key.program_id)


def verification_keys(rows: Iterable[PartnerAssertionKey]) -> KeySet:
    return KeySet([_import_public_key(dict(row.public_jwk)) for row in rows])


def verify_assertion(assertion: str, keys: KeySet, *, audiences: Sequence[str], now: datetime) -> Mapping[str, Any]:
    """The assertion's claims, once a partner key verifies it and its claims are in order.

    ``keys`` are the issuing partner's; the ``kid`` header picks one (optional when the
    partner has registered a single key).
    """
    if not keys.keys:
        raise AssertionRejected("the partner has registered no assertion key")
    header = _check_json(assertion)
    try:
        token = jwt.decode(assertion, keys, algorithms=list(ASSERTION_ALGORITHMS))
    except BadSignatureError:
        raise AssertionRejected("the assertion's signature does not verify") from None
    except InvalidKeyIdError:
        raise AssertionRejected(_unknown_kid(header.get("kid"), len(keys.keys))) from None
    except (UnsupportedAlgorithmError, InvalidKeyTypeError):
        raise AssertionRejected(
            f"the assertion is not signed with {', '.join(ASSERTION_ALGORITHMS)} and a key of that kind "
            f"(its alg is {_shown(header.get('alg'))}): RS256 takes an RSA key, ES256 a P-256 key, "
            "Ed25519 and EdDSA an Ed25519 key"
        ) from None
    except (JoseError, ValueError, RecursionError):  # RecursionError: claims nested too deeply to read
        raise AssertionRejected(
            "the assertion is malformed: send a compact JWT (header.claims.signature, each base64url) signed with "
            + ", ".join(ASSERTION_ALGORITHMS)
        ) from None
    registry = jwt.JWTClaimsRegistry(
        now=int(now.timestamp()),
        leeway=ASSERTION_LEEWAY_SECONDS,
        iss={"essential": True},
        sub={"essential": True},
        aud={"essential": True, "values": list(audiences)},
        exp={"essential": True},
        jti={"essential": True},
    )
    try:
        registry.validate(token.claims)
    except ExpiredTokenError:
        raise AssertionRejected(
            f"the assertion has expired (its exp is more than {ASSERTION_LEEWAY_SECONDS} s before the exchange's "
            "clock): sign a new one as you post it, its exp at most an hour ahead"
        ) from None
    except MissingClaimError as error:
        raise AssertionRejected(f"the assertion lacks a claim: {error.description}") from None
    except InvalidClaimError as error:
        if error.claim == "aud":  # the one claim whose right value the partner cannot guess
            raise AssertionRejected(f"the assertion's aud claim must be {' or '.join(audiences)}") from None
        raise AssertionRejected(f"the assertion's claims are invalid: {error.description}") from None
    except JoseError as error:
        raise AssertionRejected(f"the assertion's claims are invalid: {error.description}") from None
    _check_claim_values(token.claims)
    # Compared, not subtracted: an int past float's range (``exp: 10**400``) cannot be taken
    # from a float timestamp, but compares with one exactly.
    if token.claims["exp"] > now.timestamp() + MAX_ASSERTION_LIFETIME.total_seconds():
        raise AssertionRejected(
            f"the assertion is valid for too long (at most {int(MAX_ASSERTION_LIFETIME.total_seconds())} s)"
        )
    return token.claims


def _unknown_kid(kid: object, registered: int) -> str:
    """Why no registered key was picked, and what the partner does next: a header without a
    kid picks the key only while the partner has one; a kid it never registered picks none."""
    if kid is None:
        return (
            f"the assertion's header names no kid, and the partner has {registered} assertion keys registered: "
            "put the kid that registerAssertionKey answered for the signing key in the header"
        )
    return (
        f"the assertion's kid {_shown(kid)} is no assertion key the partner registered: register the signing key's "
        "public half (registerAssertionKey) and put the kid it answers in the header"
    )


def _shown(value: object) -> str:
    """A header's value as a refusal quotes it: a short string as written, anything else by kind
    (the sender is not authenticated yet; its header is not echoed at any length)."""
    if isinstance(value, str) and len(value) <= KID_LENGTH:
        return repr(value)
    return "<none>" if value is None else f"<a JSON {type(value).__name__}>"


def _check_json(assertion: str) -> dict[str, Any]:
    """Refuse an assertion whose header or claims are JSON the exchange's reader refuses (an
    object naming a key twice, above all): the JOSE library keeps the last of two ``sub``, the
    partner's signer or auditor may have meant the first. An empty ``crit`` list, which the
    JOSE library lets through, is refused too. A compact JWS whose parts are not
    even base64url is left to the JOSE library to call malformed.

    Returns the header as read (empty when it is not a JSON object), for the refusals that
    name what it says."""
    header: dict[str, Any] = {}
    for part, encoded in zip(("header", "claims"), assertion.split(".")[:2], strict=False):
        try:
            written = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:  # binascii.Error is one
            return header
        try:
            read = json_value(written)
        except ValueError as malformed:
            raise AssertionRejected(f"the assertion's {part} is not JSON: {malformed}") from None
        if part == "header" and isinstance(read, dict):
            header = read
            if read.get("crit", None) == []:
                # RFC 7515 §4.1.11: producers must not send an empty list; a signer that does is
                # not one whose other headers can be trusted to mean what they say.
                raise AssertionRejected("the assertion's crit header must not be an empty list")
    return header


#: The text claims an assertion must carry, and the longest each may be (what is kept of them).
_TEXT_CLAIMS = {"iss": CLIENT_ID_LENGTH, "sub": MEMBER_REF_MAX_LENGTH, "jti": JTI_LENGTH}


def _check_claim_values(claims: Mapping[str, Any]) -> None:
    """Claims whose values could not be stored or compared are refused, not failed on later."""
    for name, limit in _TEXT_CLAIMS.items():
        value = claims[name]
        if not isinstance(value, str) or (problem := text_problem(value, limit, min_length=1)):
            reason = "must be a string" if not isinstance(value, str) else problem
            raise AssertionRejected(f"the assertion's {name} claim {reason}")
    for name in ("exp", "iat", "nbf"):
        value = claims.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise AssertionRejected(f"the assertion's {name} claim must be a whole number of seconds")


async def record_assertion_use(
    session: AsyncSession, *, issuer: str, jti: str, expires_at: datetime, now: datetime
) -> None:
    """Mark ``(issuer, jti)`` used; a second use is refused as a replay.

    The unique key decides, so two replicas receiving the same assertion at once cannot both
    accept it. Records of assertions that have expired anyway are dropped on the way.
    """
    await session.exec(delete(UsedAssertion).where(col(UsedAssertion.expires_at) < now))
    inserted = await session.exec(
        dialects.insert(session, UsedAssertion)
        .values(issuer=issuer, jti=jti, expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=["issuer", "jti"])
        .returning(col(UsedAssertion.jti))
    )
    if inserted.first() is None:
        raise AssertionRejected(
            "the assertion has been used before (replayed jti): sign a new one, with a new jti, for each token request"
        )


def expiry_of(claims: Mapping[str, Any]) -> datetime:
    return datetime.fromtimestamp(claims["exp"], UTC)


async def accept_assertion(
    session: AsyncSession,
    assertion: str,
    *,
    issuer: str,
    program_id: str | None,
    audiences: Sequence[str],
    now: datetime,
) -> Mapping[str, Any]:
    """The claims of a member assertion ``issuer`` (a partner's client, running ``program_id``)
    signed, once one of the program's registered keys verifies it and its ``jti`` is recorded
    as used. Both ways a partner vouches for a member go through here: the JWT-bearer grant
    (back channel) and the portal's sign-in (front channel, with its own audience)."""
    rows = (await assertion_keys(session, [program_id])).get(program_id, []) if program_id else []
    claims = verify_assertion(assertion, verification_keys(rows), audiences=audiences, now=now)
    await record_assertion_use(session, issuer=issuer, jti=claims["jti"], expires_at=expiry_of(claims), now=now)
    return claims
