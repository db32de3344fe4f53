"""What can go wrong when the exchange calls a partner: three kinds the saga must tell apart.

Every failure of a connector call is a :class:`PartnerError`, and always exactly one of:

* :class:`PartnerRefusal` — **definitely not applied.** The partner answered and refused with a
  contract code (insufficient points, unknown member, conflict, ...). Retrying the same request
  gets the same refusal.
* :class:`PartnerUnavailable` — **definitely not applied, and the partner did not get it.** The
  request never left, or the partner rejected it before looking at it: the circuit breaker is
  open, the connection was refused, no access token could be had, the token was refused. Safe
  to send again later.
* :class:`OutcomeUnknown` — **may or may not have been applied.** The request was sent and no
  usable answer came back: a timeout, the connection dropped, a 5xx, a malformed answer. For a
  write only the partner knows; ask it with ``operation_status`` (or void the operation with
  ``reverse``) before deciding anything.

A call that retried reports the worst knowledge it has: once any attempt of a write may have
been applied, the call fails with :class:`OutcomeUnknown` even if a later attempt could not be
sent at all, or was refused as a conflict (:class:`OperationConflict`: the partner holds
another request under the exchange's id, which that attempt, applied otherwise than sent, may
be).

All of them are :class:`~exchange.errors.ExchangeError`s, so the API maps them to GraphQL errors
(``PARTNER_UNAVAILABLE``, ``INSUFFICIENT_POINTS``, ``NOT_FOUND``, ``IDEMPOTENCY_CONFLICT``,
``PARTNER_REFUSED``) without knowing about connectors.
"""

from __future__ import annotations

import logging
from typing import Any

from exchange.connectors.contract import ContractCode
from exchange.errors import ErrorCode, ExchangeError

logger = logging.getLogger("exchange.connectors")

#: How the exchange words a partner's refusal; ``detail`` is the partner's own words (its
#: problem's detail), which a page shows as the partner's (:mod:`exchange.web.said`).
REFUSED = "partner {program} refused {call}: {detail}"
#: The most of a partner's own words a message carries (:func:`clipped`): a message goes into
#: API errors, pages and log lines, and a saga row keeps 500 characters of it, so the words
#: of a partner answering a megabyte of them are their beginning, kept whole with the
#: exchange's words around them.
PARTNER_WORDS = 300


def clipped(words: str, most: int = PARTNER_WORDS) -> str:
    """``words`` if they are at most ``most`` characters, else their beginning and "…"."""
    return words if len(words) <= most else words[: most - 1] + "…"


class PartnerError(ExchangeError):
    """A call to a partner's points system failed; see the module docstring for the kinds."""

    code = ErrorCode.PARTNER_UNAVAILABLE

    def __init__(self, message: str, *, program_id: str, call: str, operation_id: str | None = None) -> None:
        # Only the program is a client-facing detail; call and operation id are for logs.
        super().__init__(message, program=program_id)
        self.program_id = program_id
        self.call = call
        self.operation_id = operation_id


def transport_failure(
    kind: type[PartnerError],
    message: str,
    cause: BaseException,
    *,
    program_id: str,
    call: str,
    operation_id: str | None = None,
) -> PartnerError:
    """The partner could not be talked to: ``message`` says so, as callers read it (a member's
    linking, their accounts, a conversion's failure); ``cause``, the transport's own error, goes
    to the log only. Its text names the address the exchange calls the partner at and the HTTP
    library's internals: for operators, not for every caller of the API."""
    logger.warning("%s: %r", message, cause)
    return kind(message, program_id=program_id, call=call, operation_id=operation_id)


# -- definitely not applied: the partner said no -------------------------------------------


class PartnerRefusal(PartnerError):
    """The partner refused with a contract code; nothing was applied."""

    code = ErrorCode.PARTNER_REFUSED
    reason: ContractCode = ContractCode.INVALID_REQUEST

    def __init__(
        self,
        message: str,
        *,
        program_id: str,
        call: str,
        operation_id: str | None = None,
        facts: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, program_id=program_id, call=call, operation_id=operation_id)
        #: Extra members of the partner's problem document (e.g. ``balance``), for the caller.
        self.facts = facts or {}


class InvalidRequest(PartnerRefusal):
    """The partner found the request malformed: a bug on the exchange's side."""

    reason = ContractCode.INVALID_REQUEST


class UnknownMember(PartnerRefusal):
    code = ErrorCode.NOT_FOUND
    reason = ContractCode.UNKNOWN_MEMBER


class OperationConflict(PartnerRefusal):
    """The operation id was used before with a different request."""

    code = ErrorCode.IDEMPOTENCY_CONFLICT
    reason = ContractCode.OPERATION_CONFLICT


class OperationVoided(PartnerRefusal):
    """A reversal voided this id before the operation arrived; it never applies."""

    reason = ContractCode.OPERATION_VOIDED


class InsufficientPoints(PartnerRefusal):
    code = ErrorCode.INSUFFICIENT_POINTS
    reason = ContractCode.INSUFFICIENT_POINTS


class ReversalExceedsOriginal(PartnerRefusal):
    """Less than the requested points is left to reverse (``facts['reversible_points']``)."""

    reason = ContractCode.REVERSAL_EXCEEDS_ORIGINAL


class NotReversible(PartnerRefusal):
    """The named operation is a reversal, which cannot itself be reversed."""

    reason = ContractCode.NOT_REVERSIBLE


class UnknownTier(PartnerRefusal):
    reason = ContractCode.UNKNOWN_TIER


REFUSALS: dict[ContractCode, type[PartnerRefusal]] = {
    cls.reason: cls
    for cls in (
        InvalidRequest,
        UnknownMember,
        OperationConflict,
        OperationVoided,
        InsufficientPoints,
        ReversalExceedsOriginal,
        NotReversible,
        UnknownTier,
    )
}


# -- definitely not applied: the request never reached the partner's rules ----------------------


class PartnerUnavailable(PartnerError):
    """The request was not sent, or was turned away before the partner looked at it."""


class CircuitOpen(PartnerUnavailable):
    """The partner failed repeatedly; calls fail fast until the cool-down allows a probe."""


class PartnerUnreachable(PartnerUnavailable):
    """No connection could be made: refused, reset while connecting, name not resolved."""


class PartnerConnectTimeout(PartnerUnreachable):
    """No connection within the partner's timeout (or no free one in the pool): not sent."""


class PartnerTokenUnavailable(PartnerUnavailable):
    """The partner's token endpoint failed (5xx, timeout, malformed answer)."""


class PartnerAuthenticationFailed(PartnerUnavailable):
    """The partner refused the exchange's credentials or token (401/403, invalid_client)."""


class PartnerNotConfigured(PartnerUnavailable):
    """The exchange cannot call this partner: its connector settings are incomplete."""


# -- outcome unknown: sent, and no usable answer -------------------------------------------


class OutcomeUnknown(PartnerError):
    """The request may have been applied; only the partner's operation status can tell."""


class PartnerTimeout(OutcomeUnknown):
    """No (complete) answer within the partner's timeout."""


class PartnerConnectionLost(OutcomeUnknown):
    """The connection broke after the request was sent."""


class PartnerServerError(OutcomeUnknown):
    """The partner answered with a 5xx status."""


class PartnerProtocolError(OutcomeUnknown):
    """The answer does not follow the contract: not JSON, wrong shape, float points, odd status."""
