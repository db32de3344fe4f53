"""Members as themselves and as their partners see them, and the consents they give."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.inputs import OptionalIdempotencyKey
from exchange.api.permissions import authorize, requires
from exchange.api.types.members import DebitConsent, Member
from exchange.auth.scopes import Scope
from exchange.errors import BadUserInput
from exchange.pricing.limits import MAX_POINTS


@strawberry.type
class MemberQueries:
    @strawberry.field(
        description="The member behind a member token.",
        extensions=[authorize(requires(Scope.MEMBER_READ))],
    )
    async def me(self, info: Info[Context, None]) -> Member | None:
        return Member.of(await info.context.services.members.me(info.context.caller()))

    @strawberry.field(
        description="A member who has an account at the caller's program (partners only); "
        "`FORBIDDEN` for any other id, existing or not.",
        extensions=[authorize(requires(Scope.PARTNER_READ))],
    )
    async def member(
        self,
        info: Info[Context, None],
        id: Annotated[strawberry.ID, strawberry.argument(description="The member's exchange id (`Member.id`).")],
    ) -> Member | None:
        return Member.of(await info.context.services.members.member_for_partner(info.context.caller(), str(id)))


@strawberry.type
class MemberMutations:
    @strawberry.mutation(
        description="Consent to one debit of exactly `points` of `programId`'s points by a request made "
        "under another partner's token (converting out of `programId`, or paying with it): only "
        "with a member token `programId`'s partner asserted (else `AUTHORITY_REQUIRED`). The "
        "consent lives `EXCHANGE_DEBIT_CONSENT_SECONDS` (300 by default) and is used once; it is given only "
        "while the member's account at `programId` is linked (else `BAD_USER_INPUT`), and unlinking that "
        "account revokes it (`AUTHORITY_REQUIRED`, reason `CONSENT_REVOKED`, when presented after). The "
        "coalition point's points take none (`BAD_USER_INPUT`): the exchange holds them, and a "
        "token with the scope `member:coalition` spends them. Give an `idempotencyKey` to make a retry safe: "
        "the same key with the same `programId` and `points` answers the consent the first request gave, as it "
        "stands (its id again; used, expired or revoked, it pays for nothing more), and no second one is given; "
        "the same key with another request is `IDEMPOTENCY_CONFLICT` (`extensions.field` idempotencyKey). A key "
        "is the member's own, and is free again once its consent, unused, is forgotten a day after it expired. "
        "Without a key, a request sent twice gives two consents.",
        extensions=[authorize(requires(Scope.MEMBER_WRITE))],
    )
    async def authorize_debit(
        self,
        info: Info[Context, None],
        points: Annotated[
            int,
            strawberry.argument(
                description=f"Exactly the points the debit will take (a quote's `pointsIn`), 1 to {MAX_POINTS:,}."
            ),
        ],
        program: Annotated[
            strawberry.ID | None,
            strawberry.argument(
                description="The old name of `programId`.",
                deprecation_reason="Use `programId`: the same program, named as every other operation names one.",
            ),
        ] = None,
        program_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(
                description="The program to be debited: the token's `assertedBy` (required; `program` is its old "
                "name, and both together are `BAD_USER_INPUT`)."
            ),
        ] = None,
        idempotency_key: Annotated[
            OptionalIdempotencyKey,
            strawberry.argument(description="Names this request, so that sending it again returns its consent."),
        ] = None,
    ) -> DebitConsent | None:
        if program is not None and program_id is not None:
            raise BadUserInput("give programId only: program is its old name", field="programId")
        if program is None and program_id is None:
            raise BadUserInput("programId is required: the program to be debited", field="programId")
        field, named = ("program", program) if program is not None else ("programId", program_id)
        granted = await info.context.services.members.authorize_debit(
            info.context.caller(), str(named), points, field=field, key=idempotency_key
        )
        return DebitConsent.of(granted)
