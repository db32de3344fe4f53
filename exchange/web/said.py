"""What the exchange, a partner or a person wrote, as a page says it to its reader.

The exchange writes its reasons and refusals in English (the API's and the CLI's language).
A page in another language must not drop that English into its own sentences, so a text is
read back into what it says:

* a reason the exchange wrote from a template (:mod:`exchange.risk.reasons`: a gate's hold or
  refusal, a link's verification) becomes the template's key and its values (program names,
  points as numbers, moments as datetimes), which the page says in its reader's language
  (``templates/_said.html``);
* a partner's refusal (:data:`~exchange.connectors.errors.REFUSED`, live or kept as why a
  conversion failed) carries the partner's own words: the page shows them as the partner's, in
  whatever language the partner wrote them; a partner that could not be reached is named,
  without the connector's technical detail; a staff member's rejection
  (:data:`~exchange.risk.reasons.REJECTED`) likewise carries theirs;
* why a saga failed over a partner's write (:mod:`exchange.sagas.doubt`) becomes its template's
  key, the partner named by who it is to the member (the program converted from, or to, or
  paid with); so does a conversion's amount or cap refused (:mod:`exchange.pricing.limits`),
  an account a partner did not confirm (:mod:`exchange.federation.link_attempts`), and a page's
  cursor the exchange did not give out (:mod:`exchange.conversions.queries`);
* a person's own words (a staff member's reason in the risk log) are shown as written;
* any other text of the exchange is shown as written on an English page, and marked as
  English on any other.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from exchange.connectors.errors import REFUSED, PartnerError, PartnerRefusal
from exchange.db.paging import NOT_A_CURSOR
from exchange.errors import ErrorCode, ExchangeError
from exchange.federation import link_attempts
from exchange.pricing import limits
from exchange.programs.models import Program
from exchange.risk import reasons
from exchange.sagas import doubt

#: The key of a partner's refusal (``values``: ``program``, the partner's name, and ``detail``,
#: its own words).
PARTNER_SAID = "PARTNER_SAID"
#: The key of a partner that could not be reached or gave no usable answer (``values``:
#: ``program``, its name): the connector's technical detail is for the logs, not a reader.
PARTNER_UNANSWERED = "PARTNER_UNANSWERED"
#: How the message of every failed partner call begins (:mod:`exchange.connectors`).
PARTNER_CALL = re.compile(r"partner (?P<program>[a-z0-9][a-z0-9_-]*)")
#: What the exchange writes besides the risk log's reasons: why a row failed or was refused,
#: and why a saga failed over a partner's write (``partner``: ``source``, ``target`` or
#: ``paying``; ``write``: ``debit`` or ``credit``).
FAILURES = (
    reasons.REJECTED,
    reasons.Reason(PARTNER_SAID, REFUSED),
    reasons.Reason("WRITE_STANDS", doubt.WRITE_STANDS),
    reasons.Reason("WRITE_CONTRADICTED", doubt.WRITE_CONTRADICTED),
    reasons.Reason("WRITE_UNCONFIRMED", doubt.WRITE_UNCONFIRMED_IN_TIME),
    reasons.Reason("WRITE_UNCONFIRMED", doubt.WRITE_UNCONFIRMED),
    reasons.Reason("WRITE_TOO_LATE", doubt.WRITE_TOO_LATE),
    reasons.Reason("WRITE_GIVEN_BACK", doubt.WRITE_GIVEN_BACK),
    reasons.Reason("WRITE_NOT_APPLIED", doubt.WRITE_NOT_APPLIED),
    reasons.Reason("BELOW_MINIMUM", limits.BELOW_MINIMUM),
    reasons.Reason("NOT_AN_INCREMENT", limits.NOT_AN_INCREMENT),
    reasons.Reason("NOT_WHOLE_POINTS", limits.NOT_WHOLE_POINTS),
    reasons.Reason("POINTS_RANGE", limits.POINTS_RANGE),
    reasons.Reason("CAP_EXCEEDED", limits.CAP_EXCEEDED),
    reasons.Reason("NOT_CONFIRMED", link_attempts.NOT_CONFIRMED),
    reasons.Reason("NOT_A_CURSOR", NOT_A_CURSOR),
)
#: Values of :data:`FAILURES` that are whole numbers, besides the risk log's (:data:`~exchange.risk.reasons.NUMBERS`).
FAILURE_NUMBERS = frozenset({"remaining", "amount"})
#: A velocity window as :func:`exchange.risk.policy.duration` writes it: ``1 day``, ``90 seconds``.
WINDOW = re.compile(r"([0-9]+) (day|hour|minute|second)s?")


@dataclass(frozen=True, slots=True)
class Said:
    """A ``text`` as written, with what a page needs to say it in its reader's language: the
    ``key`` of the template that wrote it and its ``values``; or ``own_words``, a person's
    words to show as written."""

    text: str
    key: str | None = None
    values: dict[str, object] = field(default_factory=dict)
    own_words: bool = False

    @classmethod
    def of(cls, text: str, programs: Mapping[str, Program]) -> Said:
        """``text``, read back into the reason template that wrote it, if one did."""
        # The templates that begin with words of their own first: a partner's refusal, or a staff
        # member's rejection, carries words of theirs that may read as a reason beginning with
        # a value ("{program} allows at most …"), and must stay theirs.
        found = _failure(text) or reasons.written_by(text)
        if found is None:
            return cls(text)
        reason, written = found
        values: dict[str, object] = {}
        try:
            for name, value in written.items():
                if name in reasons.NUMBERS or name in FAILURE_NUMBERS:
                    values[name] = int(value.replace(",", ""))
                    continue
                match name:
                    case "program" | "other":
                        values[name] = _program_name(value, programs)
                    case "window":
                        values[name] = _window(value)
                    case "opens_at":
                        values[name] = datetime.fromisoformat(value)
                    case _:
                        values[name] = value
        except ValueError:  # not what the template writes after all: shown as written
            return cls(text)
        return cls(text, reason.key, values)

    @classmethod
    def failure(cls, code: str | None, text: str, programs: Mapping[str, Program]) -> Said:
        """Why a conversion failed (its ``failure_code`` and ``failure_message``)."""
        if code == ErrorCode.PARTNER_UNAVAILABLE.value and (call := PARTNER_CALL.match(text)) is not None:
            return cls(text, PARTNER_UNANSWERED, {"program": _program_name(call["program"], programs)})
        return cls.of(text, programs)

    @classmethod
    def person(cls, text: str) -> Said:
        """A person's own words, in whatever language they wrote them."""
        return cls(text, own_words=True)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused request as a member's page shows it: ``code`` picks the page's headline, and
    ``said`` is the detail, the partner's own words when a partner refused."""

    code: ErrorCode
    said: Said
    field: str | None = None
    """The input the refusal is about (the error's ``field``), for the page to mark it in error."""
    reason: str | None = None
    """The error's ``reason`` where it has one (``AUTHORITY_REQUIRED``'s: which authority is missing)."""
    # ``dataclasses.field``: ``field`` is the attribute above here.
    numbers: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """The error's whole-number facts (``PRICE_CHANGED``'s ``expectedPoints`` and ``points``),
    for the page to say in its reader's language."""
    rule: str | None = None
    """The error's ``rule`` where it has one (``UNLINK_REFUSED``'s: which rule keeps the account linked)."""

    @classmethod
    def of(cls, error: ExchangeError, programs: Mapping[str, Program]) -> Refusal:
        if isinstance(error, PartnerError) and not isinstance(error, PartnerRefusal):
            unanswered: dict[str, object] = {"program": _program_name(error.program_id, programs)}
            return cls(error.code, Said(error.message, PARTNER_UNANSWERED, unanswered), error.field)
        reason, rule = error.details.get("reason"), error.details.get("rule")
        numbers = {
            name: value
            for name, value in error.details.items()
            if isinstance(value, int) and not isinstance(value, bool)
        }
        return cls(
            error.code,
            Said.of(error.message, programs),
            error.field,
            reason if isinstance(reason, str) else None,
            numbers,
            rule if isinstance(rule, str) else None,
        )


def _failure(text: str) -> tuple[reasons.Reason, dict[str, str]] | None:
    for failure in FAILURES:
        if (values := failure.values(text)) is not None:
            return failure, values
    return None


def _program_name(program_id: str, programs: Mapping[str, Program]) -> str:
    """A program's name; an id no program has any more, as it is."""
    return programs[program_id].name if program_id in programs else program_id


def _window(written: str) -> tuple[int, str]:
    """How many of which unit, for the page to say in the reader's language."""
    found = WINDOW.fullmatch(written)
    if found is None:
        raise ValueError(f"not a window: {written!r}")
    return int(found[1]), found[2]
