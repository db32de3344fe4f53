"""The reasons the exchange itself writes into the risk decision log, each from one template.

The log keeps a reason as English text (what ``riskDecisions`` and the CLI show). A page for
staff says it in the reader's language instead: :func:`read` finds which template wrote a
reason and the values it was written with, and the page translates the template and fills
them in. A reason no template wrote (a staff member's, a partner's refusal) is shown as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from string import Formatter

from exchange.risk.models import Decision, RiskDecision


@dataclass(frozen=True, slots=True)
class Reason:
    """A reason's template (``str.format`` fields, each written as plain text), named by ``key``."""

    key: str
    template: str
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = []
        for literal, name, _, _ in Formatter().parse(self.template):
            parts.append(re.escape(literal))
            if name is not None:
                parts.append(f"(?P<{name}>.+?)")
        object.__setattr__(self, "_pattern", re.compile("".join(parts), re.DOTALL))

    def text(self, **values: str) -> str:
        """The reason written with ``values``."""
        return self.template.format(**values)

    def values(self, written: str) -> dict[str, str] | None:
        """The values ``written`` was written with, if this template wrote it."""
        found = self._pattern.fullmatch(written)
        return None if found is None else found.groupdict()


#: Every gate passed: the outflow goes on.
ALLOWED = Reason("ALLOWED", "every gate passed")
#: Held for staff review (rule ``HOLD_ABOVE``); ``limit`` is the points the program lets go unreviewed.
HELD_ABOVE = Reason("HELD_ABOVE", "above {limit} points: waits for staff review")
#: Refused in the cooling period after linking; ``opens_at`` is an ISO 8601 moment.
COOLING_PERIOD = Reason("COOLING_PERIOD", "points of an account linked at {program} move only from {opens_at}")
#: Refused: the two programs' accounts have different names for the member.
NAMES_DIFFER = Reason("NAMES_DIFFER", "{program} and {other} have different names for the member")
#: A staff member approved a held outflow.
APPROVED = Reason("APPROVED", "approved by staff")
#: A hold ended before anyone decided it.
UNREVIEWED = Reason("UNREVIEWED", "held for staff review, and not reviewed before the hold ended: nothing moved")
#: An account linked after its partner verified it (and the member's name, in the first).
LINK_VERIFIED_WITH_NAME = Reason("LINK_VERIFIED_WITH_NAME", "verified by {program}; name and eligibility checked")
LINK_VERIFIED = Reason("LINK_VERIFIED", "verified by {program}; eligibility checked")

REASONS = (
    ALLOWED,
    HELD_ABOVE,
    COOLING_PERIOD,
    NAMES_DIFFER,
    APPROVED,
    UNREVIEWED,
    LINK_VERIFIED_WITH_NAME,
    LINK_VERIFIED,
)


def read(row: RiskDecision) -> tuple[Reason, dict[str, str]] | None:
    """The template that wrote ``row``'s reason and its values, or ``None``: a rejection's
    reason is the staff member's own words, whatever they look like."""
    if row.decision == Decision.REJECT.value:
        return None
    for reason in REASONS:
        if (values := reason.values(row.reason)) is not None:
            return reason, values
    return None
