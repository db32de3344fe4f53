"""The table of members' portal sessions (a sign-in under way is kept by the browser:
:mod:`exchange.people.portal_sign_in`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from exchange.db.types import UTCDateTime


class MemberWebSession(SQLModel, table=True):
    """A member signed in to the portal. Only the SHA-256 of the session id is stored.

    ``asserted_by`` lists the programs whose partner vouched for the member in this session
    (by a front-channel assertion): the programs whose points the session may spend
    (:mod:`exchange.members.authority`). Signing in through another partner as the same member
    adds its program. ``program_scopes`` holds, for each of them, the member scopes of the
    client whose assertion vouched (its OAuth form): what the session may do through that program
    is what the member tokens that client obtains may do (:mod:`exchange.services.portal`).
    """

    __tablename__ = "member_web_session"

    id_hash: str = Field(primary_key=True, max_length=64)
    member_id: str = Field(foreign_key="member.id", max_length=40, index=True, ondelete="CASCADE")
    asserted_by: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    program_scopes: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=UTCDateTime)
    last_seen_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
