"""What a caller reads when a partner cannot be reached: which partner, and that it is
unavailable, never the address the exchange calls it at nor the transport's own error text.
Operators find those in the log."""

from __future__ import annotations

import logging

import pytest

from exchange.serving import free_port
from exchange.testing.kit import ExchangeKit
from exchange.testing.sandboxes import SandboxFleet

LINK = """
mutation { linkAccount(programId: "happy-card", memberRef: "alice", verification: "0000") { memberRef } }
"""


@pytest.fixture
def unreachable() -> str:
    """Where the exchange reaches happy-card here: a port nothing listens on."""
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
async def partner_base_urls(sandboxes: SandboxFleet, unreachable: str) -> dict[str, str]:
    await sandboxes.start("wallet-pay")
    return {**sandboxes.base_urls, "happy-card": f"http://{unreachable}"}


async def test_an_unreachable_partner_is_named_without_its_address(
    kit: ExchangeKit, unreachable: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = await kit.member_token("wallet-pay", "alice")
    with caplog.at_level(logging.WARNING, logger="exchange.connectors"):
        body = (await kit.graphql(LINK, token)).json()
    [error] = body["errors"]
    assert error["extensions"] == {"code": "PARTNER_UNAVAILABLE", "program": "happy-card"}, body
    assert "happy-card" in error["message"], body
    assert unreachable not in error["message"] and "Error" not in error["message"], body
    assert unreachable in caplog.text  # the operator still learns what failed
