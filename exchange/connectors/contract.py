"""The partner connector contract in code: the values on the wire, shared by both sides.

``partners/CONTRACT.md`` is the prose and ``partners/openapi.yaml`` and
``partners/contract.graphql`` the machine-readable form of what a partner's points system
serves. This module holds the parts of it that code needs: the refusal codes with their HTTP
statuses, and the models of every answer. The exchange's connectors parse partners' answers
with these models, and the sandbox partner serialises its answers with them; the contract
tests check the sandbox's answers against the OpenAPI document, which is written by hand, so
the two sides cannot drift together unnoticed.

Points are JSON integers: a float (``100.0``), a string (``"100"``) or a boolean is a
malformed answer, never rounded or coerced.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
)

from exchange.programs.models import TIER_NAME_LENGTH
from exchange.text import text_problem

#: The largest whole number a JSON number holds exactly (2^53 − 1); no amount may exceed it.
MAX_POINTS = 2**53 - 1

#: How far a partner's record of a tier match's ``expires_at`` may be from the expiry sent and
#: still be that expiry: a partner may keep times to the second, dropping or rounding the fraction.
EXPIRY_PRECISION = timedelta(seconds=1)


def same_expiry(recorded: datetime | None, sent: datetime) -> bool:
    """Whether a partner's ``recorded`` expiry of a tier match is the one ``sent`` (to
    :data:`EXPIRY_PRECISION`); none recorded is not."""
    return recorded is not None and abs(recorded - sent) < EXPIRY_PRECISION


def _path_segment_pattern(others: str, longest: int = 128) -> str:
    """1 to ``longest`` characters of letters, digits, ``.`` and ``others``, but not ``.`` nor
    ``..`` alone: in a REST address (``/members/{member_ref}``, ``/operations/{operation_id}``)
    those are no name but "this" and "the parent" directory, which a URL resolves before it is
    sent (``/members/..`` is the partner's base address). Written without a look-ahead, which
    pydantic's regular expressions do not have: a first character other than ``.``, or ``.``
    and one other, or ``..`` and at least one more."""
    named, any_ = f"[A-Za-z0-9{others}]", f"[A-Za-z0-9.{others}]"
    first = f"{named}{any_}{{0,{longest - 1}}}"
    second = rf"\.{named}{any_}{{0,{longest - 2}}}"
    third = rf"\.\.{any_}{{1,{longest - 2}}}"
    return f"^(?:{first}|{second}|{third})$"


#: Operation ids and member refs are opaque to the partner; these bound their size and alphabet.
OPERATION_ID_PATTERN = _path_segment_pattern("_:@-")
MEMBER_REF_PATTERN = _path_segment_pattern("_:@+-")


def wire_text_problem(value: str) -> str | None:
    """Why a partner's text cannot be stored, compared or shown, in words (``None``: it can).

    An answer holding a NUL or an unpaired surrogate (JSON can write both; PostgreSQL takes
    neither) is malformed, not a 500 at the row that would have kept it."""
    problem = text_problem(value, len(value))
    return None if problem is None else f"the text {problem}"


def _storable(value: str) -> str:
    if problem := wire_text_problem(value):
        raise ValueError(problem)
    return value


#: Any text in a partner's answer.
WireText = Annotated[str, AfterValidator(_storable)]
#: A tier's name: one of the program's declared names, so no longer than a declaration allows.
#: It is shown to members as the partner words it (their accounts, a status match's reason).
WireTier = Annotated[WireText, Field(max_length=TIER_NAME_LENGTH)]


class ContractCode(StrEnum):
    """Machine-readable reasons a partner gives for a definite refusal (nothing was applied)."""

    INVALID_REQUEST = "INVALID_REQUEST"
    UNKNOWN_MEMBER = "UNKNOWN_MEMBER"
    OPERATION_NOT_FOUND = "OPERATION_NOT_FOUND"
    OPERATION_CONFLICT = "OPERATION_CONFLICT"
    OPERATION_VOIDED = "OPERATION_VOIDED"
    INSUFFICIENT_POINTS = "INSUFFICIENT_POINTS"
    REVERSAL_EXCEEDS_ORIGINAL = "REVERSAL_EXCEEDS_ORIGINAL"
    NOT_REVERSIBLE = "NOT_REVERSIBLE"
    UNKNOWN_TIER = "UNKNOWN_TIER"


#: The HTTP status a REST partner answers with each code.
HTTP_STATUS: dict[ContractCode, int] = {
    ContractCode.INVALID_REQUEST: 400,
    ContractCode.UNKNOWN_MEMBER: 404,
    ContractCode.OPERATION_NOT_FOUND: 404,
    ContractCode.OPERATION_CONFLICT: 409,
    ContractCode.OPERATION_VOIDED: 409,
    ContractCode.INSUFFICIENT_POINTS: 422,
    ContractCode.REVERSAL_EXCEEDS_ORIGINAL: 422,
    ContractCode.NOT_REVERSIBLE: 422,
    ContractCode.UNKNOWN_TIER: 422,
}


def _lowercase(value: Any) -> Any:
    """Enum values are lowercase in REST and uppercase in GraphQL; both spell the same value."""
    return value.lower() if isinstance(value, str) else value


class OperationKind(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"
    REVERSAL = "reversal"
    TIER_MATCH = "tier_match"


class OperationState(StrEnum):
    """Where an operation the partner knows stands.

    ``applied``: in effect (``reversed_points`` may show a partial reversal).
    ``reversed``: wholly undone by reversals.
    ``voided``: never applied and never will be: a reversal named the id before the operation
    arrived, so the partner refuses it for good (``OPERATION_VOIDED``).
    ``pending``: accepted, to be settled later (a debit or credit only); it becomes ``applied``
    or ``failed``, and the partner says so by a signed callback or a result file.
    ``failed``: accepted pending, then not applied; nothing moved, and the id is spent.
    """

    APPLIED = "applied"
    REVERSED = "reversed"
    VOIDED = "voided"
    PENDING = "pending"
    FAILED = "failed"

    @property
    def settled(self) -> bool:
        """Whether the partner has decided (everything but ``pending``)."""
        return self is not OperationState.PENDING


class Eligibility(StrEnum):
    """Whether a member's account may take part in transfers, and if not, why not."""

    ELIGIBLE = "eligible"
    #: Closed or dormant: the member must reactivate it with the partner.
    INACTIVE = "inactive"
    #: Blocked by the partner (fraud, a dispute, a breach of its terms).
    SUSPENDED = "suspended"
    #: Enrolled, but the member has not completed activation (a first login, an e-mail confirmed).
    NOT_ACTIVATED = "not_activated"
    #: Active, but the member's tier may not transfer points (a junior or corporate account).
    TIER_NOT_ALLOWED = "tier_not_allowed"


Points = Annotated[StrictInt, Field(ge=0, le=MAX_POINTS)]
WireEligibility = Annotated[Eligibility, BeforeValidator(_lowercase)]
WireKind = Annotated[OperationKind, BeforeValidator(_lowercase)]
WireState = Annotated[OperationState, BeforeValidator(_lowercase)]


class _Wire(BaseModel):
    # Extra members are allowed: a partner may add fields, as the contract permits.
    model_config = ConfigDict(frozen=True, extra="ignore")


class ExpiringPoints(_Wire):
    """Points of the balance that lapse at the end of ``expires_on`` unless spent."""

    points: Annotated[StrictInt, Field(gt=0, le=MAX_POINTS)]
    expires_on: date


class MemberAccount(_Wire):
    """A member as the partner sees them: balance, tier and points about to expire."""

    member_ref: WireText
    balance: Points
    tier: WireTier = Field(description="The partner's own name of the member's tier right now.")
    tier_expires_at: AwareDatetime | None = Field(
        default=None, description="When a status-match tier lapses; null for the member's own tier."
    )
    expiring: tuple[ExpiringPoints, ...] = ()

    @field_validator("expiring")
    @classmethod
    def _of_the_balance(cls, expiring: tuple[ExpiringPoints, ...], info: ValidationInfo) -> tuple[ExpiringPoints, ...]:
        """Expiring points are part of the balance, and shown to the member as such."""
        balance = info.data.get("balance")  # absent if it was malformed: that error is the one
        if balance is not None and sum(item.points for item in expiring) > balance:
            raise ValueError(f"more points expiring than the balance of {balance}")
        return expiring


class Verification(_Wire):
    """Whether the verification value was the member's; when it was, the name the partner has
    for the member (``None`` if it keeps none) and whether the account is eligible. A partner
    that answers neither is taken to have an eligible account and no name on record."""

    member_ref: WireText
    verified: StrictBool
    name: Annotated[WireText, Field(min_length=1, max_length=200)] | None = None
    eligibility: WireEligibility = Eligibility.ELIGIBLE


class Operation(_Wire):
    """A debit, credit, reversal or tier match as the partner recorded it.

    A voided id (a reversal came first) has ``kind`` null and nothing but its state and time.
    A reversal carries ``reverses`` and, in ``target``, the reversed operation as it now stands.
    """

    # The contract's own alphabet, checked here too: a callback's id is looked up in the
    # database, and PostgreSQL refuses a NUL in a string outright.
    operation_id: Annotated[str, Field(pattern=OPERATION_ID_PATTERN)]
    kind: WireKind | None
    status: WireState
    member_ref: WireText | None = None
    points: Points | None = None
    reversed_points: Points = 0
    balance_after: Points | None = None
    reverses: WireText | None = None
    target: Operation | None = None
    tier: WireTier | None = None
    expires_at: AwareDatetime | None = None
    created_at: AwareDatetime


class Problem(_Wire):
    """An RFC 9457 problem document; ``code`` is the contract's machine-readable reason."""

    model_config = ConfigDict(frozen=True, extra="allow")

    code: WireText
    title: WireText | None = None
    status: int | None = None
    detail: WireText | None = None


class TokenResponse(_Wire):
    """RFC 6749 section 5.1: a client-credentials token."""

    # RFC 6749 appendix A.12: printable ASCII. It is sent back in an Authorization header,
    # which carries nothing else: not a line break (another header), a NUL or a euro sign.
    access_token: Annotated[str, Field(pattern=r"^[\x20-\x7e]+$")]
    token_type: str
    expires_in: Annotated[StrictInt, Field(gt=0)] | None = None
