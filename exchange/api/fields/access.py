"""Who is calling, OAuth clients, and the keys partners sign member assertions with."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.inputs import Text
from exchange.api.permissions import (
    AUTHENTICATED,
    Rule,
    argument,
    authorize,
    own_program,
    requires,
)
from exchange.api.types.auth import AssertionKey, OAuthClient, Viewer
from exchange.auth.assertions import MAX_ASSERTION_KEYS, PUBLIC_KEY_LENGTH
from exchange.auth.models import CLIENT_ID_LENGTH, KID_LENGTH
from exchange.auth.scopes import Scope
from exchange.retention import REMOVED_GRACE
from exchange.services.access import CLIENTS_PAGE_MAX

ProgramId = Annotated[
    strawberry.ID, strawberry.argument(description="The program whose partner signs with the key (a partner's own).")
]

#: A partner manages its own program; admins manage any.
MANAGE_PROGRAM: Rule = requires(Scope.PARTNER_WRITE) & own_program(argument("program_id")) | requires(Scope.ADMIN_WRITE)


@strawberry.type
class AccessQueries:
    @strawberry.field(description="Who the access token speaks for.", extensions=[authorize(AUTHENTICATED)])
    def viewer(self, info: Info[Context, None]) -> Viewer | None:
        return Viewer.from_principal(info.context.caller())

    @strawberry.field(
        description="Every OAuth client by `clientId`, `first` of them after the `clientId` `after` (admins only).",
        extensions=[authorize(requires(Scope.ADMIN_READ))],
    )
    async def clients(
        self,
        info: Info[Context, None],
        first: Annotated[
            int,
            strawberry.argument(description=f"How many, from 1 to {CLIENTS_PAGE_MAX} (else `BAD_USER_INPUT`)."),
        ] = 100,
        after: Annotated[
            str | None,
            Text(CLIENT_ID_LENGTH),
            strawberry.argument(description="The last `clientId` of the previous page; null: from the first."),
        ] = None,
    ) -> list[OAuthClient] | None:
        rows = await info.context.services.access.clients(first=first, after=after)
        return [OAuthClient.from_row(row) for row in rows]


@strawberry.type
class AccessMutations:
    @strawberry.mutation(
        description="Register a public key (a JWK as JSON, or PEM) that the program's partner "
        "signs member assertions with: RSA (2048 bits or more), P-256 or Ed25519. Its `kid` is "
        "the JWK's own, else its RFC 7638 thumbprint; registering a kid again replaces that key. A "
        f"program holds at most {MAX_ASSERTION_KEYS} keys: another kid is `LIMIT_EXCEEDED` "
        "(`extensions.limit` assertion_keys) until one is removed.",
        extensions=[authorize(MANAGE_PROGRAM)],
    )
    async def register_assertion_key(
        self,
        info: Info[Context, None],
        program_id: ProgramId,
        public_key: Annotated[
            str,
            Text(PUBLIC_KEY_LENGTH),
            strawberry.argument(description="The public key: a JWK as JSON, or PEM (never the private key)."),
        ],
    ) -> AssertionKey | None:
        row = await info.context.services.access.register_assertion_key(str(program_id), public_key)
        return AssertionKey.from_row(row)

    @strawberry.mutation(
        description="Stop accepting assertions signed with the key `kid`; returns the key removed (`removedAt`). "
        f"Removing it again (a retry) answers the key as the first removal left it, for {REMOVED_GRACE.days} days (then the "
        "removed key is deleted, and a retry is `NOT_FOUND`); a kid the program never had a key by is `NOT_FOUND`. Registering the kid again makes it accepted anew.",
        extensions=[authorize(MANAGE_PROGRAM)],
    )
    async def remove_assertion_key(
        self,
        info: Info[Context, None],
        program_id: ProgramId,
        kid: Annotated[str, Text(KID_LENGTH), strawberry.argument(description="The key's id (`AssertionKey.kid`).")],
    ) -> AssertionKey | None:
        row = await info.context.services.access.remove_assertion_key(str(program_id), kid)
        return AssertionKey.from_row(row)
