"""Every contract call, as both flavours send it and read the answer."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import respx

from exchange.connectors.connector import Call, PartnerConnector
from exchange.connectors.contract import Eligibility, OperationKind, OperationState
from tests.unit.connectors.conftest import MockPartner, operation


async def test_account_reads_balance_tier_and_expiring_points(
    partner: MockPartner, connector: PartnerConnector
) -> None:
    route = partner.route(Call.ACCOUNT).mock(
        return_value=partner.answer(
            {
                "member_ref": "alice",
                "balance": 120000,
                "tier": "Diamond",
                "tier_expires_at": None,
                "expiring": [{"points": 5000, "expires_on": "2026-12-31"}],
            }
        )
    )
    account = await connector.account("alice")
    assert (account.balance, account.tier) == (120000, "Diamond")
    assert account.expiring[0].points == 5000
    assert account.expiring[0].expires_on == date(2026, 12, 31)
    assert route.calls.last.request.headers["authorization"] == "Bearer token-1"


async def test_verify_member_sends_the_value_and_reads_the_verdict(
    partner: MockPartner, connector: PartnerConnector
) -> None:
    route = partner.route(Call.VERIFY_MEMBER).mock(
        return_value=partner.answer({"member_ref": "alice", "verified": False})
    )
    answer = await connector.verify_member("alice", "0000")
    assert (answer.verified, answer.name, answer.eligibility) == (False, None, Eligibility.ELIGIBLE)
    sent = partner.sent(route.calls.last.request)
    assert sent["verification"] == "0000"


async def test_verify_member_reads_the_partners_name_and_eligibility(
    partner: MockPartner, connector: PartnerConnector
) -> None:
    partner.route(Call.VERIFY_MEMBER).mock(
        return_value=partner.answer(
            {"member_ref": "alice", "verified": True, "name": "Alice Chen", "eligibility": "suspended"}
        )
    )
    answer = await connector.verify_member("alice", "1111")
    assert (answer.verified, answer.name, answer.eligibility) == (True, "Alice Chen", Eligibility.SUSPENDED)


@pytest.mark.parametrize("member_ref", [".", ".."])
async def test_a_member_ref_a_url_path_reads_as_a_directory_is_sent_to_no_partner(
    partner: MockPartner, connector: PartnerConnector, router: respx.MockRouter, member_ref: str
) -> None:
    """A URL takes ``.`` and ``..`` alone as "this" and "the parent" directory (httpx resolves
    them before sending): ``GET /members/..`` would be a ``GET`` of the partner's base address,
    and ``POST /members/../verify`` a ``POST /verify``, addresses the contract does not serve,
    called with the exchange's token. No partner is asked about such a ref, in either flavour."""
    with pytest.raises(ValueError, match="member_ref"):
        await connector.account(member_ref)
    with pytest.raises(ValueError, match="member_ref"):
        await connector.verify_member(member_ref, "0000")
    assert not router.calls


async def test_debit_sends_the_operation_id_and_returns_the_operation(
    partner: MockPartner, connector: PartnerConnector
) -> None:
    route = partner.route(Call.DEBIT).mock(return_value=partner.answer(operation()))
    result = await connector.debit("op-1", "alice", 100)
    assert result.kind is OperationKind.DEBIT
    assert result.status is OperationState.APPLIED
    assert (result.points, result.balance_after) == (100, 900)
    sent = partner.sent(route.calls.last.request)
    assert {key: sent[key] for key in ("operation_id", "member_ref", "points")} == {
        "operation_id": "op-1",
        "member_ref": "alice",
        "points": 100,
    }


async def test_credit_returns_the_operation(partner: MockPartner, connector: PartnerConnector) -> None:
    partner.route(Call.CREDIT).mock(return_value=partner.answer(operation(kind="credit")))
    assert (await connector.credit("op-1", "alice", 100)).kind is OperationKind.CREDIT


async def test_partial_reverse_returns_the_reversal_and_its_target(
    partner: MockPartner, connector: PartnerConnector
) -> None:
    target = operation("op-0", reversed_points=40)
    route = partner.route(Call.REVERSE).mock(
        return_value=partner.answer(operation("op-1", "reversal", points=40, reverses="op-0", target=target))
    )
    reversal = await connector.reverse("op-1", "op-0", 40)
    assert reversal.target is not None and reversal.target.reversed_points == 40
    sent = partner.sent(route.calls.last.request)
    assert (sent["reverses"], sent["points"]) == ("op-0", 40)


async def test_whole_reverse_sends_no_points(partner: MockPartner, connector: PartnerConnector) -> None:
    route = partner.route(Call.REVERSE).mock(
        return_value=partner.answer(
            operation(
                "op-1", "reversal", reverses="op-0", target=operation("op-0", status="reversed", reversed_points=100)
            )
        )
    )
    reversal = await connector.reverse("op-1", "op-0")
    assert reversal.target is not None and reversal.target.status is OperationState.REVERSED
    assert partner.sent(route.calls.last.request).get("points") is None


async def test_match_tier_sends_tier_and_expiry(partner: MockPartner, connector: PartnerConnector) -> None:
    expires = datetime(2027, 2, 25, tzinfo=UTC)
    route = partner.route(Call.MATCH_TIER).mock(
        return_value=partner.answer(
            operation(
                kind="tier_match", points=None, balance_after=None, tier="Gold", expires_at="2027-02-25T00:00:00Z"
            )
        )
    )
    result = await connector.match_tier("op-1", "alice", "Gold", expires)
    assert (result.tier, result.expires_at) == ("Gold", expires)
    assert datetime.fromisoformat(partner.sent(route.calls.last.request)["expires_at"]) == expires


async def test_operation_status_of_a_voided_id(partner: MockPartner, connector: PartnerConnector) -> None:
    partner.route(Call.OPERATION_STATUS).mock(
        return_value=partner.answer(
            operation(kind=None, status="voided", member_ref=None, points=None, balance_after=None)
        )
    )
    status = await connector.operation_status("op-1")
    assert status is not None and status.status is OperationState.VOIDED and status.kind is None


async def test_operation_status_of_an_unknown_id_is_none(partner: MockPartner, connector: PartnerConnector) -> None:
    partner.route(Call.OPERATION_STATUS).mock(return_value=partner.answer(None))
    assert await connector.operation_status("op-1") is None


async def test_graphql_enums_in_capitals_read_the_same(connector: PartnerConnector, partner: MockPartner) -> None:
    partner.route(Call.DEBIT).mock(return_value=partner.answer(operation(kind="DEBIT", status="REVERSED")))
    assert (await connector.debit("op-1", "alice", 100)).status is OperationState.REVERSED


@pytest.mark.parametrize(
    ("points", "operation_id"),
    [(0, "op-1"), (-5, "op-1"), (1.5, "op-1"), (True, "op-1"), (2**53, "op-1"), (10, "bad id"), (10, "")],
)
async def test_arguments_that_break_the_contract_are_refused_before_sending(
    connector: PartnerConnector, partner: MockPartner, points: object, operation_id: str
) -> None:
    route = partner.route(Call.DEBIT)
    with pytest.raises(ValueError):
        await connector.debit(operation_id, "alice", points)  # type: ignore[arg-type]
    assert not route.called
