"""The sandbox's OAuth 2.0 side: a client-credentials token endpoint and the bearer check.

Tokens are random strings kept in memory with their expiry: a restart of the sandbox forgets
them, as a partner rotating its keys would, so the exchange meets a 401 and fetches a new one.
The one client is the exchange, with the id and secret of the program's declaration.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, unquote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from exchange.clock import Clock

SCOPE = "points"


@dataclass
class TokenIssuer:
    client_id: str
    client_secret: str
    ttl: timedelta
    clock: Clock
    _tokens: dict[str, datetime] = field(default_factory=dict)

    def _client(self, request: Request, form: dict[str, str]) -> tuple[str, str] | None:
        """Client id and secret from HTTP Basic (RFC 6749 2.3.1, form-encoded) or the form."""
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(encoded).decode().partition(":")
            except ValueError:
                return None
            return unquote_plus(user), unquote_plus(password)
        if "client_id" in form and "client_secret" in form:
            return form["client_id"], form["client_secret"]
        return None

    async def token_endpoint(self, request: Request) -> Response:
        # RFC 6749 token requests are application/x-www-form-urlencoded; nothing else is read.
        form = dict(parse_qsl((await request.body()).decode(errors="replace")))
        client = self._client(request, form)
        # Compared as bytes: compare_digest raises TypeError for text that is not ASCII.
        if client is None or not (
            secrets.compare_digest(client[0].encode(), self.client_id.encode())
            and secrets.compare_digest(client[1].encode(), self.client_secret.encode())
        ):
            return _oauth_error(401, "invalid_client", {"www-authenticate": 'Basic realm="sandbox"'})
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type")
        if not set(form.get("scope", SCOPE).split()) <= {SCOPE}:
            return _oauth_error(400, "invalid_scope")
        now = self.clock.now()
        self._tokens = {token: until for token, until in self._tokens.items() if until > now}
        token = secrets.token_urlsafe(32)
        self._tokens[token] = now + self.ttl
        return JSONResponse(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": int(self.ttl.total_seconds()),
                "scope": SCOPE,
            },
            headers={"cache-control": "no-store"},
        )

    def valid(self, token: str) -> bool:
        until = self._tokens.get(token)
        return until is not None and until > self.clock.now()

    def revoke_all(self) -> int:
        count = len(self._tokens)
        self._tokens.clear()
        return count


def _oauth_error(status: int, error: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": error}, status_code=status, headers=headers)


class BearerTokenMiddleware:
    """Every contract path needs a valid token; the token endpoint and admin API do not."""

    def __init__(self, app: ASGIApp, *, issuer: TokenIssuer, open_paths: tuple[str, ...]) -> None:
        self.app = app
        self.issuer = issuer
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.open_paths):
            await self.app(scope, receive, send)
            return
        scheme, _, token = Request(scope).headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self.issuer.valid(token):
            response = JSONResponse(
                {"title": "A valid access token is needed", "status": 401, "code": "INVALID_TOKEN"},
                status_code=401,
                media_type="application/problem+json",
                headers={"www-authenticate": 'Bearer error="invalid_token"'},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
