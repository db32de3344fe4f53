"""GraphQL types of rewards and redemptions.

The catalog of rewards is public. A redemption is its member's, and the publishing
partner's (who delivers it); the paying program's partner sees its side through the ledger.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import Enum

import strawberry
from strawberry.types import Info

from exchange.api.context import Context
from exchange.api.permissions import (
    PUBLIC,
    Rule,
    authorize,
    authorize_fields,
    own_member,
    own_program,
    requires,
    source,
)
from exchange.api.types.money import Money, replaced_by_money
from exchange.api.types.programs import Program
from exchange.auth.scopes import Scope
from exchange.money import Currency
from exchange.rewards.models import CancelledBy as CancelledByValue
from exchange.rewards.models import Redemption as RedemptionRow
from exchange.rewards.models import RedemptionStatus as RedemptionStatusValue
from exchange.rewards.models import Reward as RewardRow
from exchange.rewards.models import RewardKind as RewardKindValue
from exchange.rewards.redemption import RedemptionQuote as Quote

#: A redemption is seen by its member and by the partner that published the reward.
REDEMPTION_RULE: Rule = (
    own_member(source("member_id"))
    | (requires(Scope.PARTNER_READ, Scope.PARTNER_WRITE) & own_program(source("publisher")))
    | requires(Scope.SETTLEMENT_READ)  # staff reviewing held redemptions
)
#: Why it failed in words: its member's and staff's. Those words are often the paying
#: partner's own (the member's id there, their balance there): its business, not the
#: publisher's, who reads how it failed by ``failureCode``.
FAILURE_WORDS_RULE: Rule = own_member(source("member_id")) | requires(Scope.SETTLEMENT_READ)


def _in(code: str, settlement: Currency) -> Currency:
    """A row's currency: its own code, with the settlement currency's minor units."""
    return Currency(code, settlement.minor_units)


@strawberry.enum(description="What a redemption gets the member.")
class RewardKind(Enum):
    _value_: str  # .value is the string: strawberry unwraps enum_value (mypy would see its wrapper)
    DIRECT = strawberry.enum_value(
        RewardKindValue.DIRECT.value,
        description="The publisher delivers the reward and confirms the delivery (`confirmRedemptionDelivery`).",
    )
    LOTTERY = strawberry.enum_value(RewardKindValue.LOTTERY.value, description="An entry in the publisher's draw.")


@strawberry.enum(description="Where a redemption stands.")
class RedemptionStatus(Enum):
    _value_: str  # .value is the string: strawberry unwraps enum_value (mypy would see its wrapper)
    PENDING = strawberry.enum_value(
        RedemptionStatusValue.PENDING.value, description="Stock set aside; the member is being debited."
    )
    HELD = strawberry.enum_value(
        RedemptionStatusValue.HELD.value,
        description="Held by the paying program's risk gates for staff review: stock taken, nothing debited yet; "
        "its member or publisher may cancel it (`cancelRedemption`).",
    )
    COMPLETED = strawberry.enum_value(
        RedemptionStatusValue.COMPLETED.value,
        description="Paid and posted: awaiting delivery (DIRECT) or entered in the draw (LOTTERY).",
    )
    DELIVERED = strawberry.enum_value(
        RedemptionStatusValue.DELIVERED.value, description="The publisher confirmed delivery."
    )
    FAILED = strawberry.enum_value(
        RedemptionStatusValue.FAILED.value,
        description="Ended without being paid, its stock given back: its debit did not go through, or while "
        "HELD staff rejected it (`failureCode` RISK_REJECTED), the hold ended (HOLD_EXPIRED) or it was "
        "cancelled (CANCELLED, with `cancelledBy`).",
    )
    REVERSING = strawberry.enum_value(
        RedemptionStatusValue.REVERSING.value,
        description="Cancelled or undelivered: the points, the ledger and the stock are being given back.",
    )
    REVERSED = strawberry.enum_value(
        RedemptionStatusValue.REVERSED.value, description="The points, the ledger and the stock were given back."
    )


@strawberry.enum(description="Who undid a redemption.")
class CancelledBy(Enum):
    MEMBER = strawberry.enum_value(CancelledByValue.MEMBER.value, description="The member cancelled it.")
    PUBLISHER = strawberry.enum_value(
        CancelledByValue.PUBLISHER.value, description="The reward's publisher cancelled it."
    )
    TIMEOUT = strawberry.enum_value(
        CancelledByValue.TIMEOUT.value, description="No delivery was confirmed before the delivery deadline."
    )


@authorize_fields(PUBLIC)
@strawberry.type(description="A reward a partner publishes for members of any program to redeem.")
class Reward:
    id: strawberry.ID = strawberry.field(description="The reward's id: `rewardId` in `redeemReward`.")
    program_id: strawberry.ID = strawberry.field(description="The publishing partner's program.")
    title: str = strawberry.field(description="What members see.")
    description: str = strawberry.field(description="More about it (empty: nothing more).")
    kind: RewardKind = strawberry.field(description="How it reaches the member.")
    price: Decimal = strawberry.field(
        description="Settlement price: what the paying program owes the publisher, in the settlement currency.",
        deprecation_reason=replaced_by_money("settlementPrice"),
    )
    currency: str = strawberry.field(
        description="ISO 4217 code of `price`.", deprecation_reason="Use `settlementPrice.currency`."
    )
    settlement_price: Money = strawberry.field(description="What the paying program owes the publisher.")
    stock: int = strawberry.field(description="How many are left.")
    per_member_limit: int | None = strawberry.field(description="Most redemptions per member (null: no limit).")
    min_level: int = strawberry.field(description="Lowest coalition level that may redeem it.")
    available_from: datetime = strawberry.field(description="Redeemable from then.")
    available_until: datetime | None = strawberry.field(description="Redeemable until then; null: no end.")

    @strawberry.field(description="The publishing program.")
    async def program(self, info: Info[Context, None]) -> Program:
        return Program.from_row(await info.context.loaders.programs.load(str(self.program_id)))

    @classmethod
    def from_row(cls, row: RewardRow, settlement: Currency) -> Reward:
        currency = _in(row.currency, settlement)
        return cls(
            id=strawberry.ID(row.id),
            program_id=strawberry.ID(row.program_id),
            title=row.title,
            description=row.description,
            kind=RewardKind(row.kind),
            price=currency.from_minor(row.price_minor),
            currency=row.currency,
            settlement_price=Money.of_minor(row.price_minor, currency),
            stock=row.stock,
            per_member_limit=row.per_member_limit,
            min_level=row.min_level,
            available_from=row.available_from,
            available_until=row.available_until,
        )


@authorize_fields(own_member(source("member_id")))
@strawberry.type(description="What redeeming a reward with a program's points costs, before paying.")
class RedemptionQuote:
    reward_id: strawberry.ID = strawberry.field(description="The reward quoted.")
    pay_with: strawberry.ID = strawberry.field(description="The program whose points would pay.")
    price: Decimal = strawberry.field(
        description="The reward's settlement price.", deprecation_reason=replaced_by_money("settlementPrice")
    )
    fee: Decimal = strawberry.field(
        description="The exchange's fee on top of it.", deprecation_reason=replaced_by_money("exchangeFee")
    )
    total: Decimal = strawberry.field(
        description="Price plus fee: what the paying program owes.", deprecation_reason=replaced_by_money("totalOwed")
    )
    settlement_price: Money = strawberry.field(description="The reward's settlement price.")
    exchange_fee: Money = strawberry.field(description="The exchange's fee on top of it.")
    total_owed: Money = strawberry.field(description="Price plus fee: what the paying program owes.")
    point_value: Decimal = strawberry.field(description="Value of one point of the paying program.")
    points: int = strawberry.field(description="Points to pay: total ÷ point value, rounded up to a whole point.")
    member_id: strawberry.Private[str]

    @classmethod
    def of(cls, member_id: str, quote: Quote, settlement: Currency) -> RedemptionQuote:
        currency, price = _in(quote.reward.currency, settlement), quote.price
        return cls(
            reward_id=strawberry.ID(quote.reward.id),
            pay_with=strawberry.ID(quote.paying.id),
            price=currency.from_minor(price.price_minor),
            fee=currency.from_minor(price.fee_minor),
            total=currency.from_minor(price.total_minor),
            settlement_price=Money.of_minor(price.price_minor, currency),
            exchange_fee=Money.of_minor(price.fee_minor, currency),
            total_owed=Money.of_minor(price.total_minor, currency),
            point_value=quote.price.point_value,
            points=quote.price.points,
            member_id=member_id,
        )


@authorize_fields(REDEMPTION_RULE)
@strawberry.type(description="A member's redemption of a reward, paid with one program's points.")
class Redemption:
    id: strawberry.ID = strawberry.field(description="The exchange's id; the paying partner dedupes its debit on it.")
    member_id: strawberry.ID = strawberry.field(description="The member's exchange id.")
    reward_id: strawberry.ID = strawberry.field(description="The reward redeemed.")
    publisher: strawberry.ID = strawberry.field(description="The program whose partner delivers the reward.")
    paying_program: strawberry.ID = strawberry.field(description="The program whose points paid.")
    kind: RewardKind = strawberry.field(description="The reward's kind when redeemed.")
    points: int = strawberry.field(description="Points debited at the paying program.")
    price: Decimal = strawberry.field(
        description="What the paying program owes the publisher, in the settlement currency.",
        deprecation_reason=replaced_by_money("settlementPrice"),
    )
    fee: Decimal = strawberry.field(
        description="The exchange's fee on top of it, in the settlement currency.",
        deprecation_reason=replaced_by_money("exchangeFee"),
    )
    settlement_price: Money = strawberry.field(description="What the paying program owes the publisher.")
    exchange_fee: Money = strawberry.field(description="The exchange's fee on top of it.")
    status: RedemptionStatus = strawberry.field(description="Where it stands.")
    deliver_by: datetime | None = strawberry.field(
        description="A direct reward not confirmed delivered by then is reversed."
    )
    held_until: datetime | None = strawberry.field(
        description="While HELD: when the hold ends FAILED (HOLD_EXPIRED) unless staff decide before; else null."
    )
    delivered_at: datetime | None = strawberry.field(description="When the publisher confirmed delivery; else null.")
    cancelled_by: CancelledBy | None = strawberry.field(
        description="Who cancelled it: while HELD (then FAILED), or once paid (then REVERSED); null if nobody did."
    )
    failure_code: str | None = strawberry.field(
        description="FAILED or REVERSED: an error code of the closed list (`INSUFFICIENT_POINTS`, ...), or one "
        "only a saga ends with: `PARTNER_CONTRADICTED` (the paying partner recorded another debit than the one "
        "sent), `RISK_REJECTED` (staff rejected its hold), `HOLD_EXPIRED` (nobody reviewed its hold in time) or "
        "`CANCELLED` (cancelled while held: `cancelledBy`); else null."
    )
    failure_message: str | None = strawberry.field(
        description="FAILED or REVERSED: why, in words; else null. Its member's and staff's only (the publisher "
        "is `FORBIDDEN`: the words are often the paying partner's own, its business; `failureCode` says how).",
        extensions=[authorize(FAILURE_WORDS_RULE)],
    )
    created_at: datetime = strawberry.field(description="When it was requested.")
    finished_at: datetime | None = strawberry.field(
        description="When it last came to rest (COMPLETED, FAILED or REVERSED; delivery does not change it); "
        "null before."
    )

    @classmethod
    def from_row(cls, row: RedemptionRow, settlement: Currency) -> Redemption:
        currency = _in(row.currency, settlement)
        return cls(
            id=strawberry.ID(row.id),
            member_id=strawberry.ID(row.member_id),
            reward_id=strawberry.ID(row.reward_id),
            publisher=strawberry.ID(row.publisher),
            paying_program=strawberry.ID(row.paying_program),
            kind=RewardKind(row.kind),
            points=row.points,
            price=currency.from_minor(row.price_minor),
            fee=currency.from_minor(row.fee_minor),
            settlement_price=Money.of_minor(row.price_minor, currency),
            exchange_fee=Money.of_minor(row.fee_minor, currency),
            status=RedemptionStatus(row.status),
            deliver_by=row.deliver_by,
            held_until=row.next_attempt_at if row.status == RedemptionStatusValue.HELD else None,
            delivered_at=row.delivered_at,
            cancelled_by=CancelledBy(row.cancelled_by) if row.cancelled_by else None,
            failure_code=row.failure_code,
            failure_message=row.failure_message,
            created_at=row.created_at,
            finished_at=row.finished_at,
        )
