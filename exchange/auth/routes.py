"""The authorization server's HTTP endpoints, for Starlette.

``POST /oauth/token``, ``POST /oauth/introspect`` (RFC 7662), ``POST /oauth/revoke``
(RFC 7009), ``GET /.well-known/oauth-authorization-server`` (RFC 8414) and
``GET /.well-known/jwks.json``. Each POST reads its form on the event loop, checks every
client the request names against the failure rate limit (for the caller's address, counting
attempts under way as failures to come, see :mod:`exchange.auth.ratelimit`), and the address
against its limit over every client id, waits for its
turn among every replica's attempts for those clients from that address and checks the limit
again, refuses a request that authenticates its client more than one way, runs Authlib in a
worker thread (see :mod:`exchange.auth.server`), and counts a failed client authentication,
in the same unit of work, against every client the request named, from that address, and
once against the address.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749 import InvalidRequestError
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from exchange.auth import ratelimit
from exchange.auth.errors import oauth_description
from exchange.auth.keys import SigningKeys
from exchange.auth.models import CLIENT_ID_LENGTH
from exchange.auth.presented import PresentedClient, repeated_authorization
from exchange.auth.scopes import Scope
from exchange.auth.server import (
    CLIENT_AUTH_METHODS,
    CLIENT_CREDENTIALS,
    JWT_BEARER,
    ExchangeAuthorizationServer,
    FormRequest,
    RequestWork,
    error_response,
    invalid_client_response,
    malformed_basic_authorization,
)
from exchange.clock import Clock
from exchange.db.database import Database
from exchange.text import ascii_digits, text_problem

METADATA_PATH = "/.well-known/oauth-authorization-server"
JWKS_PATH = "/.well-known/jwks.json"
TOKEN_PATH = "/oauth/token"
INTROSPECTION_PATH = "/oauth/introspect"
REVOCATION_PATH = "/oauth/revoke"
#: How long partners and resource servers may cache the JWKS: shorter than a key's overlap.
JWKS_MAX_AGE_SECONDS = 300
#: OAuth requests are a few parameters; a larger body is refused unread.
MAX_FORM_BYTES = 16_384
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


def server_metadata(issuer: str) -> dict[str, Any]:
    """The RFC 8414 document. There is no authorization endpoint, hence no response types."""
    return {
        "issuer": issuer,
        "token_endpoint": f"{issuer}{TOKEN_PATH}",
        "jwks_uri": f"{issuer}{JWKS_PATH}",
        "introspection_endpoint": f"{issuer}{INTROSPECTION_PATH}",
        "revocation_endpoint": f"{issuer}{REVOCATION_PATH}",
        "grant_types_supported": [CLIENT_CREDENTIALS, JWT_BEARER],
        "response_types_supported": [],
        "scopes_supported": [scope.value for scope in Scope],
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
    }


class OAuthEndpoints:
    def __init__(
        self,
        server: ExchangeAuthorizationServer,
        *,
        db: Database,
        keys: SigningKeys,
        clock: Clock,
        failure_limit: ratelimit.FailureLimit,
        address_limit: ratelimit.FailureLimit,
    ) -> None:
        """``failure_limit`` holds per client id and address, ``address_limit`` per address over
        every client id (:func:`ratelimit.every_id`)."""
        self._server = server
        self._db = db
        self._keys = keys
        self._clock = clock
        self._limit = failure_limit
        self._address_limit = address_limit
        self._attempts = ratelimit.AttemptsUnderWay()

    def routes(self) -> list[Route]:
        return [
            Route(TOKEN_PATH, self.token, methods=["POST"]),
            Route(INTROSPECTION_PATH, self.introspect, methods=["POST"]),
            Route(REVOCATION_PATH, self.revoke, methods=["POST"]),
            Route(METADATA_PATH, self.metadata, methods=["GET"]),
            Route(JWKS_PATH, self.jwks, methods=["GET"]),
        ]

    async def token(self, request: Request) -> Response:
        return await self._respond(request, self._server.token_response)

    async def introspect(self, request: Request) -> Response:
        return await self._respond(request, self._server.introspection_response)

    async def revoke(self, request: Request) -> Response:
        return await self._respond(request, self._server.revocation_response)

    async def metadata(self, _: Request) -> Response:
        return JSONResponse(server_metadata(self._server.issuer))

    async def jwks(self, _: Request) -> Response:
        return JSONResponse(
            await self._keys.jwks(),
            media_type="application/jwk-set+json",
            headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE_SECONDS}"},
        )

    async def _respond(self, request: Request, action: Callable[[FormRequest], Response]) -> Response:
        form = await read_form(request)
        if isinstance(form, Response):
            return form
        if repeated_authorization(request.headers):
            return error_response(InvalidRequestError(description="send one Authorization header, not several"))
        if malformed_basic_authorization(request.headers):
            return invalid_client_response()
        oauth_request = FormRequest(method=request.method, url=str(request.url), headers=request.headers, form=form)
        address = ratelimit.caller_address(request.client.host if request.client else None)
        presented = PresentedClient.read(request.headers, form)
        named = presented.client_ids
        if any(text_problem(client_id, CLIENT_ID_LENGTH) for client_id in named):
            return invalid_client_response("no client has that id")

        async def standing() -> ratelimit.Standing:
            async with self._db.transaction() as session:
                return await self._standing(session, named, address, self._clock.now())

        limits = {(client_id, address): self._limit.failures for client_id in named}
        pooled = {ratelimit.every_id(address): self._address_limit.failures}
        async with self._attempts.attempt(limits, standing, pooled=pooled) as admitted:
            if admitted.retry_after is not None:
                return too_many_failures(admitted.retry_after)
            async with self._db.transaction() as session:
                # Every replica's attempts for these clients from this address take turns here,
                # and this one reads the failures again once it has its turn.
                await ratelimit.take_turn(session, set(limits))
                now = self._clock.now()
                turn = await self._standing(session, named, address, now)
                if turn.retry_after is not None:
                    return too_many_failures(turn.retry_after)
                if presented.mixed:
                    response, failed = more_than_one_method(), True
                else:
                    work = RequestWork(session=session, loop=asyncio.get_running_loop(), now=now)
                    response = await asyncio.to_thread(self._server.handle, work, action, oauth_request)
                    failed = work.authentication_failed
                if failed and named:
                    await ratelimit.record_failures(session, named, address, self._limit, now)
                    await ratelimit.record_failure(session, ratelimit.EVERY_ID, address, self._address_limit, now)
        return response

    async def _standing(
        self, session: AsyncSession, named: frozenset[str], address: str, now: datetime
    ) -> ratelimit.Standing:
        """How the clients ``named`` stand from ``address``, and the address over every client."""
        clients = await ratelimit.standing(session, named, address, self._limit, now)
        return clients | await ratelimit.standing(session, {ratelimit.EVERY_ID}, address, self._address_limit, now)


async def read_form(request: Request) -> dict[str, str] | Response:
    """The request's parameters (RFC 6749 §3.2: form-encoded, none repeated, none in the
    address), or the error."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != FORM_MEDIA_TYPE:
        return error_response(InvalidRequestError(description=f"send the parameters as {FORM_MEDIA_TYPE}"))
    length = ascii_digits(request.headers.get("content-length") or "0")
    if length is None or length > MAX_FORM_BYTES:
        return error_response(InvalidRequestError(description="the request body is too large"))
    body = b""
    async for chunk in request.stream():  # counted as it arrives: a chunked body is capped too
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return error_response(InvalidRequestError(description="the request body is too large"))
    try:
        # Strict: a percent-encoded byte sequence that is not UTF-8 is refused, not replaced.
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return error_response(InvalidRequestError(description="the request body is not UTF-8"))
    for name, value in pairs:
        if problem := text_problem(name, MAX_FORM_BYTES) or text_problem(value, MAX_FORM_BYTES):
            return error_response(InvalidRequestError(description=f"a parameter {problem}"))
    form = dict(pairs)
    if len(form) != len(pairs):
        repeated = sorted(name for name, times in Counter(name for name, _ in pairs).items() if times > 1)
        return error_response(
            InvalidRequestError(description=oauth_description(f"{', '.join(repeated)} is sent more than once"))
        )
    # Authlib reads the body only: a parameter in the address would be ignored (a scope meant to
    # narrow a token would not), and a proxy or a log reading the address would see another
    # request than the exchange does.
    if in_address := sorted(request.query_params.keys()):
        return error_response(
            InvalidRequestError(
                description=oauth_description(
                    f"{', '.join(in_address)} is sent in the address: send every parameter once, in the body"
                )
            )
        )
    return form


def more_than_one_method() -> Response:
    """RFC 6749 §2.3.1 forbids a second authentication method in one request, and §5.2 names
    the error for it: ``invalid_request`` ("utilizes more than one mechanism for
    authenticating the client"), not ``invalid_client``, since no credential was judged."""
    return error_response(
        InvalidRequestError(
            description="authenticate the client one way only: HTTP Basic, or client_id and "
            "client_secret in the form, never both"
        )
    )


def too_many_failures(retry_after: int) -> Response:
    return JSONResponse(
        {
            "error": "temporarily_unavailable",
            "error_description": (
                "too many failed authentications from this address, for this client or for every client "
                f"together; try again in {retry_after} s"
            ),
        },
        status_code=429,
        headers={"Retry-After": str(retry_after), "Cache-Control": "no-store"},
    )
