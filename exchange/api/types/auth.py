"""GraphQL types of the caller, OAuth clients and partners' assertion keys."""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum

import strawberry

from exchange.api.permissions import (
    AUTHENTICATED,
    authorize_fields,
    own_program,
    requires,
    source,
)
from exchange.auth.models import OAuthClient as OAuthClientRow
from exchange.auth.models import PartnerAssertionKey as AssertionKeyRow
from exchange.auth.principal import Principal
from exchange.auth.scopes import Role as RoleValue
from exchange.auth.scopes import Scope, parse_scopes, scope_text


@strawberry.enum(description="Who a token speaks for.")
class Role(Enum):
    PARTNER = strawberry.enum_value(
        RoleValue.PARTNER.value,
        description="A partner company's client: its own program's data (`partner:read`, `partner:write`).",
    )
    MEMBER = strawberry.enum_value(
        RoleValue.MEMBER.value,
        description="A member, through a token a partner obtained by asserting them: their own accounts and operations.",
    )
    SETTLEMENT = strawberry.enum_value(
        RoleValue.SETTLEMENT.value,
        description="Settlement staff's tool: periods, every partner's statements, reconciliation, risk review.",
    )
    ADMIN = strawberry.enum_value(RoleValue.ADMIN.value, description="An administrator's tool: programs and clients.")


@authorize_fields(AUTHENTICATED)
@strawberry.type(description="The caller, as its access token says.")
class Viewer:
    role: Role = strawberry.field(description="Whom the token speaks for.")
    subject: str = strawberry.field(description="The token's `sub`: a client id or a member id.")
    client_id: str = strawberry.field(description="The OAuth client the token was issued to.")
    program_id: strawberry.ID | None = strawberry.field(description="A partner's program.")
    member_id: strawberry.ID | None = strawberry.field(description="A member's exchange id.")
    asserted_by: strawberry.ID | None = strawberry.field(
        description="A member's token: the program whose partner asserted it, the only one whose "
        "points it spends without a consent (`authorizeDebit`)."
    )
    scopes: list[str] = strawberry.field(description="What the token allows.")
    expires_at: datetime = strawberry.field(
        description="When the token stops working: ask `/oauth/token` for a new one before then."
    )

    @classmethod
    def from_principal(cls, principal: Principal) -> Viewer:
        return cls(
            role=Role(principal.role.value),
            subject=principal.subject,
            client_id=principal.client_id,
            program_id=strawberry.ID(principal.program_id) if principal.program_id else None,
            member_id=strawberry.ID(principal.member_id) if principal.member_id else None,
            asserted_by=strawberry.ID(principal.asserted_by) if principal.asserted_by else None,
            scopes=scope_text(principal.scopes).split(),
            expires_at=principal.expires_at,
        )


@authorize_fields(requires(Scope.ADMIN_READ, Scope.ADMIN_WRITE))
@strawberry.type(description="An OAuth client of the exchange (its secret is never shown).")
class OAuthClient:
    client_id: str = strawberry.field(description="The id it authenticates with at `/oauth/token`.")
    role: Role = strawberry.field(description="Whom its tokens speak for.")
    program_id: strawberry.ID | None = strawberry.field(description="A partner's program.")
    scopes: list[str] = strawberry.field(description="The most its own tokens may carry.")
    member_scopes: list[str] = strawberry.field(
        description="The most the member tokens a partner's client obtains may carry (none for a staff client), "
        "and so what a member portal session it signed in may do through its program: with `member:read` only, "
        "look but not spend."
    )
    created_at: datetime = strawberry.field(description="When it was registered.")

    @classmethod
    def from_row(cls, row: OAuthClientRow) -> OAuthClient:
        return cls(
            client_id=row.client_id,
            role=Role(row.role),
            program_id=strawberry.ID(row.program_id) if row.program_id else None,
            scopes=scope_text(parse_scopes(row.scope)).split(),
            member_scopes=scope_text(parse_scopes(row.member_scope)).split(),
            created_at=row.created_at,
        )


@authorize_fields(
    requires(Scope.PARTNER_READ, Scope.PARTNER_WRITE) & own_program(source("program_id"))
    | requires(Scope.ADMIN_READ, Scope.ADMIN_WRITE)
)
@strawberry.type(description="A public key a partner signs member assertions with.")
class AssertionKey:
    kid: str = strawberry.field(description="Key id: assertions name it in their `kid` header.")
    key_type: str = strawberry.field(description="JWK key type: RSA, EC (P-256) or OKP (Ed25519).")
    public_jwk: str = strawberry.field(description="The public key as a JWK (JSON).")
    created_at: datetime = strawberry.field(description="When it was registered.")
    removed_at: datetime | None = strawberry.field(
        description="When `removeAssertionKey` removed it (no assertion it signs is accepted since); null: accepted."
    )
    program_id: strawberry.Private[str]

    @classmethod
    def from_row(cls, row: AssertionKeyRow) -> AssertionKey:
        return cls(
            kid=row.kid,
            key_type=str(row.public_jwk["kty"]),
            public_jwk=json.dumps(row.public_jwk, sort_keys=True),
            created_at=row.created_at,
            removed_at=row.removed_at,
            program_id=row.program_id,
        )
