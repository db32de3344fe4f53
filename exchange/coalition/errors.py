"""Refusals of writes to the coalition point, named by the connector contract's codes.

The internal connector (``exchange.coalition.connector``) turns each into the same refusal a
partner's answer with that code becomes, so the sagas cannot tell the point from a partner.
Nothing was applied when one is raised.
"""

from __future__ import annotations

from typing import Any

from exchange.text import counted


class CoalitionRefusal(Exception):
    """``reason``: the contract code (``INSUFFICIENT_POINTS``, ...); ``facts``: its extra members."""

    def __init__(self, reason: str, detail: str, **facts: Any) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.facts = facts


def unknown_member(member_ref: str) -> CoalitionRefusal:
    return CoalitionRefusal("UNKNOWN_MEMBER", f"no member {member_ref!r} at the coalition point")


def insufficient(member_ref: str, balance: int, points: int) -> CoalitionRefusal:
    return CoalitionRefusal(
        "INSUFFICIENT_POINTS",
        f"member {member_ref} has {counted(balance, 'coalition point')}, {points} asked",
        balance=balance,
    )


def conflict(operation_id: str) -> CoalitionRefusal:
    return CoalitionRefusal("OPERATION_CONFLICT", f"{operation_id} was recorded with another request")


def voided(operation_id: str) -> CoalitionRefusal:
    return CoalitionRefusal("OPERATION_VOIDED", f"{operation_id} was voided by a reversal")


def not_reversible(operation_id: str) -> CoalitionRefusal:
    return CoalitionRefusal("NOT_REVERSIBLE", f"{operation_id} is a reversal")


def exceeds(operation_id: str, left: int) -> CoalitionRefusal:
    return CoalitionRefusal(
        "REVERSAL_EXCEEDS_ORIGINAL",
        f"{counted(left, 'point')} of {operation_id} {'is' if left == 1 else 'are'} left to reverse",
        reversible_points=left,
    )


def invalid(detail: str) -> CoalitionRefusal:
    return CoalitionRefusal("INVALID_REQUEST", detail)
