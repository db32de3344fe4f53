"""A status match's push in doubt, settled against the target partner's record (no database:
the step's decision alone)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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


def partner_recording(match: StatusMatch, status: OperationState) -> FakePartner:
    partner = FakePartner("formosa-air", {"FA-1": 0})
    partner.operations[match.match_operation] = Operation(
        operation_id=match.match_operation,
        kind=OperationKind.TIER_MATCH,
        status=status,
        member_ref="FA-1",
        tier="Gold",
        expires_at=match.expires_at,
        created_at=NOW,
    )
    return partner


async def settle(match: StatusMatch, partner: FakePartner) -> Transition:
    saga = MatchSaga(db=None, connector_for=lambda _: partner, clock=None, policy=None)  # type: ignore[arg-type]
    return await saga._settle_push(match, partner)


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
