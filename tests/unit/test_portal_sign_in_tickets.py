"""A portal sign-in under way is a ticket the browser keeps: the exchange's own, unchanged, and
only for a few minutes."""

from __future__ import annotations

from datetime import UTC, datetime

from exchange.people.portal_sign_in import SIGN_IN_LIFETIME, SignInTickets
from exchange.people.sessions import hash_session_id

SECRET = "a key-encryption secret for these tests only"
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def test_a_ticket_holds_its_sign_in_until_it_expires() -> None:
    tickets = SignInTickets(SECRET)
    state, ticket = tickets.issue("fresh-mart", "the-session", NOW)
    read = tickets.read(ticket, NOW + SIGN_IN_LIFETIME / 2)
    assert read is not None and read.state == state and read.program_id == "fresh-mart"
    assert read.session_hash == hash_session_id("the-session")
    assert tickets.read(ticket, NOW + SIGN_IN_LIFETIME) is None


def test_a_changed_or_foreign_ticket_is_no_ticket() -> None:
    tickets = SignInTickets(SECRET)
    _, ticket = tickets.issue("fresh-mart", None, NOW)
    _, other = tickets.issue("formosa-air", None, NOW)
    payload, _, mac = ticket.partition(".")
    assert tickets.read(f"{other.partition('.')[0]}.{mac}", NOW) is None
    assert tickets.read(payload, NOW) is None
    assert tickets.read("", NOW) is None
    assert SignInTickets(SECRET + " but another").read(ticket, NOW) is None
