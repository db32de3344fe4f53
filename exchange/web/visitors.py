"""Who is asking for a page: their session (if signed in), language and CSRF token."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection
from starlette.types import Scope

from exchange.auth.principal import Principal
from exchange.services.people import SignedIn
from exchange.web.i18n import Language

_SCOPE_KEY = "exchange.web.visitor"


@dataclass(frozen=True)
class Visitor:
    """``signed_in`` is the live session the cookie names, if any. Before sign-in, forms carry
    ``anonymous_csrf_token``, which a cookie of its own holds (the sign-in form is protected too:
    nobody can be signed in to someone else's account by a page of another site)."""

    language: Language
    signed_in: SignedIn | None
    session_id: str | None
    anonymous_csrf_token: str

    @property
    def principal(self) -> Principal | None:
        return self.signed_in.principal if self.signed_in is not None else None

    @property
    def csrf_token(self) -> str:
        return self.signed_in.csrf_token if self.signed_in is not None else self.anonymous_csrf_token


def visitor_of(connection: HTTPConnection) -> Visitor:
    visitor = connection.scope.get(_SCOPE_KEY)
    assert isinstance(visitor, Visitor), "the web middleware did not run"
    return visitor


def attach_visitor(scope: Scope, visitor: Visitor) -> None:
    scope[_SCOPE_KEY] = visitor
