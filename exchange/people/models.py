"""Tables of the people package: people's accounts and their signed-in sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, Text
from sqlmodel import Field, SQLModel

from exchange.db.types import UTCDateTime


class Person(SQLModel, table=True):
    """Someone who signs in to a console. A partner's staff member names the program.

    The password is kept only as an Argon2id hash; the TOTP secret, if the person has one, as a
    JWE under ``EXCHANGE_KEY_ENCRYPTION_SECRET``. ``totp_last_step`` is the time step of the last
    code accepted, so that a code cannot be used twice.
    """

    __tablename__ = "person"
    __table_args__ = (
        CheckConstraint("role IN ('settlement', 'admin', 'partner')", name="person_role"),
        CheckConstraint("(role = 'partner') = (program_id IS NOT NULL)", name="person_partner_has_program"),
    )

    username: str = Field(primary_key=True, max_length=48)
    role: str = Field(max_length=20)
    program_id: str | None = Field(default=None, foreign_key="program.id", max_length=64, index=True)
    password_hash: str = Field(max_length=255)
    encrypted_totp_secret: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    totp_last_step: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    created_at: datetime = Field(sa_type=UTCDateTime)


class WebSession(SQLModel, table=True):
    """A signed-in browser. Only the SHA-256 of the session id is stored, so the table alone
    cannot be replayed as cookies.

    The role and program are the person's when they signed in; the session ends at
    ``expires_at`` (the absolute timeout) or when it has not been seen for the idle timeout.
    ``csrf_token`` is the synchronizer token every form and htmx request of the session carries.
    """

    __tablename__ = "web_session"

    id_hash: str = Field(primary_key=True, max_length=64)
    username: str = Field(foreign_key="person.username", max_length=48, index=True, ondelete="CASCADE")
    role: str = Field(max_length=20)
    program_id: str | None = Field(default=None, max_length=64)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=UTCDateTime)
    last_seen_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
