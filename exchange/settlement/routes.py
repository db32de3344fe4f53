"""``GET /.well-known/statement-keys.json``: the JWK Set that verifies settlement statements.

A document of its own, not the token JWKS (``/.well-known/jwks.json``): a resource server that
trusts the token JWKS never holds a statement key, so a JWT signed with one can never pass for
an access token there, whether or not it checks ``typ``. This document holds every statement
key whose statements are still kept, retired ones included, and a new key before it signs.
Verifiers may cache it for :data:`STATEMENT_KEYS_MAX_AGE_SECONDS`; a statement naming a kid the
cached copy lacks (signed after a rotation for a compromised key) means: fetch it again.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from exchange.settlement.keys import STATEMENT_KEYS_MAX_AGE_SECONDS, StatementKeys

STATEMENT_KEYS_PATH = "/.well-known/statement-keys.json"


def statement_keys_route(keys: StatementKeys) -> Route:
    async def statement_keys(_: Request) -> Response:
        return JSONResponse(
            await keys.jwks(),
            media_type="application/jwk-set+json",
            headers={"Cache-Control": f"public, max-age={STATEMENT_KEYS_MAX_AGE_SECONDS}"},
        )

    return Route(STATEMENT_KEYS_PATH, statement_keys, methods=["GET"])
