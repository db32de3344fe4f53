"""Executing quotes as conversions, and reading them back."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.inputs import IdempotencyKey, Text
from exchange.api.permissions import authorize, requires
from exchange.api.types.conversions import Conversion
from exchange.api.types.pages import After, Page
from exchange.auth.scopes import Scope
from exchange.conversions.queries import MAX_PAGE
from exchange.members.consents import CONSENT_ID_LENGTH


@strawberry.type
class ConversionQueries:
    @strawberry.field(
        description="One conversion: a member's own (others are `NOT_FOUND`), or any for settlement staff.",
        extensions=[authorize(requires(Scope.MEMBER_READ, Scope.SETTLEMENT_READ))],
    )
    async def conversion(
        self,
        info: Info[Context, None],
        id: Annotated[strawberry.ID, strawberry.argument(description="The conversion's id (`Conversion.id`).")],
    ) -> Conversion | None:
        row = await info.context.services.conversions.conversion(info.context.caller(), str(id))
        return Conversion.from_row(row, await info.context.currency())

    @strawberry.field(
        description="Your conversions, newest first: `first` of them after the cursor `after`.",
        extensions=[authorize(requires(Scope.MEMBER_READ))],
    )
    async def conversions(
        self,
        info: Info[Context, None],
        first: Annotated[
            int, strawberry.argument(description=f"How many, from 1 to {MAX_PAGE} (else `BAD_USER_INPUT`).")
        ] = 20,
        after: After = None,
    ) -> Page[Conversion] | None:
        page = await info.context.services.conversions.conversions(info.context.caller(), first=first, after=after)
        currency = await info.context.currency()
        return Page.of(page, lambda row: Conversion.from_row(row, currency))


@strawberry.type
class ConversionMutations:
    @strawberry.mutation(
        description="Convert points as a quote fixed them. `idempotencyKey` is yours to choose: "
        "sending the same key again returns the same conversion (the same key with another "
        "quote is `IDEMPOTENCY_CONFLICT`). The answer is final (COMPLETED, FAILED, REVERSED) "
        "unless a partner's answer is late, the exchange met an unexpected error driving it (logged), "
        "or the key came again while its first request was "
        "still running (on this gateway or another): then it is PENDING and finishes on its "
        "own; ask `conversion(id)`. Above the source program's `hold_above_points` it is HELD for staff "
        "review until `heldUntil`, nothing moved yet. The source program's points are spent only under its authority: a "
        "member token its partner asserted, or a `consent` given through it (`authorizeDebit`) "
        "for exactly the quote's `pointsIn`; else `AUTHORITY_REQUIRED` (`extensions.program`, "
        "`extensions.reason`) and nothing happens. Coalition points are the exchange's: they are "
        "spent under a token with the scope `member:coalition`. Also refused, nothing recorded: "
        "an expired quote (`QUOTE_EXPIRED`), one with a tier bonus whose member's tiers changed since it was "
        "priced (an account unlinked, a status match ended: `QUOTE_EXPIRED`, `extensions.reason` `TIERS_CHANGED`), "
        "one already executed under another key "
        "(`BAD_USER_INPUT`, `extensions.conversionId`), a limit used up since the quote "
        "(`LIMIT_EXCEEDED`), and the source program's risk gates (`COOLING_PERIOD`, "
        "`NAME_MISMATCH`, `VELOCITY_EXCEEDED`).",
        extensions=[authorize(requires(Scope.MEMBER_WRITE))],
    )
    async def execute_conversion(
        self,
        info: Info[Context, None],
        quote_id: Annotated[
            strawberry.ID,
            strawberry.argument(description="A quote of yours from `createQuote`, not expired and not yet executed."),
        ],
        idempotency_key: IdempotencyKey,
        consent: Annotated[
            str | None,
            Text(CONSENT_ID_LENGTH),
            strawberry.argument(
                description="The id of a consent to debit the source program (`authorizeDebit`), "
                "needed when another program's partner asserted your token; used once."
            ),
        ] = None,
    ) -> Conversion | None:
        row = await info.context.services.conversions.execute(
            info.context.caller(), str(quote_id), idempotency_key, consent=consent
        )
        return Conversion.from_row(row, await info.context.currency())
