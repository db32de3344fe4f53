"""Attribution of a period's leg groups to obligations, and the check closing makes of them."""

from __future__ import annotations

import pytest

from exchange.settlement.errors import SettlementInvariantBroken
from exchange.settlement.netting import LegGroup, Obligation, attribute

ACCOUNTS = {1: "a", 2: "b", 3: "c"}


def obligations(*groups: LegGroup) -> list[Obligation]:
    return attribute(groups, ACCOUNTS, "2026-11", "TWD")


def test_a_spoke_owed_and_owing_its_hub_gives_an_obligation_each_way() -> None:
    """Over a period, b was paid 70 by a (b's spoke +70) and paid a 40 (b's spoke −40)."""
    assert obligations(LegGroup(1, None, owed=40, owing=70), LegGroup(2, 1, owed=70, owing=40)) == [
        Obligation("a", "b", 70),
        Obligation("b", "a", 40),
    ]


def test_a_spoke_on_its_hubs_own_account_owes_nothing() -> None:
    groups = (LegGroup(1, None, owed=0, owing=100), LegGroup(1, 1, owed=30, owing=0), LegGroup(2, 1, owed=70, owing=0))
    assert obligations(*groups) == [Obligation("a", "b", 70)]


@pytest.mark.parametrize(
    "groups",
    [
        # Legs naming no counterparty at all, as rows written around the ledger would.
        (LegGroup(1, None, owed=0, owing=50), LegGroup(2, None, owed=50, owing=0)),
        # A spoke naming an account other than its transaction's hub.
        (LegGroup(1, None, owed=0, owing=50), LegGroup(2, 3, owed=50, owing=0)),
    ],
)
def test_hub_legs_that_the_spokes_naming_them_do_not_balance_are_refused(groups: tuple[LegGroup, ...]) -> None:
    with pytest.raises(SettlementInvariantBroken, match="do not balance the spoke legs naming them"):
        obligations(*groups)


def test_a_spoke_between_accounts_of_no_participant_is_refused() -> None:
    with pytest.raises(SettlementInvariantBroken, match=r"ledger accounts \[9\] hold TWD"):
        obligations(LegGroup(1, None, owed=0, owing=50), LegGroup(9, 1, owed=50, owing=0))
