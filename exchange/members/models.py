"""Tables of the members package: the exchange's members, their accounts at partners, and the
consents they give through one partner to debit points held there."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from exchange.db.types import UTCDateTime
from exchange.idempotency import IDEMPOTENCY_KEY_LENGTH

MEMBER_REF_MAX_LENGTH = 128


class LinkMethod(StrEnum):
    """How a linked account was established."""

    #: The partner vouched for the member with a signed assertion (RFC 7523).
    ASSERTION = "assertion"
    #: The member proved the account with a value the partner verified (``linkAccount``).
    VERIFIED = "verified"
    #: The exchange's own account for the member at the coalition point (``member_ref`` is the
    #: member's id): every member has one, from the moment both exist.
    COALITION = "coalition"


@dataclass(frozen=True, slots=True)
class ActivityMarkers:
    """A member's activity markers when read: ``balances`` (``member.activity``) moves when any
    of their sagas records a step or falls in doubt, ``tiers`` (``member.tier_activity``) when a
    status match finishes a run. A partner's answer cached under other markers is stale for balances, or for tiers."""

    balances: int
    tiers: int


class Member(SQLModel, table=True):
    """A person known to the exchange; ``id`` is what member tokens carry as ``sub``."""

    __tablename__ = "member"

    id: str = Field(primary_key=True, max_length=40)
    created_at: datetime = Field(sa_type=UTCDateTime)
    activity: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0"))
    """Moves whenever one of the member's sagas records a new step (``DONE``, or the step it
    stopped at, such as the credit after a debit applied) or falls in doubt: a trigger on each
    saga table moves it, in the transaction recording it (revision 0040). Unlinking an account
    moves it (and ``tier_activity``) too, in the unit of work that unlinks (``exchange.unlinking``):
    answers are cached by member and program, so one cached before would otherwise show for an
    account linked there next. Partner answers cached before it moved are stale
    (``exchange.federation.cache``)."""
    tier_activity: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0, server_default="0"))
    """Moves whenever one of the member's status matches finishes a run (a trigger on
    ``status_match``) and when an account is unlinked: tiers cached before it moved are stale.
    Conversions and redemptions change balances, not tiers, so they leave it."""

    @property
    def markers(self) -> ActivityMarkers:
        """Both activity markers, as the federated view's cache keys on them."""
        return ActivityMarkers(balances=self.activity, tiers=self.tier_activity)


@dataclass(frozen=True, slots=True)
class MemberView:
    """A member and their linked accounts, by program id, as one read found them."""

    member: Member
    accounts: Sequence[LinkedAccount]


class LinkedAccount(SQLModel, table=True):
    """A member's account at one partner's program: ``member_ref`` is their id there.

    A member has at most one account per program, and an account at a program belongs to
    one member.
    """

    __tablename__ = "linked_account"
    __table_args__ = (UniqueConstraint("program_id", "member_ref"),)

    member_id: str = Field(foreign_key="member.id", primary_key=True, max_length=40, ondelete="CASCADE")
    program_id: str = Field(foreign_key="program.id", primary_key=True, max_length=64)
    member_ref: str = Field(max_length=MEMBER_REF_MAX_LENGTH)
    linked_at: datetime = Field(sa_type=UTCDateTime)
    established_by: str = Field(max_length=20)
    holder_name: str | None = Field(
        default=None,
        max_length=200,
        description="The member's name as the partner reported it when the account was verified "
        "(null for an account a partner's assertion linked, or a partner that keeps no name).",
    )


class UnlinkedAccount(SQLModel, table=True):
    """A link the member removed (``unlinkAccount``): the link as it stood, and when it ended.

    Unlinking deletes the :class:`LinkedAccount` row, so that the account is free to be linked
    again (by this member or, once the partner vouches for another, by them); this row is what
    is left of it. It tells a repeated unlink that the account is unlinked already, and it is the
    record of which account the member held when. The sagas keep their own copy of the account
    they moved points in (``source_ref``, ``paying_ref``…), so history does not need the link.
    """

    __tablename__ = "unlinked_account"
    __table_args__ = (Index("ix_unlinked_account_member_program", "member_id", "program_id", "member_ref"),)

    id: str = Field(primary_key=True, max_length=36)
    member_id: str = Field(foreign_key="member.id", max_length=40, ondelete="CASCADE")
    program_id: str = Field(foreign_key="program.id", max_length=64)
    member_ref: str = Field(max_length=MEMBER_REF_MAX_LENGTH)
    linked_at: datetime = Field(sa_type=UTCDateTime)
    established_by: str = Field(max_length=20)
    holder_name: str | None = Field(default=None, max_length=200)
    unlinked_at: datetime = Field(sa_type=UTCDateTime)


class DebitConsent(SQLModel, table=True):
    """A member's consent, given through ``program_id``'s partner, to one debit of exactly
    ``points`` there by a request made under another partner's token.

    Only the SHA-256 of the consent's secret is kept (the secret is a random 256-bit value,
    shown once), and, for a consent given under the member's idempotency key, the secret sealed
    with the key-encryption secret, to show it again to that request sent again. It is used at most once (``used_at``, ``used_for`` names the conversion or
    redemption it paid for), never after ``expires_at``, and never once revoked (``revoked_at``:
    the member unlinked their account at ``program_id`` before using it).
    """

    __tablename__ = "debit_consent"
    __table_args__ = (Index("ix_debit_consent_member_key", "member_id", "idempotency_key", unique=True),)

    secret_hash: str = Field(primary_key=True, max_length=64)
    member_id: str = Field(foreign_key="member.id", max_length=40, ondelete="CASCADE", index=True)
    program_id: str = Field(foreign_key="program.id", max_length=64)
    points: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    used_for: str | None = Field(default=None, max_length=80)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    idempotency_key: str | None = Field(
        default=None,
        max_length=IDEMPOTENCY_KEY_LENGTH,
        description="The member's key for the request that gave it, if it gave one (unique per member).",
    )
    sealed_secret: str | None = Field(
        default=None,
        sa_column=Column(Text, nullable=True),
        description="With a key only: the secret, as a JWE, for the request sent again to show it again.",
    )
