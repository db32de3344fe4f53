"""Who is calling: the principal behind a verified access token."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, field
from datetime import datetime

from exchange.auth.scopes import Role, Scope
from exchange.members.models import MemberView


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller, as its access token says; resolvers and services receive it.

    ``program_id`` is set for partners (a partner runs exactly one program: its tenant id is
    the program id); ``member_id`` is set for members (the exchange's member id, the token's
    ``sub``). ``client_id`` is the OAuth client the token was issued to: for a member, the
    partner client that vouched for them, and ``asserted_by`` that partner's program: points
    held there are spent under its authority, points held elsewhere only with a consent
    (:mod:`exchange.members.authority`). It is never a tenant: tenant rules read ``program_id``.
    ``client_scopes`` are the most that client's tokens of this kind may carry (its scopes, or
    for a member token its member scopes) as the client stands now, read with the token's
    standing but parsed only when a refusal names them (:class:`~exchange.auth.scopes.StoredScopes`);
    ``None`` where they were not read (a console session).
    ``member_view``, for a member token, is the member and their linked accounts as read with
    the token's standing (in the same statement): the request's own view of the member, which
    spares the member's reads (``me``) a second query. ``None`` where it was not read (a
    portal session).
    """

    role: Role
    subject: str
    client_id: str
    scopes: frozenset[Scope]
    token_id: str
    expires_at: datetime
    program_id: str | None = None
    member_id: str | None = None
    asserted_by: str | None = None
    client_scopes: Set[Scope] | None = None
    member_view: MemberView | None = field(default=None, compare=False, repr=False)

    def has_scope(self, scope: Scope) -> bool:
        return scope in self.scopes
