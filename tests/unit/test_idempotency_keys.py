"""One rule for the idempotency keys of every write that moves points, whatever front end sent it."""

from __future__ import annotations

import pytest

from exchange.errors import BadUserInput
from exchange.idempotency import IDEMPOTENCY_KEY_RULE
from exchange.services.requests import idempotency_key


@pytest.mark.parametrize("key", ["", "   ", " key", "key ", "tab\tkey", "cl\u00e9", "\u3000", "k" * 101])
def test_a_key_breaking_the_rule_is_refused_naming_the_field_and_the_rule(key: str) -> None:
    with pytest.raises(BadUserInput) as refused:
        idempotency_key(key)
    assert refused.value.field == "idempotencyKey"
    assert IDEMPOTENCY_KEY_RULE in refused.value.message


@pytest.mark.parametrize("key", ["k", "my first conversion", "~" * 100, "2026-12-02T03:00:00Z/a.b_c"])
def test_a_key_keeping_the_rule_is_taken_as_it_is(key: str) -> None:
    assert idempotency_key(key) == key
