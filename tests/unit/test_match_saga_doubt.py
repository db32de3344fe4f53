"""A status match's push and extension, answered or settled in doubt against the target
partner's record (no database: the step's decision alone)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from exchange.connectors.contract import Operation, OperationKind, OperationState
from exchange.sagas.engine import Transition
from exchange.tiers.models import MatchStatus, MatchStep, StatusMatch
from exchange.tiers.saga import MatchSaga
from tests.fakes import FakePartner

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def pushed_match() -> StatusMatch:
    return StatusMatch(
        id="m-1",
        member_id="mbr_1",
        from_program="harbor-bank",
        to_program="formosa-air",
        source_ref="HB-1",
        target_ref="FA-1",
        source_tier="Platinum",
        source_level=3,
        tier="Gold",
        level=3,
        expires_at=NOW + timedelta(days=90),
        tier_operation="m-1:match",
        status=MatchStatus.PENDING,
        step=MatchStep.PUSH,
        in_doubt=True,
    )


def extending_match() -> StatusMatch:
    """An ACTIVE match whose challenge was met: its extension is being sent."""
    match = pushed_match()
    match.status, match.step, match.in_doubt = MatchStatus.UPDATING, MatchStep.EXTEND, False
    match.challenge_points, match.extend_days = 5000, 365
    return match


def partner_recording(
    match: StatusMatch,
    status: OperationState,
    operation_id: str | None = None,
    expires_at: datetime | None = None,
) -> FakePartner:
    """A partner whose record of ``operation_id`` (the push's unless given) is in ``status``,
    until ``expires_at`` (the match's unless given)."""
    partner = FakePartner("formosa-air", {"FA-1": 0})
    operation_id = operation_id or match.match_operation
    partner.operations[operation_id] = Operation(
        operation_id=operation_id,
        kind=OperationKind.TIER_MATCH,
        status=status,
        member_ref="FA-1",
        tier="Gold",
        expires_at=expires_at or match.expires_at,
        created_at=NOW,
    )
    return partner


def saga_of(partner: FakePartner) -> MatchSaga:
    return MatchSaga(db=None, connector_for=lambda _: partner, clock=None, policy=None)  # type: ignore[arg-type]


async def settle(match: StatusMatch, partner: FakePartner) -> Transition:
    return await saga_of(partner)._settle_push(match, partner)


async def test_a_match_the_partner_left_pending_is_asked_about_again_not_called_withdrawn() -> None:
    """A pending write is the partner's to settle (it cannot be reversed meanwhile): failing the
    match then would tell the member it failed while the partner may yet apply the tier."""
    match = pushed_match()
    partner = partner_recording(match, OperationState.PENDING)
    assert await settle(match, partner) == Transition(MatchStep.PUSH, wait=True)
    assert [call for call, _ in partner.calls] == ["operation_status"], "nothing reversed"


async def test_a_match_the_partner_applied_is_held() -> None:
    match = pushed_match()
    assert await settle(match, partner_recording(match, OperationState.APPLIED)) == Transition(
        MatchStep.DONE, MatchStatus.ACTIVE
    )


async def test_a_push_answered_reversed_fails_and_is_not_the_tier_held() -> None:
    """A repeat of a match the partner reverted since is answered ``reversed``: the member does
    not hold the tier, so the match is not ACTIVE; it FAILS (and so does not count against the
    member's one match a year), nothing else sent."""
    match = pushed_match()
    match.in_doubt = False
    partner = partner_recording(match, OperationState.REVERSED)
    transition = await saga_of(partner)._push(match, partner)
    assert (transition.step, transition.status, transition.failure_code) == (
        MatchStep.DONE,
        MatchStatus.FAILED,
        "PARTNER_REFUSED",
    )
    assert transition.failure_message is not None and "reversed" in transition.failure_message
    assert [call for call, _ in partner.calls] == ["match_tier"]


async def test_a_push_in_doubt_the_partner_reverted_since_fails_without_a_reversal_it_would_refuse() -> None:
    """The partner's record says the match applied and was reverted since: nothing is left to
    void (the partner would refuse the reversal, and the match stay PENDING for ever); it FAILS
    as a push answered ``reversed`` does."""
    match = pushed_match()
    partner = partner_recording(match, OperationState.REVERSED)
    transition = await settle(match, partner)
    assert (transition.status, transition.failure_code) == (MatchStatus.FAILED, "PARTNER_REFUSED")
    # The match's record, then whether the exchange's own void is on record (it is not): no reversal.
    assert [call for call, _ in partner.calls] == ["operation_status", "operation_status"]


@pytest.mark.parametrize("in_doubt", [False, True])
async def test_an_extension_answered_reversed_ends_the_match_expired_its_expiry_not_moved_on(in_doubt: bool) -> None:
    """Reverting an extension gives the member their own tier back (the contract): the match is
    over there. It ends EXPIRED, not ACTIVE with the expiry the extension would have set."""
    match = extending_match()
    until = match.expires_at + timedelta(days=365)
    partner = partner_recording(match, OperationState.REVERSED, match.extend_operation, expires_at=until)
    saga = saga_of(partner)
    transition = await saga._extend(match, partner, in_doubt=in_doubt)
    assert (transition.step, transition.status, transition.failure_code) == (
        MatchStep.DONE,
        MatchStatus.EXPIRED,
        "PARTNER_REFUSED",
    )
    assert saga.changes(match, MatchStep.EXTEND, transition) == {}, "neither extended nor held by the extension"


async def test_an_extension_answered_applied_moves_the_expiry_on() -> None:
    match = extending_match()
    partner = FakePartner("formosa-air", {"FA-1": 0})
    saga = saga_of(partner)
    transition = await saga._extend(match, partner, in_doubt=False)
    assert transition == Transition(MatchStep.DONE, MatchStatus.ACTIVE)
    assert saga.changes(match, MatchStep.EXTEND, transition) == {
        "expires_at": match.expires_at + timedelta(days=365),
        "tier_operation": match.extend_operation,
        "extended": True,
    }


async def test_a_push_in_doubt_the_partner_recorded_with_another_expiry_is_reverted_and_fails_contradicted() -> None:
    """The partner holds the tier until another time than sent (a month, not 90 days): the
    member would lose it while the exchange shows it ACTIVE. Its record is not the match sent:
    reverted, and the match FAILS with PARTNER_CONTRADICTED."""
    match = pushed_match()
    partner = partner_recording(match, OperationState.APPLIED, expires_at=NOW + timedelta(days=30))
    transition = await settle(match, partner)
    assert (transition.status, transition.failure_code) == (MatchStatus.FAILED, "PARTNER_CONTRADICTED")
    assert ("reverse", match.void_operation) in partner.calls
    assert partner.operations[match.match_operation].status is OperationState.REVERSED


async def test_a_push_in_doubt_recorded_with_the_expiry_to_the_second_is_held() -> None:
    match = pushed_match()
    match.expires_at = match.expires_at.replace(microsecond=654321)
    partner = partner_recording(match, OperationState.APPLIED, expires_at=match.expires_at.replace(microsecond=0))
    assert await settle(match, partner) == Transition(MatchStep.DONE, MatchStatus.ACTIVE)


async def test_an_extension_in_doubt_the_partner_recorded_without_moving_the_expiry_is_reverted() -> None:
    """The partner recorded the extension until the match's old expiry (not the year more sent):
    the member would lose the tier then while the exchange shows it extended. Reverted, which
    gives the member their own tier back: the match ends EXPIRED with PARTNER_CONTRADICTED, not
    extended."""
    match = extending_match()
    partner = partner_recording(match, OperationState.APPLIED, match.extend_operation, expires_at=match.expires_at)
    saga = saga_of(partner)
    transition = await saga._extend(match, partner, in_doubt=True)
    assert (transition.status, transition.failure_code) == (MatchStatus.EXPIRED, "PARTNER_CONTRADICTED")
    assert ("reverse", match.void_extend_operation) in partner.calls
    assert saga.changes(match, MatchStep.EXTEND, transition) == {}


async def test_an_extension_in_doubt_the_partner_left_pending_is_asked_about_again_not_sent_again() -> None:
    """As a push: a pending write is the partner's to settle. Sending the extension again got a
    pending answer, a protocol error, retried with back-off for ever."""
    match = extending_match()
    until = match.expires_at + timedelta(days=365)
    partner = partner_recording(match, OperationState.PENDING, match.extend_operation, expires_at=until)
    assert await saga_of(partner)._extend(match, partner, in_doubt=True) == Transition(MatchStep.EXTEND, wait=True)
    assert [call for call, _ in partner.calls] == ["operation_status"]
