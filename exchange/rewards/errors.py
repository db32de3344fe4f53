"""What rewards and redemptions refuse."""

from __future__ import annotations

from datetime import datetime

from exchange.errors import BadUserInput, ErrorCode, ExchangeError, Forbidden, NotFound


class RewardNotFound(NotFound):
    def __init__(self, reward_id: str, field: str = "rewardId") -> None:
        super().__init__(f"no reward has id {reward_id!r}", field=field)


class NotARewardCursor(BadUserInput):
    """An ``after`` of the reward list that cannot place a page: as every list's cursor it did
    not give out, ``BAD_USER_INPUT`` naming ``after`` (not ``NOT_FOUND``, which would say the
    list's subject is missing)."""


class NoRewardAfter(NotARewardCursor):
    """A page asked for after a reward id no reward has."""

    def __init__(self, after: str) -> None:
        super().__init__(
            f"after names no reward ({after!r}): pass the last id of a page, or null for the first page",
            field="after",
        )


class CursorOfAnotherProgram(NotARewardCursor):
    """A page of one program's rewards asked for after another program's reward: the keyset
    (program, then id) would place it before or after every one of them, and the page would hold
    all of them or none."""

    def __init__(self, after: str, cursor_program: str, program_id: str) -> None:
        super().__init__(
            f"after names reward {after!r} of {cursor_program}, not of {program_id}: "
            f"pass the last id of a page of the rewards of {program_id}, or null for the first page",
            field="after",
        )


class RedemptionNotFound(NotFound):
    """Also what a caller hears about another member's or partner's redemption."""

    def __init__(self, redemption_id: str) -> None:
        super().__init__(f"no redemption of yours has id {redemption_id!r}", field="redemptionId")


class OutOfStock(ExchangeError):
    code = ErrorCode.OUT_OF_STOCK

    def __init__(self, reward_id: str) -> None:
        super().__init__(f"reward {reward_id} is out of stock", field="rewardId")


class RewardUnavailable(ExchangeError):
    code = ErrorCode.REWARD_UNAVAILABLE

    def __init__(self, reward_id: str, available_from: datetime, available_until: datetime | None) -> None:
        window = f"from {available_from.isoformat()}" + (
            f" until {available_until.isoformat()}" if available_until is not None else ""
        )
        super().__init__(f"reward {reward_id} can be redeemed only {window}", field="rewardId")


class TierTooLow(ExchangeError):
    code = ErrorCode.TIER_TOO_LOW

    def __init__(self, reward_id: str, needed: int, held: int) -> None:
        super().__init__(
            f"reward {reward_id} needs coalition level {needed}; your partners report level {held}",
            field="rewardId",
            minLevel=needed,
            level=held,
        )


class TiersChanged(ExchangeError):
    """The member's tiers changed (an account unlinked, a status match ended) after the level
    a reward needs was read and before the redemption was recorded: that level may be one the
    member no longer holds. Nothing was recorded; the same request again reads the level anew."""

    code = ErrorCode.TIER_TOO_LOW

    def __init__(self, reward_id: str, needed: int, held: int) -> None:
        super().__init__(
            f"reward {reward_id} needs coalition level {needed}; your partners reported level {held}, and your "
            "tiers have changed since (an account unlinked, or a status match ended): nothing was redeemed; "
            "redeem again to have your level read anew",
            field="rewardId",
            minLevel=needed,
            reason="TIERS_CHANGED",
        )


class NotCancellable(BadUserInput):
    def __init__(self, redemption_id: str, status: str, cancelled_by: str | None = None) -> None:
        by = f" (cancelled by the {cancelled_by.lower()})" if cancelled_by is not None else ""
        super().__init__(
            f"redemption {redemption_id} is {status}{by}: only a held, or a paid and undelivered, redemption "
            "can be cancelled",
            field="redemptionId",
            status=status,
        )


class EntryInTheDraw(BadUserInput):
    """A member cancelling their paid lottery entry: the entry is what they paid for, and it is
    in the draw, which has no delivery to wait for; cancelled after the draw, it would have been
    free. Its publisher may still cancel it (a draw called off), giving the points back."""

    def __init__(self, redemption_id: str) -> None:
        super().__init__(
            f"redemption {redemption_id} is an entry in its reward's draw, final for its member once paid: only the "
            "reward's publisher can cancel it now, giving the points back",
            field="redemptionId",
            status="COMPLETED",
        )


class ClearingArchived(BadUserInput):
    """A paid redemption settled in a period since archived: its clearing transaction has left
    the ledger, which can no longer post its exact negation."""

    def __init__(self, redemption_id: str, period: str) -> None:
        super().__init__(
            f"redemption {redemption_id} can no longer be cancelled: it was paid in period {period}, which is "
            "settled and archived, so its clearing can no longer be reversed",
            field="redemptionId",
            period=period,
        )


class NoLongerHeld(ExchangeError):
    """A cancel of a redemption its caller saw HELD, which staff approved or rejected (or whose
    hold ended) before the cancel reached it."""

    code = ErrorCode.NOT_HELD

    def __init__(self, redemption_id: str, status: str) -> None:
        super().__init__(
            f"redemption {redemption_id} is {status}, no longer held: its review ended before the cancel",
            field="redemptionId",
            status=status,
        )


class PriceChanged(ExchangeError):
    """A redemption whose points price at the paying program is not the one its member saw
    (``expectedPoints``): an operator changed that program's point value, or the coalition's
    fee, in between. Refused before anything is recorded or debited."""

    code = ErrorCode.PRICE_CHANGED

    def __init__(self, reward_id: str, pay_with: str, expected: int, points: int) -> None:
        super().__init__(
            f"reward {reward_id} now costs {points:,} points of {pay_with}, not the {expected:,} expected",
            field="expectedPoints",
            expectedPoints=expected,
            points=points,
        )


class NotDeliverable(BadUserInput):
    def __init__(self, redemption_id: str, status: str) -> None:
        super().__init__(
            f"redemption {redemption_id} is {status}: only a paid direct reward awaits delivery",
            field="redemptionId",
        )


class NotYourReward(Forbidden):
    def __init__(self) -> None:
        super().__init__("only the publishing partner may do this", field="rewardId")
