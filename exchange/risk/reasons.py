"""The reasons the exchange itself writes into the risk decision log, each from one template.

The log keeps a reason as English text (what ``riskDecisions`` and the CLI show); a gate's
refusal says the same text. A page says it in the reader's language instead:
:func:`written_by` finds which template wrote a reason and the values it was written with, and
the page translates the template and fills them in (:mod:`exchange.web.said`). A reason no
template wrote (a staff member's, a partner's refusal) is shown as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from string import Formatter

from exchange.risk.policy import Velocity, duration
from exchange.text import counted_pattern, fill

#: Fields that hold a whole number (grouped with commas, as ``f"{n:,}"`` writes it). A field
#: whose format spec is a noun (``{points:point}``) is a count with its noun
#: (:func:`~exchange.text.fill`): a whole number too.
NUMBERS = frozenset({"limit", "count", "points", "made"})
#: How a whole number is written in a reason.
NUMBER = "[0-9][0-9,]*"


@dataclass(frozen=True, slots=True)
class Reason:
    """A reason's template (``str.format`` fields, each written as plain text; those in
    :data:`NUMBERS` as whole numbers; ``{name:noun}``, a count with its noun; a field named
    twice holds the same value both times), named by ``key``."""

    key: str
    template: str
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = []
        named: set[str] = set()
        for literal, name, noun, _ in Formatter().parse(self.template):
            parts.append(re.escape(literal))
            if name is None:
                continue
            if name in named:
                parts.append(f"(?P={name})")  # said again: the same value
                continue
            named.add(name)
            if noun:
                parts.append(counted_pattern(name, noun, NUMBER))
            else:
                parts.append(f"(?P<{name}>{NUMBER})" if name in NUMBERS else f"(?P<{name}>.+?)")
        object.__setattr__(self, "_pattern", re.compile("".join(parts), re.DOTALL))

    def text(self, **values: object) -> str:
        """The reason written with ``values`` (a count, for a field with a noun, as an ``int``)."""
        return fill(self.template, **values)

    def values(self, written: str) -> dict[str, str] | None:
        """The values ``written`` was written with, if this template wrote it."""
        found = self._pattern.fullmatch(written)
        return None if found is None else found.groupdict()


#: Every gate passed: the outflow goes on.
ALLOWED = Reason("ALLOWED", "every gate passed")
#: Held for staff review (rule ``HOLD_ABOVE``); ``limit`` is the points the program lets go unreviewed.
HELD_ABOVE = Reason("HELD_ABOVE", "above {limit:point}: waits for staff review")
#: Refused in the cooling period after linking; ``opens_at`` is an ISO 8601 moment.
COOLING_PERIOD = Reason("COOLING_PERIOD", "points of an account linked at {program} move only from {opens_at}")
#: Refused: the two programs' accounts have different names for the member.
NAMES_DIFFER = Reason("NAMES_DIFFER", "{program} and {other} have different names for the member")
#: A staff member approved a held outflow.
APPROVED = Reason("APPROVED", "approved by staff")
#: Why a held conversion or redemption failed when a staff member rejected it: ``reason`` is
#: their own words (the decision log keeps them alone, as the reason of the ``REJECT``).
REJECTED = Reason("REJECTED", "rejected by staff: {reason}")
#: A hold ended before anyone decided it.
UNREVIEWED = Reason("UNREVIEWED", "held for staff review, and not reviewed before the hold ended: nothing moved")
#: A held redemption its member or its publisher cancelled (``by``: ``member``, ``publisher``).
CANCELLED_WHILE_HELD = Reason(
    "CANCELLED_WHILE_HELD", "cancelled by the {by} while held for review: nothing was debited"
)
#: An account linked after its partner verified it (and the member's name, in the first).
LINK_VERIFIED_WITH_NAME = Reason("LINK_VERIFIED_WITH_NAME", "verified by {program}; name and eligibility checked")
LINK_VERIFIED = Reason("LINK_VERIFIED", "verified by {program}; eligibility checked")
#: Refused by a velocity limit (:func:`velocity`): ``per`` is ``member`` or ``account``, ``window``
#: a :func:`~exchange.risk.policy.duration`; the limit that counts both names the one broken.
VELOCITY_COUNT = Reason(
    "VELOCITY_COUNT",
    "{program} allows at most {count:conversion or redemption} per {per} in {window}; "
    "this would make {made:conversion or redemption}",
)
VELOCITY_POINTS = Reason(
    "VELOCITY_POINTS", "{program} allows at most {points:point} per {per} in {window}; this would make {made:point}"
)
VELOCITY_BOTH_OVER_COUNT = Reason(
    "VELOCITY_BOTH_OVER_COUNT",
    "{program} allows at most {count:conversion or redemption} or {points:point} per {per} in {window}; "
    "this would make {made:conversion or redemption}",
)
VELOCITY_BOTH_OVER_POINTS = Reason(
    "VELOCITY_BOTH_OVER_POINTS",
    "{program} allows at most {count:conversion or redemption} or {points:point} per {per} in {window}; "
    "this would make {made:point}",
)

REASONS = (
    # The limits of both kinds first: the one-kind templates would read them too, less exactly.
    VELOCITY_BOTH_OVER_COUNT,
    VELOCITY_BOTH_OVER_POINTS,
    VELOCITY_COUNT,
    VELOCITY_POINTS,
    ALLOWED,
    HELD_ABOVE,
    COOLING_PERIOD,
    NAMES_DIFFER,
    APPROVED,
    UNREVIEWED,
    CANCELLED_WHILE_HELD,
    LINK_VERIFIED_WITH_NAME,
    LINK_VERIFIED,
)


def velocity(program: str, rule: Velocity, *, made: int, over_points: bool) -> str:
    """Why ``rule`` of ``program`` refuses: the outflow would make ``made`` conversions and
    redemptions, or (``over_points``) ``made`` points, in its window."""
    values: dict[str, str | int] = {"program": program, "per": rule.per.value, "window": duration(rule.window)}
    values["made"] = made
    if rule.max_count is not None:
        values["count"] = rule.max_count
    if rule.max_points is not None:
        values["points"] = rule.max_points
    if rule.max_count is not None and rule.max_points is not None:
        reason = VELOCITY_BOTH_OVER_POINTS if over_points else VELOCITY_BOTH_OVER_COUNT
    else:
        reason = VELOCITY_POINTS if over_points else VELOCITY_COUNT
    return reason.text(**values)


def written_by(text: str) -> tuple[Reason, dict[str, str]] | None:
    """The template that wrote ``text`` (a decision's reason, or a gate's refusal, which
    says the same) and its values, or ``None``. A rejection's reason is the staff member's
    own words, whatever they look like: do not ask this of it."""
    for reason in REASONS:
        if (values := reason.values(text)) is not None:
            return reason, values
    return None
