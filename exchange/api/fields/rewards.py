"""Rewards: the public catalog, publishing, redeeming with any linked program's points,
cancelling, and confirming delivery."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.fields.access import MANAGE_PROGRAM
from exchange.api.inputs import ChosenId, IdempotencyKey, Text
from exchange.api.permissions import PUBLIC, authorize, requires
from exchange.api.types.pages import After, Page, replaced_by_page
from exchange.api.types.rewards import Redemption, RedemptionQuote, RedemptionStatus, Reward, RewardKind
from exchange.auth.scopes import Scope
from exchange.members.consents import CONSENT_ID_LENGTH
from exchange.pricing.limits import MAX_POINTS
from exchange.rewards.catalog import MAX_STOCK, RewardDraft
from exchange.rewards.models import DESCRIPTION_LENGTH, TITLE_LENGTH
from exchange.rewards.models import RedemptionStatus as RedemptionStatusValue
from exchange.rewards.models import RewardKind as RewardKindValue
from exchange.services.rewards import MAX_PAGE, REWARDS_PAGE

RewardId = Annotated[strawberry.ID, strawberry.argument(description="The reward's id (`Reward.id`).")]
RedemptionId = Annotated[strawberry.ID, strawberry.argument(description="The redemption's id (`Redemption.id`).")]
PayWith = Annotated[
    strawberry.ID,
    strawberry.argument(
        description="The linked program whose points pay (`Program.id`), the coalition point included."
    ),
]
First = Annotated[int, strawberry.argument(description=f"How many, from 1 to {MAX_PAGE} (else `BAD_USER_INPUT`).")]


@strawberry.input(description="A reward to publish.")
class PublishRewardInput:
    title: Annotated[str, Text(TITLE_LENGTH)] = strawberry.field(
        description="What members see, on one line: not blank (spaces and invisible characters alone are), "
        "no control character or direction control (U+202E and the like)."
    )
    price: Decimal = strawberry.field(description="Settlement price in the settlement currency (a decimal string).")
    stock: int = strawberry.field(description=f"Units on offer, 0 to {MAX_STOCK:,}; each redemption takes one.")
    kind: RewardKind = strawberry.field(default=RewardKind.DIRECT, description="How the reward reaches the member.")
    description: Annotated[str, Text(DESCRIPTION_LENGTH)] = strawberry.field(
        default="",
        description="More about the reward, for members: line breaks and tabs, but no other control character "
        "and no direction control (U+202E and the like).",
    )
    per_member_limit: int | None = strawberry.field(
        default=None, description="How many times one member may redeem it (1 or more); null: no limit."
    )
    min_level: int = strawberry.field(
        default=0,
        description="The lowest coalition level (`Coalition.ladder`) a member needs to redeem it "
        "(else `TIER_TOO_LOW`); 0: anyone.",
    )
    available_from: datetime | None = strawberry.field(default=None, description="Default: now.")
    available_until: datetime | None = strawberry.field(
        default=None, description="Redeemable until then (after `availableFrom`); null: no end."
    )
    id: ChosenId | None = strawberry.field(
        default=None,
        description="Default: a new id. The same id with the same terms again answers the same reward; "
        "with other terms it is `IDEMPOTENCY_CONFLICT`.",
    )

    def to_draft(self) -> RewardDraft:
        return RewardDraft(
            title=self.title,
            price=self.price,
            stock=self.stock,
            kind=RewardKindValue(self.kind.value),
            description=self.description,
            per_member_limit=self.per_member_limit,
            min_level=self.min_level,
            available_from=self.available_from,
            available_until=self.available_until,
            id=str(self.id) if self.id is not None else None,
        )


@strawberry.type
class RewardQueries:
    @strawberry.field(
        description=f"Published rewards by program id, then reward id: `first` of them ({REWARDS_PAGE} "
        f"unless asked, at most {MAX_PAGE}) after the reward `after`; pass the last id of a page as `after` for "
        "the next. Only those redeemable now unless `availableOnly` is false; only `programId`'s when given.",
        extensions=[authorize(PUBLIC)],
    )
    async def rewards(
        self,
        info: Info[Context, None],
        program_id: Annotated[
            strawberry.ID | None, strawberry.argument(description="Only this publisher's; null: every program's.")
        ] = None,
        available_only: Annotated[
            bool,
            strawberry.argument(
                description="Only those redeemable now (between `availableFrom` and `availableUntil`)."
            ),
        ] = True,
        first: First = REWARDS_PAGE,
        after: Annotated[
            strawberry.ID | None,
            strawberry.argument(
                description="The last reward id of the previous page (`BAD_USER_INPUT` naming `after` if no "
                "reward has it or, with `programId`, it is another program's); null: from the first."
            ),
        ] = None,
    ) -> list[Reward]:
        page = await info.context.services.rewards.rewards(
            program_id=str(program_id) if program_id is not None else None,
            available_only=available_only,
            first=first,
            after=str(after) if after is not None else None,
        )
        currency = await info.context.currency()
        return [Reward.from_row(row, currency) for row in page.items]

    @strawberry.field(description="One reward by id; `NOT_FOUND` if there is none.", extensions=[authorize(PUBLIC)])
    async def reward(self, info: Info[Context, None], id: RewardId) -> Reward:
        return Reward.from_row(await info.context.services.rewards.reward(str(id)), await info.context.currency())

    @strawberry.field(
        description="What redeeming `rewardId` with `payWith` points costs now: price, fee, points. "
        "`LIMIT_EXCEEDED` (`extensions.limit` max_points) when that is more than the 1,000,000,000 points "
        "one redemption may spend; a `rewardId` no reward has is `NOT_FOUND`.",
        extensions=[authorize(requires(Scope.MEMBER_READ))],
    )
    async def redemption_quote(
        self, info: Info[Context, None], reward_id: RewardId, pay_with: PayWith
    ) -> RedemptionQuote | None:
        caller = info.context.caller()
        quote = await info.context.services.rewards.quote(caller, str(reward_id), str(pay_with))
        return RedemptionQuote.of(str(caller.member_id), quote, await info.context.currency())

    @strawberry.field(
        description="The member's redemptions, newest first.",
        extensions=[authorize(requires(Scope.MEMBER_READ))],
        deprecation_reason=replaced_by_page("redemptionPage"),
    )
    async def redemptions(self, info: Info[Context, None], first: First = 50) -> list[Redemption] | None:
        return (await _member_redemptions(info, first, None)).items

    @strawberry.field(
        description="The member's redemptions, newest first: `first` of them after the cursor `after`.",
        extensions=[authorize(requires(Scope.MEMBER_READ))],
    )
    async def redemption_page(
        self, info: Info[Context, None], first: First = 50, after: After = None
    ) -> Page[Redemption] | None:
        return await _member_redemptions(info, first, after)

    @strawberry.field(
        description="Redemptions of one of the caller's rewards, newest first (the publishing partner only); "
        "a `rewardId` no reward has is `NOT_FOUND`.",
        extensions=[authorize(requires(Scope.PARTNER_READ))],
        deprecation_reason=replaced_by_page("rewardRedemptionPage"),
    )
    async def reward_redemptions(
        self, info: Info[Context, None], reward_id: RewardId, first: First = 100
    ) -> list[Redemption] | None:
        return (await _reward_redemptions(info, str(reward_id), first, None)).items

    @strawberry.field(
        description="Redemptions of one of the caller's rewards, newest first (the publishing partner only): "
        "`first` of them after the cursor `after`; a `rewardId` no reward has is `NOT_FOUND`.",
        extensions=[authorize(requires(Scope.PARTNER_READ))],
    )
    async def reward_redemption_page(
        self, info: Info[Context, None], reward_id: RewardId, first: First = 100, after: After = None
    ) -> Page[Redemption] | None:
        return await _reward_redemptions(info, str(reward_id), first, after)


async def _member_redemptions(info: Info[Context, None], first: int, after: str | None) -> Page[Redemption]:
    page = await info.context.services.rewards.member_redemptions(info.context.caller(), first=first, after=after)
    currency = await info.context.currency()
    return Page.of(page, lambda row: Redemption.from_row(row, currency))


async def _reward_redemptions(
    info: Info[Context, None], reward_id: str, first: int, after: str | None
) -> Page[Redemption]:
    page = await info.context.services.rewards.reward_redemptions(
        info.context.caller(), reward_id, first=first, after=after
    )
    currency = await info.context.currency()
    return Page.of(page, lambda row: Redemption.from_row(row, currency))


@strawberry.type
class RewardMutations:
    @strawberry.mutation(
        description="Publish a reward of the program (its partner, or an admin). A term out of its range is "
        "`BAD_USER_INPUT` naming it (`input.stock`). An `id` you choose makes a retry safe: the same request again "
        "answers the reward it published (as it stands now); an `id` a reward published otherwise has (other "
        "terms, or another program's) is `IDEMPOTENCY_CONFLICT` (`input.id`).",
        extensions=[authorize(MANAGE_PROGRAM)],
    )
    async def publish_reward(
        self,
        info: Info[Context, None],
        program_id: Annotated[strawberry.ID, strawberry.argument(description="The publishing program.")],
        input: Annotated[PublishRewardInput, strawberry.argument(description="The reward.")],
    ) -> Reward | None:
        row = await info.context.services.rewards.publish(str(program_id), input.to_draft())
        return Reward.from_row(row, await info.context.currency())

    @strawberry.mutation(
        description="Redeem `rewardId`, paying with points of the linked program `payWith` (see "
        "`redemptionQuote`). The same `idempotencyKey` returns the same redemption (PENDING "
        "if its first request is still running: it finishes on its own; see `redemptions`); "
        "`OUT_OF_STOCK`, `LIMIT_EXCEEDED` (per-member limit, or max_points), `TIER_TOO_LOW` (`extensions.reason` "
        "`TIERS_CHANGED` when the member's tiers changed while it was recorded: send it again), `REWARD_UNAVAILABLE` "
        "and `INSUFFICIENT_POINTS` say why not. `payWith`'s points are spent only under its "
        "authority: a member token its partner asserted, or a `consent` given through it "
        "(`authorizeDebit`) for exactly the quoted points; else `AUTHORITY_REQUIRED` "
        "(`extensions.program`, `extensions.reason`) and nothing happens. Coalition points are the "
        "exchange's: they are spent under a token with the scope `member:coalition`. `payWith`'s "
        "risk gates refuse as they refuse a conversion out of it (`COOLING_PERIOD`, `NAME_MISMATCH`, "
        "`VELOCITY_EXCEEDED`, counted with its conversions): nothing happens; above its "
        "`hold_above_points` the redemption is HELD for staff review, nothing debited until approved.",
        extensions=[authorize(requires(Scope.MEMBER_WRITE))],
    )
    async def redeem_reward(
        self,
        info: Info[Context, None],
        reward_id: RewardId,
        pay_with: PayWith,
        idempotency_key: IdempotencyKey,
        consent: Annotated[
            str | None,
            Text(CONSENT_ID_LENGTH),
            strawberry.argument(
                description="The id of a consent to debit `payWith` (`authorizeDebit`), needed when "
                "another program's partner asserted your token; used once."
            ),
        ] = None,
        expected_points: Annotated[
            int | None,
            strawberry.argument(
                description="The points you were shown (`redemptionQuote`'s `points`), 1 to "
                f"{MAX_POINTS:,}: `payWith`'s point value (or the exchange's fee) can change before "
                "you redeem, and a redemption that would now cost other points is refused with "
                "`PRICE_CHANGED` (`extensions.expectedPoints`, `extensions.points`: the price now), "
                "nothing recorded or debited. Part of the request: the same `idempotencyKey` expecting "
                "other points than its redemption was charged is `IDEMPOTENCY_CONFLICT`."
            ),
        ] = None,
    ) -> Redemption | None:
        row = await info.context.services.rewards.redeem(
            info.context.caller(),
            str(reward_id),
            str(pay_with),
            idempotency_key,
            consent=consent,
            expected_points=expected_points,
        )
        return Redemption.from_row(row, await info.context.currency())

    @strawberry.mutation(
        description="Cancel a redemption, as its member or the publishing partner. A HELD one (waiting for "
        "staff review) ends FAILED at once (`failureCode` CANCELLED): nothing was debited, nothing reaches "
        "the ledger, its stock and the member's count are given back, and the risk decision log records the "
        "cancel. A paid, undelivered one (COMPLETED) is reversed: the points, the ledger entries and the "
        "stock are given back; a paid lottery entry is in the draw, so only its publisher may cancel it (its "
        "member is refused `BAD_USER_INPUT`, `extensions.status` COMPLETED). Cancelling again as the same party returns it as it stands (REVERSING or "
        "REVERSED once paid), nothing done twice. Any other status, a redemption the other party cancelled "
        "included, is `BAD_USER_INPUT` (`extensions.status`).",
        extensions=[authorize(requires(Scope.MEMBER_WRITE, Scope.PARTNER_WRITE))],
    )
    async def cancel_redemption(
        self,
        info: Info[Context, None],
        redemption_id: RedemptionId,
        expected_status: Annotated[
            RedemptionStatus | None,
            strawberry.argument(
                description="The status you saw: the redemption is cancelled only if it still has it. "
                "Expecting HELD, one that staff approved or rejected (or whose hold ended) meanwhile is "
                "`NOT_HELD` (`extensions.status`), not reversed after being paid; any other change is "
                "`BAD_USER_INPUT`."
            ),
        ] = None,
    ) -> Redemption | None:
        expected = RedemptionStatusValue(expected_status.value) if expected_status is not None else None
        row = await info.context.services.rewards.cancel(info.context.caller(), str(redemption_id), expected=expected)
        return Redemption.from_row(row, await info.context.currency())

    @strawberry.mutation(
        description="The publishing partner confirms it delivered a direct reward. Confirming again answers it "
        "as it stands (DELIVERED), nothing done twice. A redemption of none of the caller's rewards is "
        "`NOT_FOUND`; one that does not await delivery (only a COMPLETED direct reward does) is `BAD_USER_INPUT`.",
        extensions=[authorize(requires(Scope.PARTNER_WRITE))],
    )
    async def confirm_redemption_delivery(
        self, info: Info[Context, None], redemption_id: RedemptionId
    ) -> Redemption | None:
        row = await info.context.services.rewards.confirm_delivery(info.context.caller(), str(redemption_id))
        return Redemption.from_row(row, await info.context.currency())
