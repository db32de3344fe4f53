"""The federated view completes each account as its partner answers: once the slowest partner
has answered, only its own account is left to complete, not every account."""

from __future__ import annotations

import time

import pytest

from exchange.api.types.accounts import Account
from exchange.federation.accounts import AccountView
from exchange.testing.kit import ExchangeKit
from exchange.testing.sandboxes import SandboxFleet

SLOW_MS = 1000


async def test_each_account_is_completed_as_its_partner_answers(
    kit: ExchangeKit, fleet: SandboxFleet, bob: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fleet["formosa-air"].admin.set_faults(latency_ms=SLOW_MS)
    completed: dict[str, float] = {}
    from_view = Account.from_view

    def noting_when(view: AccountView) -> Account:
        completed[view.program.id] = time.monotonic()
        return from_view(view)

    monkeypatch.setattr(Account, "from_view", noting_when)
    asked = time.monotonic()

    accounts = (await kit.data("{ me { accounts { program { id } balance } } }", bob))["me"]["accounts"]

    assert {account["program"]["id"] for account in accounts} == {"harbor-bank", "formosa-air", "coalition"}
    assert completed["formosa-air"] - asked >= SLOW_MS / 1000
    # harbor-bank's account and the coalition point's were completed long before formosa-air answered.
    assert completed["formosa-air"] - completed["harbor-bank"] >= SLOW_MS / 2000
    assert completed["formosa-air"] - completed["coalition"] >= SLOW_MS / 2000
