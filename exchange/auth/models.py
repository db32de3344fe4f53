"""Tables of the auth package: OAuth clients, signing keys, partners' assertion keys, and the
short-lived records that revocation, replay protection and rate limiting need."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Column
from sqlmodel import Field, SQLModel

from exchange.db.types import UTCDateTime
from exchange.keyring.models import StoredKey, key_table_constraints

#: The longest ``kid`` of a partner's assertion key, and ``jti`` of an assertion, kept.
KID_LENGTH = 128
JTI_LENGTH = 128
#: The longest OAuth client id.
CLIENT_ID_LENGTH = 64
#: The longest caller's address a failed authentication is counted against (an IPv6 /64
#: network in text is at most 43 characters).
ADDRESS_LENGTH = 64


class OAuthClient(SQLModel, table=True):
    """A partner's or staff tool's credentials. The secret is kept only as an Argon2id hash.

    ``secret_set_at`` is when the current secret was set by a reset (``None`` while the
    client has the secret it was made with): tokens issued before it, with the secret it
    replaced, are refused (:class:`~exchange.auth.tokens.TokenVerifier`).
    """

    __tablename__ = "oauth_client"
    __table_args__ = (
        CheckConstraint(
            "(role = 'partner') = (program_id IS NOT NULL)",
            name="oauth_client_partner_has_program",
        ),
    )

    client_id: str = Field(primary_key=True, max_length=CLIENT_ID_LENGTH)
    secret_hash: str = Field(max_length=255)
    role: str = Field(max_length=20)
    program_id: str | None = Field(default=None, foreign_key="program.id", max_length=64, index=True)
    scope: str = Field(max_length=255)
    #: The most the member tokens it obtains may carry (:mod:`exchange.auth.scopes`); empty
    #: for a staff client.
    member_scope: str = Field(max_length=255)
    created_at: datetime = Field(sa_type=UTCDateTime)
    secret_set_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PartnerAssertionKey(SQLModel, table=True):
    """A public key a partner signs member assertions with (several, for their rotation). A
    removed key stays, ``removed_at`` set and no longer accepted, so that a retried removal
    answers the key it removed; registering its kid again makes it a live key anew."""

    __tablename__ = "partner_assertion_key"

    program_id: str = Field(foreign_key="program.id", primary_key=True, max_length=64, ondelete="CASCADE")
    kid: str = Field(primary_key=True, max_length=KID_LENGTH)
    public_jwk: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_type=UTCDateTime)
    removed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SigningKey(StoredKey, table=True):
    """A key the exchange signs access tokens with (:mod:`exchange.auth.keys`).

    A ``retired`` key is published until ``publish_until``, by when every token it signed has
    expired.
    """

    __tablename__ = "signing_key"
    __table_args__ = key_table_constraints("signing_key")

    publish_until: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RevokedToken(SQLModel, table=True):
    """An access token revoked before its expiry (RFC 7009); kept until it would expire."""

    __tablename__ = "revoked_token"

    jti: str = Field(primary_key=True, max_length=64)
    client_id: str = Field(max_length=64)
    revoked_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


class RevokedClient(SQLModel, table=True):
    """When a client was last deleted (revoked), kept after its row is gone: a client made again
    under the same id is another client, and the tokens issued to the one deleted (member tokens
    it obtained too) stay refused (:class:`~exchange.auth.tokens.TokenVerifier`)."""

    __tablename__ = "revoked_client"

    client_id: str = Field(primary_key=True, max_length=CLIENT_ID_LENGTH)
    revoked_at: datetime = Field(sa_type=UTCDateTime)


class UsedAssertion(SQLModel, table=True):
    """A member assertion already exchanged for a token: its ``jti`` cannot be replayed."""

    __tablename__ = "used_assertion"

    issuer: str = Field(primary_key=True, max_length=64)
    jti: str = Field(primary_key=True, max_length=JTI_LENGTH)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


class ClientAuthFailure(SQLModel, table=True):
    """Failed authentications of one client id from one caller's address in the current
    window (rate limiting, :mod:`exchange.auth.ratelimit`).

    Kept in the database, not in process memory, so that every gateway replica counts the
    same attempts.
    """

    __tablename__ = "client_auth_failure"

    client_id: str = Field(primary_key=True, max_length=64)
    address: str = Field(primary_key=True, max_length=ADDRESS_LENGTH)
    window_started_at: datetime = Field(sa_type=UTCDateTime, index=True)
    failures: int
