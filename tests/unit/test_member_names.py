"""The name comparison of membership validation: what is only spelling, and what is another name."""

from __future__ import annotations

import pytest

from exchange.connectors.contract import Eligibility, Verification
from exchange.errors import ErrorCode
from exchange.members.names import same_name
from exchange.members.validation import (
    AccountIneligible,
    NameMismatch,
    NameRequired,
    check_name_given,
    validate_membership,
)


@pytest.mark.parametrize(
    ("given", "recorded"),
    [
        ("ＡＢＣ", "ABC"),  # full width is half width (NFKC)
        ("alice chen", "ALICE CHEN"),  # case
        ("  Alice   Chen ", "Alice Chen"),  # spacing
        ("王 小明", "王小明"),  # no spaces count in a Chinese name
        ("王　小明", "王小明"),  # nor an ideographic space
        ("Chen Mei", "MEI CHEN"),  # given and family name in either order
        ("Chen, Mei", "Mei Chen"),  # family name first, with a comma
        ("Chen-Mei Lin", "Lin Chen Mei"),  # a hyphen separates words
        ("O'Brien Sean", "Sean OBrien"),  # an apostrophe is only spelling
        ("Ｃｈｅｎ　Ｍｅｉ", "mei chen"),  # full width, ideographic space, order and case at once
        ("José Núñez", "NÚÑEZ JOSÉ"),  # accents are kept, and compared case-blind
    ],
)
def test_spellings_of_one_name_are_the_same_name(given: str, recorded: str) -> None:
    assert same_name(given, recorded)


@pytest.mark.parametrize(
    ("given", "recorded"),
    [
        ("Chen Mei", "Chen Mei Lin"),  # a word more
        ("Chen Mei", "Chen Mai"),  # another letter
        ("王小明", "王小華"),  # another character
        ("王小明", "小明王"),  # a Chinese name keeps its order
        ("陳美", "陈美"),  # traditional and simplified are not folded (out of scope)
        ("Chen Mei", "陳美"),  # no transliteration
        ("Jose Nunez", "José Núñez"),  # nor are accents dropped
        ("", ""),  # nothing is nobody's name
        ("...", "..."),
    ],
)
def test_another_name_is_not_the_same_name(given: str, recorded: str) -> None:
    assert not same_name(given, recorded)


def verified(name: str | None, eligibility: Eligibility = Eligibility.ELIGIBLE) -> Verification:
    return Verification(member_ref="m", verified=True, name=name, eligibility=eligibility)


@pytest.mark.parametrize(
    ("eligibility", "code"),
    [
        (Eligibility.INACTIVE, ErrorCode.ACCOUNT_INACTIVE),
        (Eligibility.SUSPENDED, ErrorCode.ACCOUNT_SUSPENDED),
        (Eligibility.NOT_ACTIVATED, ErrorCode.ACCOUNT_NOT_ACTIVATED),
        (Eligibility.TIER_NOT_ALLOWED, ErrorCode.TIER_NOT_ALLOWED),
    ],
)
def test_an_ineligible_account_is_refused_with_its_code_whatever_the_name(
    eligibility: Eligibility, code: ErrorCode
) -> None:
    with pytest.raises(AccountIneligible) as refused:
        validate_membership("p", verified("Alice Chen", eligibility), "Alice Chen", name_required=False)
    assert refused.value.extensions() == {
        "code": code.value,
        "field": "memberRef",
        "program": "p",
        "eligibility": eligibility.value,
    }


def test_a_name_is_checked_when_given_and_required_only_where_the_program_says() -> None:
    validate_membership("p", verified("Alice Chen"), None, name_required=False)
    validate_membership("p", verified(None), "Alice Chen", name_required=False)  # nothing to check against
    with pytest.raises(NameMismatch):
        validate_membership("p", verified(None), "Alice Chen", name_required=True)
    with pytest.raises(NameMismatch):
        validate_membership("p", verified("Alice Chen"), "Bob Chen", name_required=False)
    with pytest.raises(NameRequired):
        check_name_given("p", None, required=True)
    assert check_name_given("p", "　王小明 ", required=True) == "王小明"
