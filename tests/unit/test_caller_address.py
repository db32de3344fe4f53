"""Which address a failed client authentication counts against (exchange.auth.ratelimit)."""

from __future__ import annotations

import pytest

from exchange.auth.ratelimit import ANY_ADDRESS, caller_address


@pytest.mark.parametrize(
    ("host", "counted_as"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        (None, ANY_ADDRESS),
        ("testclient", "testclient"),
        ("h" * 100, "h" * 64),
    ],
)
def test_an_ipv6_caller_is_counted_by_its_64_block_and_others_by_their_address(
    host: str | None, counted_as: str
) -> None:
    assert caller_address(host) == counted_as
