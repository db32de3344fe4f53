"""Whose authority spends which points: the rule, as plain functions.

A member token is born from one partner's assertion and says so (``asserted_by``). Points held
at a program are debited — converted out of, or paid with for a reward — only under that
program's own authority: a token its partner asserted, or a consent the member gave through
that partner (:mod:`exchange.members.consents`), bound to the member, the program and the exact
points, and used once. Reading is not spending: any linked partner's token shows the federated
view, quotes, redemption prices and status-match previews, and links accounts.

The coalition point is the exception: the exchange holds it for the member, no partner does,
so no partner's assertion answers for it. A token spends it only if it carries the scope
``member:coalition`` (``DebitAuthority.spends_exchange_held``): a partner asks for it by
name, or leaves it out (``scope=member:read member:write``) so that its member tokens never
move the member's coalition points; a portal session, the member at the exchange itself,
holds it.

Without the rule, a partner could mint tokens that convert its members' points held at other
programs into its own, and be paid for them at settlement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from exchange.errors import ErrorCode, ExchangeError
from exchange.members.models import DebitConsent
from exchange.text import fill


class Refusal(StrEnum):
    """Why a debit lacks the authority it needs (``extensions.reason``)."""

    #: The token was asserted by another program, and the request presented no consent.
    NOT_ASSERTED = "NOT_ASSERTED"
    #: Points the exchange holds (the coalition point), under a token without ``member:coalition``.
    SCOPE_MISSING = "SCOPE_MISSING"
    #: A token or portal session that may only read (no ``member:write``): its partner's client
    #: lets the member tokens it obtains read, not spend.
    READ_ONLY = "READ_ONLY"
    #: No consent has the presented secret (never given, or forgotten a day after it expired).
    CONSENT_UNKNOWN = "CONSENT_UNKNOWN"
    CONSENT_OTHER_MEMBER = "CONSENT_OTHER_MEMBER"
    CONSENT_OTHER_PROGRAM = "CONSENT_OTHER_PROGRAM"
    CONSENT_OTHER_POINTS = "CONSENT_OTHER_POINTS"
    CONSENT_USED = "CONSENT_USED"
    #: The member unlinked their account at the program before the consent was used.
    CONSENT_REVOKED = "CONSENT_REVOKED"
    CONSENT_EXPIRED = "CONSENT_EXPIRED"


_MESSAGES = {
    Refusal.NOT_ASSERTED: "points held at {program} are spent only under the authority of {program}: "
    "use a member token {program} asserted, or a consent given through it (authorizeDebit)",
    Refusal.SCOPE_MISSING: "{program} points are the exchange's: they are spent only under a token "
    "with the scope member:coalition",
    Refusal.READ_ONLY: "this member's authority reads only (it lacks the scope member:write: the partner it came "
    "through lets its members' tokens only read), so it spends no {program} points",
    Refusal.CONSENT_UNKNOWN: "no consent to debit {program} has this id",
    Refusal.CONSENT_OTHER_MEMBER: "this consent was given by another member",
    Refusal.CONSENT_OTHER_PROGRAM: "this consent is for the points of another program, not of {program}",
    Refusal.CONSENT_OTHER_POINTS: "this consent is for {consented:point} of {program}, not {points}",
    Refusal.CONSENT_USED: "this consent to debit {program} has been used",
    Refusal.CONSENT_REVOKED: "this consent to debit {program} was revoked when your account at {program} was "
    "unlinked: ask {program} for a new one",
    Refusal.CONSENT_EXPIRED: "this consent to debit {program} has expired: ask {program} for a new one",
}


class AuthorityRequired(ExchangeError):
    """A debit of ``program``'s points without that program's authority; nothing was changed.

    ``extensions.program`` names the program whose authority is needed, ``extensions.reason``
    says what was missing (:class:`Refusal`).
    """

    code = ErrorCode.AUTHORITY_REQUIRED

    def __init__(self, program: str, reason: Refusal, *, field: str, points: int = 0, consented: int = 0) -> None:
        message = fill(_MESSAGES[reason], program=program, points=points, consented=consented)
        super().__init__(message, field=field, program=program, reason=reason.value)


@dataclass(frozen=True, slots=True)
class DebitAuthority:
    """The authority a member's request carries: the program whose partner asserted its
    token, and the secret of a consent the request presents (if any).

    ``exchange_held`` names the programs whose points the exchange itself holds for the member
    (the coalition point): no partner holds them, so a token spends them only if it carries
    the scope ``member:coalition`` (``spends_exchange_held``).
    """

    asserted_by: str
    consent: str | None = None
    exchange_held: frozenset[str] = frozenset()
    spends_exchange_held: bool = False
    #: Whether the request may spend at all (``member:write``): a read-only authority may not,
    #: whatever it was asserted by or presents.
    writes: bool = True


def require_own_assertion(asserted_by: str, program: str, *, field: str) -> None:
    """Only ``program``'s own assertion will do (giving a consent to debit ``program``)."""
    if asserted_by != program:
        raise AuthorityRequired(program, Refusal.NOT_ASSERTED, field=field)


def require_authority(authority: DebitAuthority, program: str, *, field: str) -> None:
    """Refuse at once a debit of ``program`` that can have no authority: a token another program
    asserted, and no consent (points the exchange holds itself need neither, but the scope
    ``member:coalition``). A presented
    consent is checked where it is used (:func:`consent_refusal`, in the unit of work that
    records the debit). An authority that may only read spends nothing."""
    if not authority.writes:
        raise AuthorityRequired(program, Refusal.READ_ONLY, field=field)
    if program in authority.exchange_held:
        if not authority.spends_exchange_held:
            raise AuthorityRequired(program, Refusal.SCOPE_MISSING, field=field)
    elif authority.consent is None:
        require_own_assertion(authority.asserted_by, program, field=field)


def consent_refusal(
    consent: DebitConsent | None, *, member_id: str, program: str, points: int, now: datetime
) -> Refusal | None:
    """Why ``consent`` does not authorize debiting ``points`` of ``program`` from ``member_id``
    now, or ``None`` if it does. Whose it is comes first, so another member's consent tells
    nothing more about itself."""
    if consent is None:
        return Refusal.CONSENT_UNKNOWN
    if consent.member_id != member_id:
        return Refusal.CONSENT_OTHER_MEMBER
    if consent.program_id != program:
        return Refusal.CONSENT_OTHER_PROGRAM
    if consent.points != points:
        return Refusal.CONSENT_OTHER_POINTS
    if consent.used_at is not None:
        return Refusal.CONSENT_USED
    if consent.revoked_at is not None:
        return Refusal.CONSENT_REVOKED
    if consent.expires_at <= now:
        return Refusal.CONSENT_EXPIRED
    return None
