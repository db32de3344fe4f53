"""What a portal session may do through each program, read from the clients that vouched
(:func:`exchange.people.portal_sign_in.live_authority`), without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from exchange.auth.models import OAuthClient
from exchange.auth.scopes import Scope
from exchange.people.portal_models import MemberWebSession
from exchange.people.portal_sign_in import VouchingClient, live_authority, voucher

SIGNED_IN = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def a_client(
    client_id: str,
    member_scope: str,
    *,
    created_at: datetime,
    secret_set_at: datetime | None = None,
    linked_at: datetime | None = SIGNED_IN - timedelta(days=2),
) -> VouchingClient:
    """A client of the program of the same id, and when the member's account there was linked
    (``None``: it is not linked now)."""
    client = OAuthClient(
        client_id=client_id,
        secret_hash="-",
        role="partner",
        program_id=client_id,
        scope="partner:read partner:write",
        member_scope=member_scope,
        created_at=created_at,
        secret_set_at=secret_set_at,
    )
    return VouchingClient(client, linked_at)


def a_session(*client_ids: str) -> MemberWebSession:
    return MemberWebSession(
        id_hash="h",
        member_id="m",
        vouchers={client_id: voucher(client_id, SIGNED_IN) for client_id in client_ids},
        csrf_token="t",
        created_at=SIGNED_IN,
        last_seen_at=SIGNED_IN,
        expires_at=SIGNED_IN + timedelta(hours=1),
    )


def test_each_program_does_what_its_client_lets_member_tokens_do_now() -> None:
    before = SIGNED_IN - timedelta(days=1)
    clients = {
        "air": a_client("air", "member:read member:write", created_at=before),
        "mart": a_client("mart", "member:read", created_at=before),
    }
    assert live_authority(a_session("air", "mart"), clients) == {
        "air": frozenset({Scope.MEMBER_READ, Scope.MEMBER_WRITE}),
        "mart": frozenset({Scope.MEMBER_READ}),
    }


def test_a_client_deleted_reset_since_or_made_again_under_the_same_id_no_longer_vouches() -> None:
    before, after = SIGNED_IN - timedelta(days=1), SIGNED_IN + timedelta(seconds=1)
    clients = {
        "reset": a_client("reset", "member:read member:write", created_at=before, secret_set_at=after),
        "again": a_client("again", "member:read member:write", created_at=after),
        "reset-before": a_client("reset-before", "member:read member:write", created_at=before, secret_set_at=before),
        "reset-then": a_client("reset-then", "member:read", created_at=before, secret_set_at=SIGNED_IN),
    }
    authority = live_authority(a_session("deleted", "reset", "again", "reset-before", "reset-then"), clients)
    assert authority == {
        "reset-before": frozenset({Scope.MEMBER_READ, Scope.MEMBER_WRITE}),
        "reset-then": frozenset({Scope.MEMBER_READ}),  # a sign-in at the reset's instant stands
    }


def test_a_scope_the_exchange_no_longer_knows_reads_as_none() -> None:
    clients = {"air": a_client("air", "member:read member:teleport", created_at=SIGNED_IN)}
    assert live_authority(a_session("air"), clients) == {"air": frozenset()}


def test_a_program_whose_account_was_unlinked_since_no_longer_vouches_even_linked_again() -> None:
    before, after = SIGNED_IN - timedelta(days=1), SIGNED_IN + timedelta(seconds=1)
    clients = {
        "unlinked": a_client("unlinked", "member:read member:write", created_at=before, linked_at=None),
        "linked-again": a_client("linked-again", "member:read member:write", created_at=before, linked_at=after),
        "linked-then": a_client("linked-then", "member:read member:write", created_at=before, linked_at=SIGNED_IN),
    }
    authority = live_authority(a_session("unlinked", "linked-again", "linked-then"), clients)
    # Linked at the sign-in's instant (the sign-in linked it): it stands.
    assert authority == {"linked-then": frozenset({Scope.MEMBER_READ, Scope.MEMBER_WRITE})}
