"""The events partners and staff tools can subscribe to, and what each one says.

An :class:`Event` is built from the row whose change it reports, inside the unit of work that
changes it (:func:`exchange.webhooks.outbox.emit` writes it there). Its body follows the
Standard Webhooks payload shape, ``{"type", "timestamp", "data"}``; ``data`` carries ids,
programs, points and money (in minor units of ``currency``, never a float), and no member's
id at a partner, since an event about a conversion goes to both its partners.

``programs`` are the partners an event concerns: a partner's subscription receives an event
only if its program is among them (``None``: every partner, as for a period closing). Staff
tools' subscriptions receive every event. ``object`` names what the event is about: a
subscription receives the events of one object in the order they happened.

The builders read the sagas' rows through the small protocols below, by the rows' status
names, so that this package imports none of the domain packages that emit events (they
import it).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class Transition(Protocol):
    """What a saga step decided (:class:`exchange.sagas.engine.Transition`)."""

    @property
    def status(self) -> str | None: ...
    @property
    def failure_code(self) -> str | None: ...
    @property
    def failure_message(self) -> str | None: ...


class Conversion(Protocol):
    id: str
    member_id: str
    from_program: str
    to_program: str
    points_in: int
    points_out: int
    currency: str
    money_value_minor: int
    fee_minor: int
    failure_code: str | None
    created_at: datetime


class StatusMatch(Protocol):
    id: str
    member_id: str
    from_program: str
    to_program: str
    source_tier: str
    tier: str
    expires_at: datetime


class Redemption(Protocol):
    id: str
    member_id: str
    reward_id: str
    publisher: str
    paying_program: str
    points: int
    currency: str
    price_minor: int
    fee_minor: int
    cancelled_by: str | None
    failure_code: str | None
    failure_message: str | None
    next_attempt_at: datetime


class EventType(StrEnum):
    """An event's type. Its value, the dotted name (``conversion.completed``), is the canonical
    spelling: receivers read it as the payload's ``type``, and the command line prints it. Its
    member name (``CONVERSION_COMPLETED``) is the GraphQL enum value ``WebhookEventType`` shows,
    since a GraphQL name cannot hold a dot; :meth:`named` reads either."""

    CONVERSION_COMPLETED = "conversion.completed"
    CONVERSION_FAILED = "conversion.failed"
    CONVERSION_REVERSED = "conversion.reversed"
    STATUS_MATCH_GRANTED = "status_match.granted"
    STATUS_MATCH_EXPIRED = "status_match.expired"
    REDEMPTION_HELD = "redemption.held"
    REDEMPTION_FAILED = "redemption.failed"
    REDEMPTION_PAID = "redemption.paid"
    REDEMPTION_REVERSED = "redemption.reversed"
    REDEMPTION_DELIVERED = "redemption.delivered"
    PERIOD_CLOSED = "period.closed"
    STATEMENT_READY = "statement.ready"

    @classmethod
    def named(cls, name: str) -> EventType | None:
        """The type ``name`` spells, canonically (``conversion.completed``) or as GraphQL does
        (``CONVERSION_COMPLETED``); ``None`` for a name that is neither."""
        if name in cls._value2member_map_:
            return cls(name)
        return cls.__members__.get(name)


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    object: str
    programs: tuple[str, ...] | None
    data: dict[str, Any]
    occurred_at: datetime
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", f"msg_{uuid.uuid4().hex}")

    def body(self) -> str:
        """The JSON body sent to receivers, byte for byte the same on every attempt."""
        document = {"type": self.type.value, "timestamp": _iso(self.occurred_at), "data": self.data}
        return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


#: A conversion's final statuses, and the event each one is.
_CONVERSION_EVENTS = {
    "COMPLETED": EventType.CONVERSION_COMPLETED,
    "FAILED": EventType.CONVERSION_FAILED,
    "REVERSED": EventType.CONVERSION_REVERSED,
}


def conversion_finished(conversion: Conversion, transition: Transition, now: datetime) -> Event | None:
    """``conversion.completed|failed|reversed`` when ``transition`` ends the conversion."""
    event_type = _CONVERSION_EVENTS.get(str(transition.status))
    if event_type is None:
        return None
    return Event(
        event_type,
        f"conversion:{conversion.id}",
        (conversion.from_program, conversion.to_program),
        {
            "id": conversion.id,
            "status": transition.status,
            "memberId": conversion.member_id,
            "fromProgram": conversion.from_program,
            "toProgram": conversion.to_program,
            "pointsIn": conversion.points_in,
            "pointsOut": conversion.points_out,
            "currency": conversion.currency,
            "moneyValueMinor": conversion.money_value_minor,
            "feeMinor": conversion.fee_minor,
            "failureCode": transition.failure_code or conversion.failure_code,
            "createdAt": _iso(conversion.created_at),
        },
        now,
    )


def status_match_changed(match: StatusMatch, step: str, transition: Transition, now: datetime) -> Event | None:
    """``status_match.granted`` when the target partner applied the tier; ``.expired`` when
    it was reverted: past its expiry, or an extension the partner recorded otherwise than sent
    (or reverted on its own)."""
    if step == "PUSH" and transition.status == "ACTIVE":
        event_type = EventType.STATUS_MATCH_GRANTED
    elif transition.status == "EXPIRED":
        event_type = EventType.STATUS_MATCH_EXPIRED
    else:
        return None
    return Event(
        event_type,
        f"status_match:{match.id}",
        (match.from_program, match.to_program),
        {
            "id": match.id,
            "status": transition.status,
            "memberId": match.member_id,
            "fromProgram": match.from_program,
            "toProgram": match.to_program,
            "sourceTier": match.source_tier,
            "tier": match.tier,
            "expiresAt": _iso(match.expires_at),
        },
        now,
    )


#: The ``reason`` of a redemption whose debit did not go through. Not the row's message: that is
#: the paying partner's own words (the member's id there, their balance there), and the event
#: goes to the publisher too; the member reads them on the redemption.
DEBIT_NOT_DONE = "{program} did not debit the points ({code})"


def redemption_changed(redemption: Redemption, step: str, transition: Transition, now: datetime) -> Event | None:
    """``redemption.paid`` when the debit is posted, ``.reversed`` when a paid redemption's
    points came back; ``.failed`` when it ended unpaid at its debit: refused or voided
    (FAILED), or applied too late and undone at once (REVERSED)."""
    if step == "POST" and transition.status == "COMPLETED":
        return _redemption_event(EventType.REDEMPTION_PAID, redemption, "COMPLETED", now)
    if step == "UNPOST" and transition.status == "REVERSED":
        return _redemption_event(EventType.REDEMPTION_REVERSED, redemption, "REVERSED", now)
    if step in ("DEBIT", "AWAIT_DEBIT") and transition.status in ("FAILED", "REVERSED"):
        code = transition.failure_code or redemption.failure_code
        reason = DEBIT_NOT_DONE.format(program=redemption.paying_program, code=code)
        return redemption_failed(redemption, str(transition.status), code, reason, now)
    return None


def redemption_held(redemption: Redemption, now: datetime) -> Event:
    """``redemption.held``: the paying program's risk gates hold it for staff review until
    ``heldUntil``; its stock is set aside, nothing is debited."""
    return _redemption_event(
        EventType.REDEMPTION_HELD, redemption, "HELD", now, heldUntil=_iso(redemption.next_attempt_at)
    )


def redemption_failed(
    redemption: Redemption, status: str, failure_code: str | None, reason: str | None, now: datetime
) -> Event:
    """``redemption.failed``: it ended without being paid (``failureCode`` says how: staff
    rejected its hold, the hold ended unreviewed, it was cancelled while held, or its debit
    did not go through); its stock came back."""
    return _redemption_event(
        EventType.REDEMPTION_FAILED, redemption, status, now, failureCode=failure_code, reason=reason
    )


def redemption_delivered(redemption: Redemption, now: datetime) -> Event:
    """``redemption.delivered``: the publisher confirmed delivery."""
    return _redemption_event(EventType.REDEMPTION_DELIVERED, redemption, "DELIVERED", now)


def _redemption_event(
    event_type: EventType, redemption: Redemption, status: str, now: datetime, **details: Any
) -> Event:
    return Event(
        event_type,
        f"redemption:{redemption.id}",
        (redemption.paying_program, redemption.publisher),
        {
            "id": redemption.id,
            "status": status,
            "memberId": redemption.member_id,
            "rewardId": redemption.reward_id,
            "publisher": redemption.publisher,
            "payingProgram": redemption.paying_program,
            "points": redemption.points,
            "currency": redemption.currency,
            "priceMinor": redemption.price_minor,
            "feeMinor": redemption.fee_minor,
            "cancelledBy": redemption.cancelled_by,
            **details,
        },
        now,
    )


def period_closed(period: str, participants: Sequence[str], now: datetime) -> list[Event]:
    """``period.closed`` for every partner, and ``statement.ready`` for each participant
    with a position (its statement can be fetched from now on)."""
    closed = Event(EventType.PERIOD_CLOSED, f"period:{period}", None, {"period": period}, now)
    return [
        closed,
        *(
            Event(
                EventType.STATEMENT_READY,
                f"statement:{participant}:{period}",
                (participant,),
                {"period": period, "participant": participant},
                now,
            )
            for participant in participants
        ),
    ]
