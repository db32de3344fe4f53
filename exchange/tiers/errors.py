"""What status matches refuse."""

from __future__ import annotations

from datetime import datetime

from exchange.errors import BadUserInput, ErrorCode, ExchangeError, NotFound


class MatchNotGranted(ExchangeError):
    """The policy gives the member nothing (``extensions.reason`` says which rule)."""

    code = ErrorCode.MATCH_NOT_GRANTED

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message, reason=reason)


class MatchTooSoon(ExchangeError):
    """One match per member per target program per 12 months."""

    code = ErrorCode.MATCH_TOO_SOON

    def __init__(self, program_id: str, possible_at: datetime) -> None:
        super().__init__(
            f"you were matched into {program_id} less than 12 months ago; "
            f"the next match is possible from {possible_at.isoformat()}",
            field="toProgram",
            possibleAt=possible_at.isoformat(),
        )


class TierNotVerified(ExchangeError):
    """The source partner reports a lower tier than the member claimed."""

    code = ErrorCode.TIER_NOT_VERIFIED

    def __init__(self, program_id: str, claimed: str, actual: str) -> None:
        super().__init__(
            f"{program_id} reports your tier as {actual}, not {claimed}",
            field="claimedTier",
            verifiedTier=actual,
        )


class SameProgram(BadUserInput):
    def __init__(self) -> None:
        super().__init__("a status match needs two different programs", field="toProgram")


class UnknownTierName(BadUserInput):
    def __init__(self, program_id: str, tier: str, field: str) -> None:
        super().__init__(f"{program_id} has no tier {tier!r}", field=field)


class StatusMatchNotFound(NotFound):
    def __init__(self, match_id: str) -> None:
        super().__init__(f"no status match has id {match_id!r}", field="matchId")
