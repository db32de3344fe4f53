"""The sandbox's member sign-in page: the partner's half of the portal's sign-in flow.

The portal sends a member's browser here with ``state`` and ``redirect_uri``. The page asks for
the member id and PIN (the sandbox member's verification value), then sends the browser back to
``redirect_uri`` (a form it POSTs there) with ``state`` and a signed member assertion (RFC 7523: ``iss`` the partner's
client at the exchange, ``sub`` the member id, ``aud`` the return URL, ``nonce`` the state), or
with ``error=access_denied`` when the member cancels. Only return URLs registered for the
exchange are followed (no open redirect). The contract is partners/CONTRACT.md, "Signing
members in to the portal".

Until the exchange's client id and return URLs are registered (admin API ``PUT
/_sandbox/member-sign-in``) the page refuses everyone. The signing key is made when the
server is created and kept across restarts; its public half is at ``GET
/_sandbox/assertion-key``, to register at the exchange.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from html import escape

from joserfc import jwt
from joserfc.jwk import ECKey
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from exchange.clock import Clock
from exchange.sandbox.points import PointsSystem, Refusal

PATH = "/member-sign-in"
#: How long an assertion the page signs is valid: long enough to come back, no longer.
ASSERTION_LIFETIME = timedelta(minutes=5)
#: A form of the page is three short fields; anything longer is refused unread.
MAX_FIELD = 256


@dataclass
class MemberSignIn:
    """The page's settings: the key it signs with, and who it signs for."""

    clock: Clock
    key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", auto_kid=True))
    #: The partner's client id at the exchange (the assertion's ``iss``).
    client_id: str | None = None
    #: The exchange's return URLs, exactly as registered.
    return_urls: frozenset[str] = frozenset()

    def assertion(self, member_ref: str, audience: str, nonce: str) -> str:
        assert self.client_id is not None
        now = self.clock.now()
        claims = {
            "iss": self.client_id,
            "sub": member_ref,
            "aud": audience,
            "iat": int(now.timestamp()),
            "exp": int((now + ASSERTION_LIFETIME).timestamp()),
            "jti": secrets.token_urlsafe(16),
            "nonce": nonce,
        }
        return jwt.encode({"alg": "ES256", "kid": self.key.kid}, claims, self.key, algorithms=["ES256"])


def _page(program_name: str, body: str, status_code: int = 200) -> HTMLResponse:
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · {escape(program_name)}</title></head>
<body><main><h1>{escape(program_name)}</h1>{body}</main></body></html>"""
    return HTMLResponse(html, status_code=status_code, headers={"cache-control": "no-store", "x-frame-options": "DENY"})


def _form(state: str, redirect_uri: str, member_ref: str = "", problem: str = "") -> str:
    alert = f'<p role="alert" id="problem">{escape(problem)}</p>' if problem else ""
    return f"""<p>Sign in to go to the coalition points exchange.</p>{alert}
<form method="post" action="{PATH}">
<input type="hidden" name="state" value="{escape(state)}">
<input type="hidden" name="redirect_uri" value="{escape(redirect_uri)}">
<p><label for="member">Member id</label><br><input id="member" name="member" value="{escape(member_ref)}"
 autocomplete="username" required></p>
<p><label for="pin">PIN</label><br><input id="pin" name="pin" type="password" autocomplete="current-password"
 required></p>
<p><button type="submit" name="action" value="sign-in">Sign in</button>
<button type="submit" name="action" value="cancel" formnovalidate>Cancel</button></p>
</form>"""


#: Submits the form back to the exchange at once (a browser without scripts shows its button).
_AUTO_SUBMIT = "document.getElementById('back').submit();"


def _back(program_name: str, redirect_uri: str, **params: str) -> Response:
    """Send the browser back by POSTing ``params`` to ``redirect_uri`` (as OpenID Connect's
    ``form_post`` response mode does): an assertion never travels in a URL, where logs,
    history and ``Referer`` headers would keep it."""
    fields = "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">' for name, value in params.items()
    )
    body = f"""<form id="back" method="post" action="{escape(redirect_uri)}">{fields}
<p><button type="submit">Continue to the coalition points exchange</button></p></form>
<script>{_AUTO_SUBMIT}</script>"""
    return _page(program_name, body)


def routes(*, points: PointsSystem, sign_in: MemberSignIn) -> list[Route]:
    name = points.program.name

    def refused(reason: str) -> HTMLResponse:
        return _page(name, f'<p role="alert">{escape(reason)}</p>', status_code=400)

    def check(state: str, redirect_uri: str) -> str | None:
        """Why the request cannot go on (nothing is redirected anywhere then), or None."""
        if sign_in.client_id is None:
            return "Member sign-in is not set up for the exchange yet."
        if redirect_uri not in sign_in.return_urls:
            return "This return address is not registered: the sign-in cannot continue."
        if not state or len(state) > MAX_FIELD:
            return "The sign-in request has no valid state."
        return None

    async def show(request: Request) -> Response:
        state = request.query_params.get("state", "")
        redirect_uri = request.query_params.get("redirect_uri", "")
        if (problem := check(state, redirect_uri)) is not None:
            return refused(problem)
        return _page(name, _form(state, redirect_uri))

    async def submit(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=8)
        values = {key: form.get(key) for key in ("state", "redirect_uri", "member", "pin", "action")}
        text = {key: value[:MAX_FIELD] if isinstance(value, str) else "" for key, value in values.items()}
        state, redirect_uri = text["state"], text["redirect_uri"]
        if (problem := check(state, redirect_uri)) is not None:
            return refused(problem)
        if text["action"] == "cancel":
            return _back(name, redirect_uri, state=state, error="access_denied")
        try:
            verified = (await points.verify(text["member"], text["pin"])).verified
        except Refusal:
            verified = False
        if not verified:
            body = _form(state, redirect_uri, text["member"], "That member id and PIN do not match.")
            return _page(name, body, status_code=401)
        return _back(name, redirect_uri, state=state, assertion=sign_in.assertion(text["member"], redirect_uri, state))

    return [Route(PATH, show, methods=["GET"]), Route(PATH, submit, methods=["POST"])]
