"""The sandbox's member sign-in page: the partner's half of the portal's sign-in flow.

The portal sends a member's browser here with ``state``, ``redirect_uri`` and ``ui_locales`` (the
language of the portal's page, which this page speaks too: English or Traditional Chinese). The page asks for
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


@dataclass(frozen=True)
class Words:
    """What the page says to a member, in one language (its BCP 47 ``tag``)."""

    tag: str
    sign_in: str
    intro: str
    member: str
    pin: str
    cancel: str
    mismatch: str
    back: str


ENGLISH = Words(
    "en",
    sign_in="Sign in",
    intro="Sign in to go to the coalition points exchange.",
    member="Member id",
    pin="PIN",
    cancel="Cancel",
    mismatch="That member id and PIN do not match.",
    back="Continue to the coalition points exchange",
)
CHINESE = Words(
    "zh-TW",
    sign_in="登入",
    intro="登入後前往聯盟點數交換平台。",
    member="會員編號",
    pin="PIN 碼",
    cancel="取消",
    mismatch="會員編號與 PIN 碼不符。",
    back="繼續前往聯盟點數交換平台",
)


def words_for(ui_locales: str) -> Words:
    """The page's words in the first language of ``ui_locales`` (space-separated BCP 47 tags,
    most preferred first, as OpenID Connect writes them) that it speaks; else English."""
    for tag in ui_locales.lower().split():
        if tag == "zh" or tag.startswith(("zh-tw", "zh-hant")):
            return CHINESE
        if tag == "en" or tag.startswith("en-"):
            return ENGLISH
    return ENGLISH


def _page(program_name: str, body: str, words: Words = ENGLISH, status_code: int = 200) -> HTMLResponse:
    html = f"""<!doctype html>
<html lang="{words.tag}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(words.sign_in)} · {escape(program_name)}</title></head>
<body><main><h1>{escape(program_name)}</h1>{body}</main></body></html>"""
    return HTMLResponse(html, status_code=status_code, headers={"cache-control": "no-store", "x-frame-options": "DENY"})


def _form(state: str, redirect_uri: str, words: Words, member_ref: str = "", problem: str = "") -> str:
    alert = f'<p role="alert" id="problem">{escape(problem)}</p>' if problem else ""
    return f"""<p>{escape(words.intro)}</p>{alert}
<form method="post" action="{PATH}">
<input type="hidden" name="state" value="{escape(state)}">
<input type="hidden" name="redirect_uri" value="{escape(redirect_uri)}">
<input type="hidden" name="ui_locales" value="{words.tag}">
<p><label for="member">{escape(words.member)}</label><br><input id="member" name="member" value="{escape(member_ref)}"
 autocomplete="username" required></p>
<p><label for="pin">{escape(words.pin)}</label><br><input id="pin" name="pin" type="password" autocomplete="current-password"
 required></p>
<p><button type="submit" name="action" value="sign-in">{escape(words.sign_in)}</button>
<button type="submit" name="action" value="cancel" formnovalidate>{escape(words.cancel)}</button></p>
</form>"""


#: Submits the form back to the exchange at once (a browser without scripts shows its button).
_AUTO_SUBMIT = "document.getElementById('back').submit();"


def _back(program_name: str, redirect_uri: str, words: Words, **params: str) -> Response:
    """Send the browser back by POSTing ``params`` to ``redirect_uri`` (as OpenID Connect's
    ``form_post`` response mode does): an assertion never travels in a URL, where logs,
    history and ``Referer`` headers would keep it."""
    fields = "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">' for name, value in params.items()
    )
    body = f"""<form id="back" method="post" action="{escape(redirect_uri)}">{fields}
<p><button type="submit">{escape(words.back)}</button></p></form>
<script>{_AUTO_SUBMIT}</script>"""
    return _page(program_name, body, words)


def routes(*, points: PointsSystem, sign_in: MemberSignIn) -> list[Route]:
    name = points.program.name

    def refused(reason: str) -> HTMLResponse:
        # Said to whoever set the sandbox up (it is not registered, or the link is broken).
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
        words = words_for(request.query_params.get("ui_locales", ""))
        return _page(name, _form(state, redirect_uri, words), words)

    async def submit(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=8)
        values = {key: form.get(key) for key in ("state", "redirect_uri", "ui_locales", "member", "pin", "action")}
        text = {key: value[:MAX_FIELD] if isinstance(value, str) else "" for key, value in values.items()}
        state, redirect_uri, words = text["state"], text["redirect_uri"], words_for(text["ui_locales"])
        if (problem := check(state, redirect_uri)) is not None:
            return refused(problem)
        if text["action"] == "cancel":
            return _back(name, redirect_uri, words, state=state, error="access_denied")
        try:
            verified = (await points.verify(text["member"], text["pin"])).verified
        except Refusal:
            verified = False
        if not verified:
            body = _form(state, redirect_uri, words, text["member"], words.mismatch)
            return _page(name, body, words, status_code=401)
        assertion = sign_in.assertion(text["member"], redirect_uri, state)
        return _back(name, redirect_uri, words, state=state, assertion=assertion)

    return [Route(PATH, show, methods=["GET"]), Route(PATH, submit, methods=["POST"])]
