"""The table of members' portal sessions (a sign-in under way is kept by the browser:
:mod:`exchange.people.portal_sign_in`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from exchange.db.types import UTCDateTime


class MemberWebSession(SQLModel, table=True):
    """A member signed in to the portal. Only the SHA-256 of the session id is stored.

    ``vouchers`` holds, for each program whose partner vouched for the member in this session
    (by a front-channel assertion), the client in that assertion's ``iss`` and when it vouched
    (:func:`exchange.people.portal_sign_in.voucher`): ``{program_id: {"client_id": ..., "at":
    ISO 8601}}``. Signing in through another partner as the same member adds its program. The
    client's scopes are not copied: what the session may do through a program is read from that
    client on every request, as a member token's is (:func:`exchange.people.portal_sign_in.live_authority`).
    """

    __tablename__ = "member_web_session"

    id_hash: str = Field(primary_key=True, max_length=64)
    member_id: str = Field(foreign_key="member.id", max_length=40, index=True, ondelete="CASCADE")
    vouchers: dict[str, dict[str, str]] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=UTCDateTime)
    last_seen_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
