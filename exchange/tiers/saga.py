"""Pushing a status match to the target partner, extending it, reverting it: the match's saga.

* **PUSH** — ``match_tier(<id>:match)`` gives the member the tier until ``expires_at``. A
  refusal, or a partner that could not be reached, FAILS the match (it then does not count
  against the member's one match a year). So does an answer ``reversed`` (a repeat of a match
  reverted since: the member does not hold the tier), with ``PARTNER_REFUSED``. An unknown
  outcome is settled by the shared in-doubt rule: applied → ACTIVE; never applied → voided →
  FAILED; reversed since → FAILED as that answer is (nothing left to void). A partner whose record
  of the match is another tier, member or expiry than sent (its answer said so too, which made the
  outcome unknown) is not trusted: the match it recorded is reverted and the match FAILS with
  ``PARTNER_CONTRADICTED``, logged as an error, as a contradicted conversion is reversed.
* **EXTEND** — the challenge was met: ``match_tier(<id>:extend)`` with the expiry moved on by
  the policy's ``extend_days``; the match is ACTIVE again. After a refusal it is ACTIVE with
  its old expiry (and the refusal recorded). An extension answered ``reversed`` (reverted since,
  which by the contract gave the member their own tier back) ends the match EXPIRED with
  ``PARTNER_REFUSED``, its expiry not moved on. An extension in doubt that the partner
  recorded with another tier, member or expiry than sent is reverted (``<id>:void-extend``), which by
  the contract gives the member their own tier back: the match ends EXPIRED with
  ``PARTNER_CONTRADICTED``.
* **REVERT** — past its expiry: ``reverse(<id>:revert)`` of the operation that holds the
  tier now; the match is EXPIRED (also when the partner had reverted it on its own already).

Every write is keyed by a fixed operation id, so sending one again after an unknown outcome
applies it at most once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from exchange.clock import Clock
from exchange.connectors.connector import PartnerConnector
from exchange.connectors.contract import OperationKind, OperationState
from exchange.connectors.errors import PartnerRefusal, PartnerUnavailable
from exchange.db.database import Database
from exchange.errors import ErrorCode
from exchange.programs import service as programs
from exchange.programs.models import Program
from exchange.sagas.doubt import (
    CONTRADICTED,
    SentWrite,
    Settlement,
    reverse_whole,
    settle_or_void,
    undo_contradiction,
)
from exchange.sagas.engine import Saga, SagaPolicy, Transition, failure
from exchange.tiers.models import MatchStatus, MatchStep, StatusMatch
from exchange.webhooks.events import Event, status_match_changed

#: The partner's record of the push (its answer, or its status in doubt) says it was reverted
#: since it applied: the member does not hold the tier, and the exchange never told them they
#: did, so the match FAILS and does not count against the member's one match a year.
_PUSH_REVERTED = Transition(
    MatchStep.DONE,
    MatchStatus.FAILED,
    ErrorCode.PARTNER_REFUSED.value,
    "the target partner's record of the tier match is reversed (reverted since it applied); the member does "
    "not hold the tier",
)

#: The partner's record of the extension says it was reverted since it applied, which by the
#: contract gave the member their own tier back: the match is over there, EXPIRED, its expiry
#: not moved on.
_EXTENSION_REVERTED = Transition(
    MatchStep.DONE,
    MatchStatus.EXPIRED,
    ErrorCode.PARTNER_REFUSED.value,
    "the target partner's record of the extension is reversed (reverted since it applied), which ended the "
    "match there: the member holds their own tier",
)


@dataclass
class MatchSaga(Saga[StatusMatch]):
    model = StatusMatch
    active = (MatchStatus.PENDING, MatchStatus.UPDATING)
    label = "status match"

    db: Database
    connector_for: Callable[[Program], PartnerConnector]
    clock: Clock
    policy: SagaPolicy

    async def attempt(self, match: StatusMatch, step: str, *, in_doubt: bool) -> Transition:
        async with self.db.transaction() as session:
            target = self.connector_for(await programs.get_program(session, match.to_program))
        if step == MatchStep.PUSH:
            return await (self._settle_push(match, target) if in_doubt else self._push(match, target))
        if step == MatchStep.EXTEND:
            return await self._extend(match, target, in_doubt=in_doubt)
        if step == MatchStep.REVERT:
            await reverse_whole(target, match.revert_operation, match.tier_operation)
            return Transition(MatchStep.DONE, MatchStatus.EXPIRED)
        raise AssertionError(f"no attempt for step {step}")

    @staticmethod
    def _sent(match: StatusMatch, expires_at: datetime) -> SentWrite:
        """The tier match as the exchange sends it: the push (until ``match.expires_at``) or the
        extension (until the expiry it moves the match to)."""
        return SentWrite(OperationKind.TIER_MATCH, match.target_ref, tier=match.tier, expires_at=expires_at)

    async def _push(self, match: StatusMatch, target: PartnerConnector) -> Transition:
        try:
            operation = await target.match_tier(match.match_operation, match.target_ref, match.tier, match.expires_at)
        except (PartnerRefusal, PartnerUnavailable) as error:
            return Transition(MatchStep.DONE, MatchStatus.FAILED, *failure(error))
        if operation.status is OperationState.REVERSED:
            return _PUSH_REVERTED
        return Transition(MatchStep.DONE, MatchStatus.ACTIVE)

    async def _settle_push(self, match: StatusMatch, target: PartnerConnector) -> Transition:
        settlement = await settle_or_void(
            target, match.match_operation, match.void_operation, self._sent(match, match.expires_at)
        )
        if settlement is Settlement.APPLIED:
            return Transition(MatchStep.DONE, MatchStatus.ACTIVE)
        if settlement is Settlement.PENDING:
            # Against the contract (a match is answered at once), and not the exchange's to void:
            # a pending write is settled first. Asked again until the partner settles it, so the
            # match ends as the partner's record does, applied or not.
            return Transition(MatchStep.PUSH, wait=True)
        if settlement is Settlement.CONTRADICTED:
            return Transition(
                MatchStep.DONE,
                MatchStatus.FAILED,
                CONTRADICTED,
                "the target partner recorded another tier match than the one sent; it was reverted",
            )
        if settlement is Settlement.REVERSED:
            return _PUSH_REVERTED
        return Transition(
            MatchStep.DONE,
            MatchStatus.FAILED,
            ErrorCode.PARTNER_UNAVAILABLE.value,
            "the target partner did not confirm the tier in time; it was withdrawn",
        )

    async def _extend(self, match: StatusMatch, target: PartnerConnector, *, in_doubt: bool) -> Transition:
        assert match.extend_days is not None
        until = match.expires_at + timedelta(days=match.extend_days)
        # In doubt, the partner's record is held against the extension first; whatever it is not
        # contradicted by is sent (again: the same id applies at most once).
        if in_doubt:
            operation = await target.operation_status(match.extend_operation)
            if operation is not None and operation.status is OperationState.PENDING:
                # As for a push: a pending write is the partner's to settle, neither reversed nor
                # sent again (its answer would be pending too, against the contract). Asked again.
                return Transition(MatchStep.EXTEND, wait=True)
            sent = self._sent(match, until)
            if await undo_contradiction(target, operation, match.extend_operation, sent, match.void_extend_operation):
                return Transition(
                    MatchStep.DONE,
                    MatchStatus.EXPIRED,
                    CONTRADICTED,
                    "the target partner recorded another tier match than the extension sent; it was reverted, "
                    "which ended the match there",
                )
        try:
            operation = await target.match_tier(match.extend_operation, match.target_ref, match.tier, until)
        except PartnerRefusal as error:
            return Transition(MatchStep.DONE, MatchStatus.ACTIVE, *failure(error))
        if operation.status is OperationState.REVERSED:
            return _EXTENSION_REVERTED
        return Transition(MatchStep.DONE, MatchStatus.ACTIVE)

    def changes(self, match: StatusMatch, step: str, transition: Transition) -> dict[str, Any]:
        if step == MatchStep.EXTEND and transition.failure_code is None:
            assert match.extend_days is not None
            return {
                "expires_at": match.expires_at + timedelta(days=match.extend_days),
                "tier_operation": match.extend_operation,
                "extended": True,
            }
        return {}

    def event(self, match: StatusMatch, step: str, transition: Transition) -> Event | None:
        return status_match_changed(match, step, transition, self.clock.now())
