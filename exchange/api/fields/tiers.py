"""Status matches: preview, request, the member's matches, and challenge progress from partners."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.inputs import OptionalIdempotencyKey, Text
from exchange.api.permissions import authorize, requires
from exchange.api.types.pages import After, Page, replaced_by_page
from exchange.api.types.tiers import StatusMatch, StatusMatchPreview
from exchange.auth.scopes import Scope
from exchange.programs.models import TIER_NAME_LENGTH
from exchange.services.matches import MAX_PAGE

FromProgram = Annotated[
    strawberry.ID, strawberry.argument(description="The program whose tier is matched; you must have linked it.")
]
ToProgram = Annotated[
    strawberry.ID, strawberry.argument(description="The program to match the tier into; you must have linked it.")
]
First = Annotated[int, strawberry.argument(description=f"How many, from 1 to {MAX_PAGE} (else `BAD_USER_INPUT`).")]


async def _matches(info: Info[Context, None], first: int, after: str | None) -> Page[StatusMatch]:
    page = await info.context.services.matches.matches(info.context.caller(), first=first, after=after)
    return Page.of(page, StatusMatch.from_row)


@strawberry.type
class TierQueries:
    @strawberry.field(
        description="What a status match from `fromProgram` into `toProgram` would give the member "
        "now, and why: both tiers are read live from the partners. A program you have not linked is "
        "`BAD_USER_INPUT` naming it.",
        extensions=[authorize(requires(Scope.MEMBER_READ))],
    )
    async def status_match_preview(
        self, info: Info[Context, None], from_program: FromProgram, to_program: ToProgram
    ) -> StatusMatchPreview | None:
        caller = info.context.caller()
        assessment = await info.context.services.matches.preview(caller, str(from_program), str(to_program))
        return StatusMatchPreview.of(str(caller.member_id), assessment)

    @strawberry.field(
        description="The member's status matches, newest first.",
        extensions=[authorize(requires(Scope.MEMBER_READ))],
        deprecation_reason=replaced_by_page("statusMatchPage"),
    )
    async def status_matches(self, info: Info[Context, None], first: First = 50) -> list[StatusMatch] | None:
        return (await _matches(info, first, None)).items

    @strawberry.field(
        description="The member's status matches, newest first: `first` of them after the cursor `after`.",
        extensions=[authorize(requires(Scope.MEMBER_READ))],
    )
    async def status_match_page(
        self, info: Info[Context, None], first: First = 50, after: After = None
    ) -> Page[StatusMatch] | None:
        return await _matches(info, first, after)


@strawberry.type
class TierMutations:
    @strawberry.mutation(
        description="Match the member's tier at `fromProgram` into `toProgram`: the source tier is "
        "verified live with its partner (`claimedTier`, if given, must not be above it: "
        "`TIER_NOT_VERIFIED`), the target's policy applied (`MATCH_NOT_GRANTED`), and the tier "
        "pushed to the target partner until the match expires. One match per member per target "
        "program per 12 months (`MATCH_TOO_SOON`, with `extensions.possibleAt`). Give an `idempotencyKey` "
        "to make a retry safe: the same key with the same `fromProgram`, `toProgram` and `claimedTier` "
        "returns the match the first request made, as it stands now (no partner asked again); the same key "
        "with another request is `IDEMPOTENCY_CONFLICT` (`extensions.field` idempotencyKey). Without a key, "
        "a request sent twice is refused the second time (`MATCH_TOO_SOON`).",
        extensions=[authorize(requires(Scope.MEMBER_WRITE))],
    )
    async def request_status_match(
        self,
        info: Info[Context, None],
        from_program: FromProgram,
        to_program: ToProgram,
        claimed_tier: Annotated[
            str | None,
            Text(TIER_NAME_LENGTH),
            strawberry.argument(
                description="The tier you say you hold at `fromProgram`; above the verified one is `TIER_NOT_VERIFIED`. "
                "Null: claim none."
            ),
        ] = None,
        idempotency_key: Annotated[
            OptionalIdempotencyKey,
            strawberry.argument(description="Names this request, so that sending it again returns its match."),
        ] = None,
    ) -> StatusMatch | None:
        row = await info.context.services.matches.request(
            info.context.caller(), str(from_program), str(to_program), claimed_tier, key=idempotency_key
        )
        return StatusMatch.from_row(row)

    @strawberry.mutation(
        description="The target program's partner reports points earned and activities done by a "
        "matched member towards the match's challenge; the report that meets it extends the tier. "
        "The totals stop at 2147483647. `NOT_FOUND` for a match into another program. Give an "
        "`idempotencyKey` to make a retry safe: the same key with the same figures answers the match as it "
        "stands, counting nothing twice; with other figures it is `IDEMPOTENCY_CONFLICT` (`extensions.field` "
        "idempotencyKey). Without a key, a report sent twice counts twice.",
        extensions=[authorize(requires(Scope.PARTNER_WRITE))],
    )
    async def record_status_match_activity(
        self,
        info: Info[Context, None],
        match_id: Annotated[
            strawberry.ID, strawberry.argument(description="An ACTIVE, unexpired match into your program.")
        ],
        points: Annotated[
            int, strawberry.argument(description="Points the member earned since the last report (0 or more).")
        ] = 0,
        activities: Annotated[
            int,
            strawberry.argument(
                description="Qualifying activities done since the last report (0 or more; not both 0 with `points`)."
            ),
        ] = 0,
        idempotency_key: Annotated[
            OptionalIdempotencyKey,
            strawberry.argument(description="Names this report, so that sending it again counts it once."),
        ] = None,
    ) -> StatusMatch | None:
        row = await info.context.services.matches.record_activity(
            info.context.caller(), str(match_id), points, activities, key=idempotency_key
        )
        return StatusMatch.from_row(row)
