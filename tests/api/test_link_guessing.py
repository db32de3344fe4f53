"""Guessing the verification value (a PIN) of someone else's account through ``linkAccount``,
over HTTP against a gateway whose partners are sandboxes.

Without a limit, fifteen aliased guesses a request found alice's four-digit PIN at happy-card
in under a minute: the refusal after the right one ("linked to another member") differs from a
wrong one's. Failed proofs now count (exchange.federation.link_attempts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from exchange.app import create_app
from exchange.programs.declarations import read_partners_directory
from exchange.services.container import load_partners_directory
from exchange.serving import serving
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit
from exchange.testing.sandboxes import SandboxFleet
from tests.api.conftest import ON_SQLITE_TOO
from tests.clocks import MovableClock
from tests.conftest import SAMPLE_PARTNERS

LIMIT = 10  # EXCHANGE_TOKEN_FAILURE_LIMIT's default
WINDOW = timedelta(seconds=60)  # EXCHANGE_TOKEN_FAILURE_WINDOW's default
ME = "{ me { linkedAccounts { program { id } memberRef } } }"


def guesses(ref: str, values: list[str]) -> str:
    """One mutation trying each of ``values`` on ``ref``'s happy-card account, aliased g0, g1, ..."""
    fields = " ".join(
        f'g{n}: linkAccount(programId: "happy-card", memberRef: "{ref}", verification: "{value}") {{ memberRef }}'
        for n, value in enumerate(values)
    )
    return f"mutation {{ {fields} }}"


def outcomes(body: dict[str, Any]) -> list[str]:
    """Each alias's outcome in order: ``linked``, or its error's code and reason."""
    errors = {error["path"][0]: error for error in body.get("errors", [])}
    assert "INTERNAL_SERVER_ERROR" not in str(body), body
    said = []
    for alias in sorted(body["data"], key=lambda name: int(name[1:])):
        error = errors.get(alias)
        if error is None:
            said.append("linked")
        elif error["extensions"]["code"] == "LIMIT_EXCEEDED":
            assert error["extensions"]["field"] == "verification" and error["extensions"]["limit"] == "link_attempts"
            assert 0 < error["extensions"]["retryAfter"] <= WINDOW.total_seconds(), error
            said.append("limited")
        else:
            assert error["extensions"]["code"] == "BAD_USER_INPUT", error
            said.append("not " + error["extensions"]["field"])
    return said


@pytest.fixture
def gateway_settings(store_settings: Settings) -> Settings:
    return store_settings


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(datetime.now(UTC))


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[SandboxFleet]:
    sandboxes = SandboxFleet(read_partners_directory(SAMPLE_PARTNERS), tmp_path / "sandboxes")
    await sandboxes.start("wallet-pay", "happy-card")
    try:
        yield sandboxes
    finally:
        await sandboxes.stop()


@pytest.fixture
async def gateway(gateway_settings: Settings, fleet: SandboxFleet, clock: MovableClock) -> AsyncIterator[str]:
    await load_partners_directory(gateway_settings)
    app = create_app(gateway_settings, clock=clock, partner_base_urls=fleet.base_urls)
    async with serving(app, port=gateway_settings.port) as server:
        yield server.url


async def happy_card_refs(kit: ExchangeKit, token: str) -> list[str]:
    accounts = (await kit.data(ME, token))["me"]["linkedAccounts"]
    return [account["memberRef"] for account in accounts if account["program"]["id"] == "happy-card"]


@ON_SQLITE_TOO
async def test_guessing_an_accounts_verification_stops_at_the_limit_right_value_or_not(
    kit: ExchangeKit, clock: MovableClock
) -> None:
    mallory = await kit.member_token("wallet-pay", "mallory")
    wrong = [f"{pin:04d}" for pin in range(LIMIT)]  # alice's PIN is 1111
    tried = (await kit.graphql(guesses("alice", [*wrong, "1111"]), mallory)).json()
    assert outcomes(tried) == ["not verification"] * LIMIT + ["limited"]
    assert await happy_card_refs(kit, mallory) == []

    clock.advance(WINDOW + timedelta(seconds=1))
    assert outcomes((await kit.graphql(guesses("alice", ["1111"]), mallory)).json()) == ["linked"]
    assert await happy_card_refs(kit, mallory) == ["alice"]


async def test_a_wrong_verification_and_an_unknown_account_are_refused_alike_saying_what_to_check(
    kit: ExchangeKit,
) -> None:
    """The refusal says what to check, and which member ids happy-card has stays unknown."""
    mallory = await kit.member_token("wallet-pay", "mallory")
    wrong = (await kit.graphql(guesses("alice", ["0000"]), mallory)).json()["errors"]
    unknown = (await kit.graphql(guesses("nobody-at-all", ["1111"]), mallory)).json()["errors"]
    said = (
        "happy-card does not confirm this account with that verification: check the member id you have at "
        "happy-card and the verification value happy-card gave you (such as a PIN)"
    )
    assert [error["message"] for error in wrong + unknown] == [said, said]
    assert [error["extensions"]["field"] for error in wrong + unknown] == ["verification", "verification"]


async def test_one_members_guesses_do_not_lock_the_account_for_another_member(kit: ExchangeKit) -> None:
    mallory = await kit.member_token("wallet-pay", "mallory")
    alice = await kit.member_token("wallet-pay", "alice")
    await kit.graphql(guesses("alice", [f"{pin:04d}" for pin in range(LIMIT)]), mallory)
    assert outcomes((await kit.graphql(guesses("alice", ["1111"]), alice)).json()) == ["linked"]


async def test_guesses_spread_over_members_or_over_accounts_are_bounded_too(kit: ExchangeKit) -> None:
    # Every member together: ten times the limit on one account.
    tried = []
    for n in range(10):
        guesser = await kit.member_token("wallet-pay", f"guesser{n}")
        tried += outcomes(
            (await kit.graphql(guesses("alice", [f"{n}{pin:03d}" for pin in range(LIMIT)]), guesser)).json()
        )
    late = await kit.member_token("wallet-pay", "latecomer")
    tried += outcomes((await kit.graphql(guesses("alice", ["1111"]), late)).json())
    assert tried == ["not verification"] * (10 * LIMIT) + ["limited"]

    # One member, one value, every account: ten times the limit too.
    sprayer = await kit.member_token("wallet-pay", "sprayer")
    sprayed = []
    for batch in range(10):
        fields = " ".join(
            f'g{n}: linkAccount(programId: "happy-card", memberRef: "nobody{batch}x{n}", verification: "0000") '
            "{ memberRef }"
            for n in range(LIMIT)
        )
        sprayed += outcomes((await kit.graphql(f"mutation {{ {fields} }}", sprayer)).json())
    sprayed += outcomes((await kit.graphql(guesses("bob", ["0000"]), sprayer)).json())
    assert sprayed == ["not verification"] * (10 * LIMIT) + ["limited"]
