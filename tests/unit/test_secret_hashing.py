"""Client secrets and passwords are checked with Argon2; a right client secret, once matched, is
checked again without it, and nothing else ever is."""

from __future__ import annotations

import pytest

from exchange.auth import hashing
from exchange.auth.hashing import hash_secret, new_client_secret, verify_client_secret, verify_secret


@pytest.fixture
def argon2_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The secrets Argon2 was asked to check, in order."""
    checked: list[str] = []
    hasher = hashing._HASHER

    class Counting:
        def hash(self, secret: str) -> str:
            return hasher.hash(secret)

        def verify(self, secret_hash: str, secret: str) -> bool:
            checked.append(secret)
            return hasher.verify(secret_hash, secret)

    monkeypatch.setattr(hashing, "_HASHER", Counting())
    return checked


def test_a_right_client_secret_is_checked_with_argon2_once(argon2_checks: list[str]) -> None:
    secret = new_client_secret()
    stored = hash_secret(secret)
    assert [verify_client_secret(stored, secret) for _ in range(3)] == [True, True, True]
    assert argon2_checks == [secret]


def test_a_wrong_client_secret_is_checked_with_argon2_every_time(argon2_checks: list[str]) -> None:
    stored = hash_secret(new_client_secret())
    guess = new_client_secret()
    assert [verify_client_secret(stored, guess) for _ in range(3)] == [False, False, False]
    assert argon2_checks == [guess] * 3


def test_a_secret_that_matched_an_earlier_hash_is_checked_anew_against_a_reset_one(argon2_checks: list[str]) -> None:
    secret = new_client_secret()
    assert verify_client_secret(hash_secret(secret), secret)
    reset = hash_secret(new_client_secret())  # the client's secret was reset
    assert not verify_client_secret(reset, secret)
    assert argon2_checks == [secret, secret]


def test_passwords_are_never_remembered(argon2_checks: list[str]) -> None:
    stored = hash_secret("correct horse")
    assert [verify_secret(stored, "correct horse") for _ in range(2)] == [True, True]
    assert argon2_checks == ["correct horse"] * 2


@pytest.mark.parametrize("check", [verify_secret, verify_client_secret])
def test_text_that_is_not_utf8_matches_nothing(check: object) -> None:
    assert callable(check)
    assert check(hash_secret("x"), "\ud800") is False
