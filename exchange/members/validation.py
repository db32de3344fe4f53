"""Membership validation: what linking an account checks besides the verification value.

The partner answers a verification with the name it has for the member and whether the
account may transfer points (``partners/CONTRACT.md``). Linking refuses, each with its own
code: an account the partner reports ineligible (inactive, suspended, not activated, a tier
that may not transfer), and a name the member gave that is not the partner's
(:mod:`exchange.members.names`). A program that refuses name mismatches
(``[risk] refuse_name_mismatch``) requires the name, and a name on the partner's side.
"""

from __future__ import annotations

import unicodedata

from exchange.connectors.contract import Eligibility, Verification
from exchange.errors import BadUserInput, ErrorCode, ExchangeError
from exchange.members.names import same_name

#: The longest name a member may give when linking.
NAME_MAX_LENGTH = 200


class MembershipRefused(ExchangeError):
    """Linking refused for what the partner says of the account; ``rule`` names the check."""

    rule: str = ""


class AccountIneligible(MembershipRefused):
    """The partner reports the account may not transfer points (``extensions.eligibility``)."""

    def __init__(self, program_id: str, eligibility: Eligibility) -> None:
        self.code = _INELIGIBLE[eligibility]
        self.rule = self.code.value
        super().__init__(
            f"{program_id} reports this account {_WHY[eligibility]}",
            field="memberRef",
            program=program_id,
            eligibility=eligibility.value,
        )


class NameMismatch(MembershipRefused):
    code = ErrorCode.NAME_MISMATCH
    rule = ErrorCode.NAME_MISMATCH.value

    def __init__(self, program_id: str, reason: str) -> None:
        super().__init__(f"{program_id} {reason}", field="name", program=program_id)


class NameRequired(BadUserInput):
    def __init__(self, program_id: str) -> None:
        super().__init__(f"give your name as {program_id} has it to link an account there", field="name")


_INELIGIBLE = {
    Eligibility.INACTIVE: ErrorCode.ACCOUNT_INACTIVE,
    Eligibility.SUSPENDED: ErrorCode.ACCOUNT_SUSPENDED,
    Eligibility.NOT_ACTIVATED: ErrorCode.ACCOUNT_NOT_ACTIVATED,
    Eligibility.TIER_NOT_ALLOWED: ErrorCode.TIER_NOT_ALLOWED,
}

_WHY = {
    Eligibility.INACTIVE: "inactive: reactivate it with the program first",
    Eligibility.SUSPENDED: "suspended: contact the program",
    Eligibility.NOT_ACTIVATED: "not yet activated: complete its activation with the program first",
    Eligibility.TIER_NOT_ALLOWED: "at a tier that may not transfer points",
}


def check_name_given(program_id: str, name: str | None, *, required: bool) -> str | None:
    """The member's name as given, in compatibility form (NFKC: an ideographic space is a
    space) and stripped, before asking the partner anything."""
    if name is not None:
        name = unicodedata.normalize("NFKC", name).strip()
        if not name or len(name) > NAME_MAX_LENGTH or not name.isprintable():
            raise BadUserInput(f"name must be 1 to {NAME_MAX_LENGTH} printable characters", field="name")
    if name is None and required:
        raise NameRequired(program_id)
    return name


def validate_membership(program_id: str, answer: Verification, name: str | None, *, name_required: bool) -> None:
    """Refuse a verified account that may not be linked: ineligible first (whatever the name),
    then a name that is not the partner's. ``name`` was checked by :func:`check_name_given`."""
    if answer.eligibility is not Eligibility.ELIGIBLE:
        raise AccountIneligible(program_id, answer.eligibility)
    if name is None:
        return
    if answer.name is None:
        if name_required:
            raise NameMismatch(program_id, "keeps no name for this account to check yours against")
        return
    if not same_name(name, answer.name):
        raise NameMismatch(program_id, "has another name for this account")
