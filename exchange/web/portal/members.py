"""What every portal page shares: who may open it, and the member a page acts for."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import replace
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import Request

from exchange.auth.principal import Principal
from exchange.auth.scopes import Role, Scope
from exchange.errors import NotFound
from exchange.programs.models import Program, ProgramKind
from exchange.services.people import SignedIn
from exchange.web.access import Endpoint, NotAllowed, Page, requires, roles
from exchange.web.visitors import visitor_of

T = TypeVar("T")

PORTAL_PATH = "/portal"
HOME_PATH = f"{PORTAL_PATH}/"
SIGN_IN_PATH = f"{PORTAL_PATH}/sign-in"
LAYOUT = "portal/layout.html"

#: Every page behind sign-in: a member's, as a member token's fields are.
MEMBERS = roles(Role.MEMBER)
#: Pages that change the member's data (convert, redeem, link, ask for a status match), as the
#: GraphQL fields that do: a session whose partners' clients let members' tokens only read
#: (``member:read``) is refused them with :class:`ReadOnlySession`.
MEMBER_WRITERS = MEMBERS & requires(Scope.MEMBER_WRITE)


class ReadOnlySession(NotAllowed):
    """The partners the member signed in through let their members only look: the page says
    so, and that a sign-in through a partner that allows it would do."""

    reason = "read-only"


def writing(path: str, endpoint: Endpoint, **options: Any) -> Page:
    """A page of :data:`MEMBER_WRITERS`, refusing a read-only session with the page that says why."""
    return Page(path, endpoint, rule=MEMBER_WRITERS, refusal=ReadOnlySession, **options)


def member_session(request: Request) -> SignedIn:
    """The signed-in member's session (the page's rule admitted only members)."""
    signed_in = visitor_of(request).signed_in
    assert signed_in is not None and signed_in.principal.role is Role.MEMBER
    return signed_in


def member(request: Request) -> Principal:
    return member_session(request).principal


def may_spend(request: Request, program: Program) -> bool:
    """Whether this session spends ``program``'s points as they stand, without another sign-in:
    a partner's program if it vouches for the member in the session with ``member:write``
    (:meth:`SignedIn.may_spend`); the coalition point, which the exchange holds for the member
    and no partner vouches for, if the session holds ``member:coalition``
    (:func:`exchange.services.portal.member_principal`), as the debit's own check
    (:func:`exchange.members.authority.require_authority`) decides."""
    signed_in = member_session(request)
    if program.kind == ProgramKind.COALITION:
        return Scope.MEMBER_COALITION in signed_in.principal.scopes
    return signed_in.may_spend(program.id)


def acting_for(request: Request, program_id: str) -> Principal:
    """The member's principal for spending ``program_id``'s points: asserted by that program,
    with the scopes its client lets its members' tokens hold, if it vouched for the member in
    this session; else asserted by none. The services refuse a debit without the program's
    authority, or under scopes without ``member:write``, with ``AUTHORITY_REQUIRED`` (issue
    12's rule, applied where GraphQL applies it)."""
    signed_in = member_session(request)
    if program_id not in signed_in.asserted_by:
        return replace(signed_in.principal, asserted_by=None)
    return replace(signed_in.principal, asserted_by=program_id, scopes=signed_in.program_scopes[program_id])


async def found(lookup: Awaitable[T]) -> T:
    """What ``lookup`` finds; a thing that is not found (or not the member's, which is the
    same to them) is the page that says there is nothing at this address."""
    try:
        return await lookup
    except NotFound:
        raise HTTPException(404) from None
