"""JWT access tokens (RFC 9068): what they claim, how they are signed and verified.

A token is self-contained: verifying it needs the issuer's public key (cached in process)
and one query that looks its ``jti`` up among revoked tokens, its key among published ones,
its client among clients (and when that client's secret was last reset) and, a member's, the
account it was asserted on among linked ones. Claims beyond
RFC 9068's are ``role``; for partners, ``program_id`` (their tenant); for members,
``asserted_by`` (the program whose partner's assertion the token was issued on), so a
request's principal is known without another query. The two program claims are distinct on
purpose: no tenant rule reading ``program_id`` can ever take a member token for its partner's.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from authlib.oauth2.rfc9068.claims import JWTAccessTokenClaims
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import RSAKey
from sqlalchemy import bindparam, exists
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.auth.errors import InvalidAccessToken
from exchange.auth.keys import ALGORITHM, SigningKeys, is_published
from exchange.auth.models import OAuthClient, RevokedClient, RevokedToken, SigningKey
from exchange.auth.principal import Principal
from exchange.auth.scopes import InvalidScope, Role, Scope, StoredScopes, parse_scopes, scope_text
from exchange.clock import Clock
from exchange.db.database import Database
from exchange.db.direct import loaded, width
from exchange.members.models import LinkedAccount, Member, MemberView

#: RFC 9068's media type for JWT access tokens, in the ``typ`` header. Requiring it keeps any
#: other JWT the exchange signs (a settlement statement, say) from passing as a token.
TOKEN_TYPE = "at+jwt"
#: Allowance for clocks that disagree a little between the exchange's replicas.
LEEWAY_SECONDS = 30
#: Also what a token of another exchange (another demo's, one from before ``make clean``) meets.
NOT_SIGNED_BY_A_PUBLISHED_KEY = (
    "the token is not signed by a published key of this exchange: request a new token from this exchange"
)
#: Why a token that was good is no longer, and what to do (the demo's ready member tokens
#: expire after EXCHANGE_ACCESS_TOKEN_LIFETIME; "the token has expired" alone left callers stuck).
EXPIRED = "the token has expired: request a new token"
REVOKED = "the token has been revoked: request a new token"
#: A new token of that client cannot be had: the next step is another client.
CLIENT_REVOKED = (
    "the client this token was issued to has been revoked: request a token with another client's credentials "
    "(a partner creates a client on its console's Clients and keys page, or asks the exchange's operator for one)"
)


def unlinked_since(program_id: str) -> str:
    """Why a member token no longer stands once the member unlinked the account it was issued on."""
    return (
        f"the member has unlinked their account at {program_id}, on whose partner's word this token was issued: "
        "the token ended with the link (once the member links it again, the partner asserts them anew)"
    )


#: What to do about a token that was never whole: most often a shell variable holding an error
#: answer's ``access_token`` (``jq -r`` prints ``null``) or a token cut short when pasted.
SEND_IT_WHOLE = "send the access_token that /oauth/token answered, whole"
NOT_A_JWT = (
    f"the token is not a JWT: {SEND_IT_WHOLE} (a token of null means that request was refused: its "
    "error_description says why)"
)


def access_token_claims(
    *,
    issuer: str,
    audience: str,
    client_id: str,
    role: Role,
    scopes: frozenset[Scope],
    subject: str,
    now: datetime,
    lifetime: timedelta,
    program_id: str | None = None,
    asserted_by: str | None = None,
) -> dict[str, Any]:
    """The claims of a new access token: RFC 9068's, plus ``role``, and ``program_id`` (a
    partner's) or ``asserted_by`` (a member's)."""
    issued_at = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": issued_at + int(lifetime.total_seconds()),
        "iat": issued_at,
        "jti": secrets.token_urlsafe(16),
        "client_id": client_id,
        "scope": scope_text(scopes),
        "role": role.value,
    }
    if program_id is not None:
        claims["program_id"] = program_id
    if asserted_by is not None:
        claims["asserted_by"] = asserted_by
    return claims


def sign_access_token(claims: Mapping[str, Any], key: RSAKey) -> str:
    header = {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": key.kid}
    return jwt.encode(header, dict(claims), key, algorithms=[ALGORITHM])


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """The caller a verified token names; a token whose claims do not add up is refused."""
    try:
        role = Role(claims["role"])
        scopes = parse_scopes(str(claims.get("scope", "")))
    except (KeyError, ValueError, InvalidScope):
        raise InvalidAccessToken("the token's role or scope is not one this exchange issues") from None
    program_id = claims.get("program_id")
    if (role is Role.PARTNER) != isinstance(program_id, str):
        raise InvalidAccessToken("the token's program claim does not match its role")
    asserted_by = claims.get("asserted_by")
    if role is Role.MEMBER and not (isinstance(asserted_by, str) and asserted_by):
        raise InvalidAccessToken(
            "the member token does not name the program that asserted it (asserted_by; it was issued "
            "before tokens carried it): request a new token"
        )
    if role is not Role.MEMBER and asserted_by is not None:
        raise InvalidAccessToken("only member tokens carry asserted_by")
    return Principal(
        role=role,
        subject=claims["sub"],
        client_id=claims["client_id"],
        scopes=scopes,
        token_id=claims["jti"],
        expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        program_id=program_id,
        member_id=claims["sub"] if role is Role.MEMBER else None,
        asserted_by=asserted_by,
    )


@dataclass(frozen=True)
class VerifiedToken:
    claims: Mapping[str, Any]
    principal: Principal
    #: The ``kid`` of the key that signed it.
    key_id: str


#: Why a claim does not do, and, where a token of this exchange's own would, that it helps.
_CLAIM_PROBLEMS = {
    "iss": "the token was issued by another issuer: request a token from this exchange",
    "aud": "the token is meant for another audience: request a token from this exchange",
    "nbf": "the token is not valid yet",
    "iat": "the token was issued in the future",
}


#: Whether token ``jti`` is revoked, whether key ``kid`` is published at ``now``, the scopes
#: the client it was issued to holds now (null: it no longer exists; a refusal names them) and
#: whether that client's secret was set after the token was issued, and whether a client of
#: that id was revoked after it was issued (a client made again under the id since is another
#: client); built once per kind of scopes, ``scope`` for the client's own tokens and
#: ``member_scope`` for member tokens.
#:
#: ``iat`` has whole seconds and ``secret_set_at`` (and ``revoked_at``) does not. A token is
#: refused when ``iat < floor(secret_set_at)``, i.e. when it was issued in a second wholly
#: before the one the secret was set in: a token issued with the new secret, even in the same
#: second as the reset, is never refused, at the price of letting a token issued with the old
#: secret in that same second live on. For whole seconds ``iat < floor(t)`` is ``t >= iat + 1``, which the
#: query asks without truncating a time in SQL (``issued_second_ended`` is ``iat + 1``).
def _standing(scopes: Any) -> Any:
    return sa.select(  # five columns: more than sqlmodel's select is typed for
        exists().where(col(RevokedToken.jti) == bindparam("jti")),
        exists().where(col(SigningKey.kid) == bindparam("kid"), is_published(bindparam("now"))),  # type: ignore[arg-type]
        select(scopes).where(col(OAuthClient.client_id) == bindparam("client_id")).scalar_subquery(),
        exists().where(
            col(OAuthClient.client_id) == bindparam("client_id"),
            col(OAuthClient.secret_set_at) >= bindparam("issued_second_ended"),
        ),
        exists().where(
            col(RevokedClient.client_id) == bindparam("client_id"),
            col(RevokedClient.revoked_at) >= bindparam("issued_second_ended"),
        ),
    )


_STANDING = _standing(OAuthClient.scope)
_MEMBER_STANDING_ITSELF = _standing(OAuthClient.member_scope).subquery("standing")
_STANDING_COLUMNS = len(_STANDING.selected_columns)
#: Where a row of ``_MEMBER_STANDING`` has its account's columns; the member's come before.
_ACCOUNT_COLUMNS = _STANDING_COLUMNS + width(Member)
#: A member token's standing, with the member and their linked accounts: one row per account
#: (one, with no account, for a member without any or gone). The accounts answer a sixth check,
#: whether the member's account at the program whose partner asserted them is still linked;
#: and they are the member's view that the request's own reads of the member (``me``) answer from.
_MEMBER_STANDING: Any = (  # a row: ``_standing``'s five columns, the member's, one account's
    sa.select(_MEMBER_STANDING_ITSELF, Member, LinkedAccount)
    .select_from(_MEMBER_STANDING_ITSELF)
    .outerjoin(Member, col(Member.id) == bindparam("member_id"))
    .outerjoin(LinkedAccount, col(LinkedAccount.member_id) == col(Member.id))
    .order_by(col(LinkedAccount.program_id))
)


def _scopes_in_standing(standing: Sequence[Any]) -> StoredScopes:
    """The most the client's tokens may carry now, from a token's standing (the five columns of
    ``_standing``); :class:`InvalidAccessToken` if the standing refuses the token."""
    is_revoked, key_published, client_scopes, secret_reset, client_revoked = standing
    if is_revoked:
        raise InvalidAccessToken(REVOKED)
    if not key_published:
        raise InvalidAccessToken(NOT_SIGNED_BY_A_PUBLISHED_KEY)
    if client_scopes is None or client_revoked:
        raise InvalidAccessToken(CLIENT_REVOKED)
    if secret_reset:
        raise InvalidAccessToken(
            "the secret of the client this token was issued to has been changed since: request a new token"
        )
    return StoredScopes(client_scopes)  # parsed only if a refusal names them


def _asserting_account_linked(principal: Principal, accounts: Sequence[LinkedAccount], linked_by: datetime) -> bool:
    """Whether the member's account at the program whose partner asserted them is linked, by a
    link made before the token was issued (``linked_by``: the end of its second, and the clocks'
    leeway). Unlinking the account ends the token, as it ends that partner's view of the member;
    linking it again later does not bring the token back."""
    return any(account.program_id == principal.asserted_by and account.linked_at < linked_by for account in accounts)


class TokenVerifier:
    """Checks a bearer token: signature by a published key, RFC 9068 claims, revocation."""

    #: Tokens whose signature and claims were checked, kept so a client's next requests with
    #: the same token skip the signature check; expiry, revocation and that the signing key
    #: is still published are checked every time.
    VERIFIED_CACHE_SIZE = 10_000

    def __init__(self, keys: SigningKeys, db: Database, *, issuer: str, audience: str, clock: Clock) -> None:
        self._keys = keys
        self._db = db
        self._issuer = issuer
        self._audience = audience
        self._clock = clock
        self._verified: OrderedDict[str, tuple[VerifiedToken, int]] = OrderedDict()

    async def verify(self, token: str, session: AsyncSession | None = None) -> VerifiedToken:
        """The token's claims and principal, or :class:`InvalidAccessToken` saying why not.

        Database reads go through ``session`` when the caller is inside a unit of work.
        """
        cached = self._verified.get(token)
        if cached is not None:
            verified, expires = cached
            if self._clock.now().timestamp() > expires + LEEWAY_SECONDS:
                del self._verified[token]
                raise InvalidAccessToken(EXPIRED)
            self._verified.move_to_end(token)
        else:
            verified = await self._verify_signed(token, session)
            self._verified[token] = (verified, int(verified.claims["exp"]))
            while len(self._verified) > self.VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
        return replace(verified, principal=await self._check_standing(verified, session))

    async def _check_standing(self, verified: VerifiedToken, session: AsyncSession | None) -> Principal:
        """Refuse a token that has been revoked, whose signing key has been withdrawn (retired
        past its ``publish_until``, or removed), whose client has been deleted (revoked in
        the console or the CLI: its tokens, and the member tokens it obtained, end with it, and
        stay ended when a client is made again under its id),
        or whose client's secret was reset after it was issued (it may have been issued with a
        leaked secret; the member tokens the client obtained end too), or, a member's, whose
        account at the program that asserted them has been unlinked since. One query, on every
        request, so each holds at once on every replica: neither the verified-token cache nor
        the process's copy of the keys (re-read every minute) lets such a token through.

        Returns the token's principal with what the query read: the most the client's tokens
        of this kind may carry now (:attr:`~exchange.auth.principal.Principal.client_scopes`)
        and, a member's, their view (:attr:`~exchange.auth.principal.Principal.member_view`).

        Read through ``session`` inside a unit of work, else on its own (:meth:`Database.read`
        says how)."""
        principal = verified.principal
        issued_second_ended = datetime.fromtimestamp(int(verified.claims["iat"]) + 1, UTC)
        params = {
            "jti": principal.token_id,
            "kid": verified.key_id,
            "now": self._clock.now(),
            "client_id": principal.client_id,
            "issued_second_ended": issued_second_ended,
        }
        if principal.role is not Role.MEMBER:
            (standing,) = await self._db.read(_STANDING, params, session)
            return replace(principal, client_scopes=_scopes_in_standing(standing))
        rows = await self._db.read(_MEMBER_STANDING, params | {"member_id": principal.member_id}, session)
        client_scopes = _scopes_in_standing(rows[0][:_STANDING_COLUMNS])
        member_columns = rows[0][_STANDING_COLUMNS:_ACCOUNT_COLUMNS]
        member = None if member_columns[0] is None else loaded(Member, member_columns)
        accounts = [loaded(LinkedAccount, row[_ACCOUNT_COLUMNS:]) for row in rows if row[_ACCOUNT_COLUMNS] is not None]
        if member is None or not _asserting_account_linked(
            principal, accounts, issued_second_ended + timedelta(seconds=LEEWAY_SECONDS)
        ):
            raise InvalidAccessToken(unlinked_since(str(principal.asserted_by)))
        return replace(principal, client_scopes=client_scopes, member_view=MemberView(member, accounts))

    async def _verify_signed(self, token: str, session: AsyncSession | None) -> VerifiedToken:
        """Signature by a published key, header and RFC 9068 claims (not revocation)."""
        header = _unverified_header(token)
        if str(header.get("alg")).lower() == "none":
            raise InvalidAccessToken("unsigned tokens (alg none) are refused")
        if header.get("alg") != ALGORITHM:
            raise InvalidAccessToken(f"the token is not signed with {ALGORITHM}")
        if header.get("typ") != TOKEN_TYPE:
            raise InvalidAccessToken(f"not an access token (typ must be {TOKEN_TYPE})")
        kid = header.get("kid")
        key = await self._keys.public_key(kid, session) if isinstance(kid, str) else None
        if key is None or not isinstance(kid, str):
            raise InvalidAccessToken(NOT_SIGNED_BY_A_PUBLISHED_KEY)
        try:
            decoded = jwt.decode(token, key, algorithms=[ALGORITHM])
        except BadSignatureError:
            raise InvalidAccessToken(f"the token's signature does not verify: {SEND_IT_WHOLE}, unchanged") from None
        except (JoseError, ValueError):
            raise InvalidAccessToken(f"the token is malformed: {SEND_IT_WHOLE}") from None
        self._check_claims(decoded)
        return VerifiedToken(claims=decoded.claims, principal=principal_from_claims(decoded.claims), key_id=kid)

    def _check_claims(self, decoded: jwt.Token) -> None:
        claims = JWTAccessTokenClaims(
            decoded.claims,
            decoded.header,
            {
                "iss": {"essential": True, "value": self._issuer},
                "aud": {"essential": True, "value": self._audience},
                "sub": {"essential": True},
                "exp": {"essential": True},
                "iat": {"essential": True},
                "jti": {"essential": True},
                "client_id": {"essential": True},
            },
        )
        try:
            claims.validate(now=int(self._clock.now().timestamp()), leeway=LEEWAY_SECONDS)
        except ExpiredTokenError:
            raise InvalidAccessToken(EXPIRED) from None
        except MissingClaimError as error:
            raise InvalidAccessToken(f"the token lacks a claim: {error.description}") from None
        except InvalidClaimError as error:
            raise InvalidAccessToken(
                _CLAIM_PROBLEMS.get(error.claim, f"the token's {error.claim} claim is invalid")
            ) from None


def _unverified_header(token: str) -> dict[str, Any]:
    try:
        return dict(jws.extract_compact(token.encode()).headers())
    except (JoseError, ValueError, UnicodeError):
        raise InvalidAccessToken(NOT_A_JWT) from None
