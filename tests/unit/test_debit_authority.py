"""The rule of whose authority spends which points, as plain functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from exchange.errors import ErrorCode
from exchange.members.authority import (
    AuthorityRequired,
    DebitAuthority,
    Refusal,
    consent_refusal,
    require_authority,
    require_own_assertion,
)
from exchange.members.models import DebitConsent

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def consent(**changes: object) -> DebitConsent:
    terms: dict[str, object] = {
        "secret_hash": "0" * 64,
        "member_id": "mbr_alice",
        "program_id": "happy-card",
        "points": 1000,
        "created_at": NOW - timedelta(minutes=1),
        "expires_at": NOW + timedelta(minutes=4),
    }
    return DebitConsent(**(terms | changes))


def refusal_of(row: DebitConsent | None) -> Refusal | None:
    return consent_refusal(row, member_id="mbr_alice", program="happy-card", points=1000, now=NOW)


@pytest.mark.parametrize(
    "authority",
    [
        DebitAuthority(asserted_by="happy-card", writes=False),
        DebitAuthority(asserted_by="line-points", consent="secret", writes=False),
        DebitAuthority(
            asserted_by="happy-card", exchange_held=frozenset({"happy-card"}), spends_exchange_held=True, writes=False
        ),
    ],
)
def test_an_authority_that_may_only_read_spends_nothing(authority: DebitAuthority) -> None:
    with pytest.raises(AuthorityRequired) as refused:
        require_authority(authority, "happy-card", field="quoteId")
    assert refused.value.code is ErrorCode.AUTHORITY_REQUIRED
    assert refused.value.extensions()["reason"] == "READ_ONLY" and "member:write" in refused.value.message


def test_a_token_spends_the_points_of_the_program_that_asserted_it() -> None:
    require_authority(DebitAuthority(asserted_by="happy-card"), "happy-card", field="quoteId")


def test_a_token_asserted_by_another_program_is_refused_naming_the_program_whose_authority_is_needed() -> None:
    with pytest.raises(AuthorityRequired) as refused:
        require_authority(DebitAuthority(asserted_by="wallet-pay"), "happy-card", field="payWith")
    assert refused.value.code is ErrorCode.AUTHORITY_REQUIRED
    assert refused.value.extensions() == {
        "code": "AUTHORITY_REQUIRED",
        "field": "payWith",
        "program": "happy-card",
        "reason": "NOT_ASSERTED",
    }
    assert refused.value.message.startswith(
        "points held at happy-card are spent only under the authority of happy-card: use a member token happy-card"
    )


def test_coalition_points_are_spent_only_under_a_token_with_the_coalition_scope() -> None:
    held = frozenset({"coalition"})
    require_authority(
        DebitAuthority(asserted_by="happy-card", exchange_held=held, spends_exchange_held=True),
        "coalition",
        field="payWith",
    )
    with pytest.raises(AuthorityRequired) as refused:
        require_authority(DebitAuthority(asserted_by="happy-card", exchange_held=held), "coalition", field="payWith")
    assert refused.value.extensions()["reason"] == "SCOPE_MISSING"
    assert refused.value.extensions()["program"] == "coalition"


def test_a_presented_consent_defers_the_decision_to_where_it_is_used() -> None:
    require_authority(DebitAuthority(asserted_by="wallet-pay", consent="secret"), "happy-card", field="quoteId")


def test_only_the_programs_own_assertion_gives_a_consent() -> None:
    require_own_assertion("happy-card", "happy-card", field="program")
    with pytest.raises(AuthorityRequired) as refused:
        require_own_assertion("wallet-pay", "happy-card", field="program")
    assert refused.value.field == "program"


def test_a_matching_unused_unexpired_consent_authorizes_the_debit() -> None:
    assert refusal_of(consent()) is None


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (None, Refusal.CONSENT_UNKNOWN),
        (consent(member_id="mbr_bob"), Refusal.CONSENT_OTHER_MEMBER),
        (consent(program_id="wallet-pay"), Refusal.CONSENT_OTHER_PROGRAM),
        (consent(points=999), Refusal.CONSENT_OTHER_POINTS),
        (consent(used_at=NOW - timedelta(seconds=5)), Refusal.CONSENT_USED),
        (consent(revoked_at=NOW - timedelta(seconds=5)), Refusal.CONSENT_REVOKED),
        (consent(expires_at=NOW), Refusal.CONSENT_EXPIRED),
        (consent(member_id="mbr_bob", used_at=NOW, expires_at=NOW), Refusal.CONSENT_OTHER_MEMBER),
    ],
    ids=[
        "unknown",
        "other-member",
        "other-program",
        "other-points",
        "used",
        "revoked",
        "expired",
        "others-says-no-more",
    ],
)
def test_a_consent_that_does_not_fit_says_why(row: DebitConsent | None, reason: Refusal) -> None:
    assert refusal_of(row) is reason


def test_a_consent_refusal_names_the_consent_as_the_field() -> None:
    error = AuthorityRequired("happy-card", Refusal.CONSENT_OTHER_POINTS, field="consent", points=1000, consented=500)
    assert error.extensions()["field"] == "consent"
    assert error.message == "this consent is for 500 points of happy-card, not 1000"
