"""Tables of members' portal sign-in: sign-ins under way (a partner has yet to send the member
back) and the portal sessions of signed-in members."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from exchange.db.types import UTCDateTime


class PortalSignIn(SQLModel, table=True):
    """A sign-in sent to a partner's sign-in page and not back yet.

    Only the SHA-256 of the ``state`` is kept: the browser holds the state in a cookie and the
    partner carries it there and back. A row is used once (deleted when the member returns) and
    lives a few minutes.
    """

    __tablename__ = "portal_sign_in"

    state_hash: str = Field(primary_key=True, max_length=64)
    program_id: str = Field(foreign_key="program.id", max_length=64, ondelete="CASCADE")
    #: The portal session (its id's SHA-256) that started the sign-in, if the member was signed
    #: in already: the partner's redirect back brings no strict cookie, so the row remembers it.
    session_hash: str | None = Field(default=None, max_length=64)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


class MemberWebSession(SQLModel, table=True):
    """A member signed in to the portal. Only the SHA-256 of the session id is stored.

    ``asserted_by`` lists the programs whose partner vouched for the member in this session
    (by a front-channel assertion): the programs whose points the session may spend
    (:mod:`exchange.members.authority`). Signing in through another partner as the same member
    adds its program.
    """

    __tablename__ = "member_web_session"

    id_hash: str = Field(primary_key=True, max_length=64)
    member_id: str = Field(foreign_key="member.id", max_length=40, index=True, ondelete="CASCADE")
    asserted_by: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=UTCDateTime)
    last_seen_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
