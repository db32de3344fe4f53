"""What a request to the OAuth endpoints presents to identify its client, read before anything
is verified.

Two rules rest on it. RFC 6749 §2.3.1: a client uses one authentication method per request,
so HTTP Basic next to form credentials is refused. And the failure rate limit counts a failed
request against every client the request names, however it names them (the Basic user name,
the form ``client_id``, a member assertion's ``iss``), so a decoy name in one place cannot draw
the count away from the client actually tried in another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from authlib.oauth2.rfc6749.util import extract_basic_authorization
from joserfc import jws
from joserfc.errors import JoseError
from starlette.datastructures import Headers

from exchange.text import json_value


@dataclass(frozen=True)
class PresentedClient:
    """The client identification a request carries. Empty form values count as absent
    (RFC 6749 §3.1: a parameter sent without a value is treated as omitted)."""

    basic: bool
    basic_client_id: str | None
    form_client_id: str | None
    form_secret: bool
    assertion_issuer: str | None

    @classmethod
    def read(cls, headers: Headers, form: Mapping[str, str]) -> PresentedClient:
        """``headers`` must hold no undecodable Basic credentials (checked beforehand)."""
        scheme = headers.get("authorization", "").split(None, 1)
        username, _ = extract_basic_authorization(headers)
        return cls(
            basic=bool(scheme) and scheme[0].lower() == "basic",
            basic_client_id=str(username) if username else None,
            form_client_id=form.get("client_id") or None,
            form_secret=bool(form.get("client_secret")),
            assertion_issuer=unverified_issuer(form.get("assertion") or ""),
        )

    @property
    def form_credentials(self) -> bool:
        return self.form_client_id is not None or self.form_secret

    @property
    def client_credentials(self) -> bool:
        """Whether the request tries to authenticate its client (Basic or the form)."""
        return self.basic or self.form_credentials

    @property
    def mixed(self) -> bool:
        """More than one authentication method: an ``Authorization: Basic`` header (whatever
        it holds) next to a form ``client_id`` or ``client_secret``."""
        return self.basic and self.form_credentials

    @property
    def client_ids(self) -> frozenset[str]:
        """Every client id the request names, wherever it names one."""
        named = (self.basic_client_id, self.form_client_id, self.assertion_issuer)
        return frozenset(client_id for client_id in named if client_id)


def repeated_authorization(headers: Headers) -> bool:
    """Whether the request sends more than one ``Authorization`` header. Starlette, Authlib and
    a proxy in front may each read a different one, so a request that sends two names no one
    caller: like a repeated form parameter (RFC 6749 §3.2) or a second way of sending a token
    (RFC 6750 §2), it is ``invalid_request`` wherever credentials are read."""
    return len(headers.getlist("authorization")) > 1


def unverified_issuer(assertion: str) -> str | None:
    """The ``iss`` a JWT claims, unverified (``None`` if it is no JWT or names none)."""
    if not assertion:
        return None
    try:
        claims = json_value(jws.extract_compact(assertion.encode()).payload)
    except (JoseError, ValueError):
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) and issuer else None
