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
from exchange.api.inputs import IdempotencyKey, Text
from exchange.api.permissions import PUBLIC, authorize, requires
from exchange.api.types.rewards import Redemption, RedemptionQuote, Reward, RewardKind
from exchange.auth.scopes import Scope
from exchange.errors import BadUserInput
from exchange.members.authority import DebitAuthority
from exchange.members.consents import CONSENT_ID_LENGTH
from exchange.programs import service as programs
from exchange.rewards import catalog, redemption
from exchange.rewards.errors import NotYourReward
from exchange.rewards.models import DESCRIPTION_LENGTH, TITLE_LENGTH
from exchange.rewards.models import RewardKind as RewardKindValue
from exchange.rewards.redemption import RedeemRequest


@strawberry.input(description="A reward to publish.")
class PublishRewardInput:
    title: Annotated[str, Text(TITLE_LENGTH)]
    price: Decimal = strawberry.field(description="Settlement price in the settlement currency (a decimal string).")
    stock: int
    kind: RewardKind = RewardKind.DIRECT
    description: Annotated[str, Text(DESCRIPTION_LENGTH)] = ""
    per_member_limit: int | None = None
    min_level: int = 0
    available_from: datetime | None = strawberry.field(default=None, description="Default: now.")
    available_until: datetime | None = None
    id: strawberry.ID | None = strawberry.field(default=None, description="Default: a new id.")


def _check_first(first: int) -> None:
    if not 1 <= first <= 200:
        raise BadUserInput("first must be between 1 and 200", field="first")


async def _minor_units(info: Info[Context, None]) -> int:
    async with info.context.services.db.transaction() as session:
        return (await programs.get_coalition(session)).settings.currency_minor_units


@strawberry.type
class RewardQueries:
    @strawberry.field(
        description="Published rewards by program and id: only those redeemable now unless "
        "`availableOnly` is false; only `programId`'s when given.",
        extensions=[authorize(PUBLIC)],
    )
    async def rewards(
        self, info: Info[Context, None], program_id: strawberry.ID | None = None, available_only: bool = True
    ) -> list[Reward]:
        now = info.context.services.clock.now()
        async with info.context.services.db.transaction() as session:
            minor_units = (await programs.get_coalition(session)).settings.currency_minor_units
            rows = await catalog.list_rewards(
                session,
                program_id=str(program_id) if program_id is not None else None,
                available_at=now if available_only else None,
            )
        return [Reward.from_row(row, minor_units) for row in rows]

    @strawberry.field(description="One reward by id; `NOT_FOUND` if there is none.", extensions=[authorize(PUBLIC)])
    async def reward(self, info: Info[Context, None], id: strawberry.ID) -> Reward:
        async with info.context.services.db.transaction() as session:
            minor_units = (await programs.get_coalition(session)).settings.currency_minor_units
            row = await catalog.get_reward(session, str(id), field="id")
        return Reward.from_row(row, minor_units)

    @strawberry.field(
        description="What redeeming `rewardId` with `payWith` points costs now: price, fee, points.",
        extensions=[authorize(requires(Scope.MEMBER_READ))],
    )
    async def redemption_quote(
        self, info: Info[Context, None], reward_id: strawberry.ID, pay_with: strawberry.ID
    ) -> RedemptionQuote | None:
        member_id = str(info.context.caller().member_id)
        quote = await info.context.services.redemptions.quote(member_id, str(reward_id), str(pay_with))
        return RedemptionQuote.of(member_id, quote, await _minor_units(info))

    @strawberry.field(
        description="The member's redemptions, newest first.",
        extensions=[authorize(requires(Scope.MEMBER_READ))],
    )
    async def redemptions(self, info: Info[Context, None], first: int = 50) -> list[Redemption] | None:
        _check_first(first)
        async with info.context.services.db.transaction() as session:
            minor_units = (await programs.get_coalition(session)).settings.currency_minor_units
            rows = await redemption.member_redemptions(session, str(info.context.caller().member_id), first=first)
        return [Redemption.from_row(row, minor_units) for row in rows]

    @strawberry.field(
        description="Redemptions of one of the caller's rewards, newest first (the publishing partner only).",
        extensions=[authorize(requires(Scope.PARTNER_READ))],
    )
    async def reward_redemptions(
        self, info: Info[Context, None], reward_id: strawberry.ID, first: int = 100
    ) -> list[Redemption] | None:
        _check_first(first)
        async with info.context.services.db.transaction() as session:
            minor_units = (await programs.get_coalition(session)).settings.currency_minor_units
            reward = await catalog.get_reward(session, str(reward_id))
            if reward.program_id != info.context.caller().program_id:
                raise NotYourReward()
            rows = await redemption.reward_redemptions(session, reward.id, first=first)
        return [Redemption.from_row(row, minor_units) for row in rows]


@strawberry.type
class RewardMutations:
    @strawberry.mutation(
        description="Publish a reward of the program (its partner, or an admin).",
        extensions=[authorize(MANAGE_PROGRAM)],
    )
    async def publish_reward(
        self, info: Info[Context, None], program_id: strawberry.ID, input: PublishRewardInput
    ) -> Reward | None:
        draft = catalog.RewardDraft(
            title=input.title,
            price=input.price,
            stock=input.stock,
            kind=RewardKindValue(input.kind.value),
            description=input.description,
            per_member_limit=input.per_member_limit,
            min_level=input.min_level,
            available_from=input.available_from,
            available_until=input.available_until,
            id=str(input.id) if input.id is not None else None,
        )
        async with info.context.services.db.transaction() as session:
            await programs.get_program(session, str(program_id), field="programId")
            row = await catalog.publish(session, str(program_id), draft, info.context.services.clock.now())
            minor_units = (await programs.get_coalition(session)).settings.currency_minor_units
        return Reward.from_row(row, minor_units)

    @strawberry.mutation(
        description="Redeem `rewardId`, paying with points of the linked program `payWith` (see "
        "`redemptionQuote`). The same `idempotencyKey` returns the same redemption; "
        "`OUT_OF_STOCK`, `LIMIT_EXCEEDED` (per-member limit), `TIER_TOO_LOW`, `REWARD_UNAVAILABLE` "
        "and `INSUFFICIENT_POINTS` say why not. `payWith`'s points are spent only under its "
        "authority: a member token its partner asserted, or a `consent` given through it "
        "(`authorizeDebit`) for exactly the quoted points; else `AUTHORITY_REQUIRED` "
        "(`extensions.program`, `extensions.reason`) and nothing happens.",
        extensions=[authorize(requires(Scope.MEMBER_WRITE))],
    )
    async def redeem_reward(
        self,
        info: Info[Context, None],
        reward_id: strawberry.ID,
        pay_with: strawberry.ID,
        idempotency_key: IdempotencyKey,
        consent: Annotated[
            str | None,
            Text(CONSENT_ID_LENGTH),
            strawberry.argument(
                description="The id of a consent to debit `payWith` (`authorizeDebit`), needed when "
                "another program's partner asserted your token; used once."
            ),
        ] = None,
    ) -> Redemption | None:
        caller = info.context.caller()
        row = await info.context.services.redemptions.redeem(
            RedeemRequest(
                member_id=str(caller.member_id),
                reward_id=str(reward_id),
                pay_with=str(pay_with),
                idempotency_key=idempotency_key,
                authority=DebitAuthority(asserted_by=str(caller.asserted_by), consent=consent),
            )
        )
        return Redemption.from_row(row, await _minor_units(info))

    @strawberry.mutation(
        description="Cancel a paid, undelivered redemption (its member, or the publishing partner): "
        "the points, the ledger entries and the stock are given back.",
        extensions=[authorize(requires(Scope.MEMBER_WRITE, Scope.PARTNER_WRITE))],
    )
    async def cancel_redemption(self, info: Info[Context, None], redemption_id: strawberry.ID) -> Redemption | None:
        caller = info.context.caller()
        row = await info.context.services.redemptions.cancel(
            str(redemption_id), member_id=caller.member_id, program_id=caller.program_id
        )
        return Redemption.from_row(row, await _minor_units(info))

    @strawberry.mutation(
        description="The publishing partner confirms it delivered a direct reward.",
        extensions=[authorize(requires(Scope.PARTNER_WRITE))],
    )
    async def confirm_redemption_delivery(
        self, info: Info[Context, None], redemption_id: strawberry.ID
    ) -> Redemption | None:
        row = await info.context.services.redemptions.confirm_delivery(
            str(redemption_id), str(info.context.caller().program_id)
        )
        return Redemption.from_row(row, await _minor_units(info))
