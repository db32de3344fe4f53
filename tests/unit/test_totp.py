"""One-time codes: which are accepted, and how their secret is kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from exchange.errors import ConfigurationError
from exchange.people import totp

NOW = datetime(2026, 12, 1, 12, 0, 10, tzinfo=UTC)
KEY_SECRET = "k" * 40


def test_the_current_code_matches_its_step() -> None:
    secret = totp.new_totp_secret()
    assert totp.matching_step(secret, totp.code_at(secret, NOW), NOW) == pyotp.TOTP(secret).timecode(NOW)


@pytest.mark.parametrize(("offset", "accepted"), [(-60, False), (-30, True), (30, True), (60, False)])
def test_a_code_one_step_away_is_accepted_and_two_are_not(offset: int, accepted: bool) -> None:
    secret = totp.new_totp_secret()
    code = totp.code_at(secret, NOW + timedelta(seconds=offset))
    assert (totp.matching_step(secret, code, NOW) is not None) is accepted


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "１２３４５６", "12 34 5"])
def test_malformed_codes_match_nothing(code: str) -> None:
    assert totp.matching_step(totp.new_totp_secret(), code, NOW) is None


def test_a_code_typed_with_spaces_matches() -> None:
    secret = totp.new_totp_secret()
    code = totp.code_at(secret, NOW)
    assert totp.matching_step(secret, f" {code[:3]} {code[3:]} ", NOW) is not None


def test_the_provisioning_uri_names_the_exchange_and_the_person() -> None:
    secret = totp.new_totp_secret()
    uri = totp.provisioning_uri(secret, "alice")
    assert uri.startswith("otpauth://totp/Coalition%20points%20exchange:alice?")
    assert f"secret={secret}" in uri
    assert pyotp.parse_uri(uri).secret == secret


def test_a_sealed_secret_opens_only_for_its_person_and_with_the_key() -> None:
    secret = totp.new_totp_secret()
    sealed = totp.seal_secret(secret, "alice", KEY_SECRET)
    assert secret not in sealed
    assert totp.open_secret(sealed, "alice", KEY_SECRET) == secret
    with pytest.raises(ConfigurationError):
        totp.open_secret(sealed, "mallory", KEY_SECRET)
    with pytest.raises(ConfigurationError, match="EXCHANGE_KEY_ENCRYPTION_SECRET"):
        totp.open_secret(sealed, "alice", "another secret of forty characters......")
