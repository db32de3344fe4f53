"""What several services check of a request before any work: who the caller is, a page size,
an idempotency key, the authority a member's debit carries."""

from __future__ import annotations

from collections.abc import Set

from exchange.auth.principal import Principal
from exchange.auth.scopes import Scope
from exchange.errors import BadUserInput, Forbidden
from exchange.idempotency import key_problem
from exchange.members.authority import DebitAuthority


def member_of(caller: Principal) -> str:
    """The member a member token speaks for; any other caller is refused."""
    if caller.member_id is None:
        raise Forbidden("this needs a member token")
    return caller.member_id


def program_of(caller: Principal) -> str:
    """The program a partner token speaks for; any other caller is refused."""
    if caller.program_id is None:
        raise Forbidden("this needs a partner token")
    return caller.program_id


def page_size(first: int, *, maximum: int) -> int:
    """``first``, when it asks for 1 to ``maximum`` items."""
    if not 1 <= first <= maximum:
        raise BadUserInput(f"first must be between 1 and {maximum}", field="first")
    return first


def idempotency_key(key: str) -> str:
    """A client-chosen key that makes a write idempotent, if it keeps the one rule every such
    key keeps (:data:`~exchange.idempotency.IDEMPOTENCY_KEY_RULE`): every write that
    moves points reads its key through here, whichever front end it came from."""
    if problem := key_problem(key):
        raise BadUserInput(f"idempotencyKey {problem}", field="idempotencyKey")
    return key


def debit_authority(caller: Principal, consent: str | None, exchange_held: Set[str]) -> DebitAuthority:
    """What the caller's request may debit (:mod:`exchange.members.authority`): the program
    that asserted its token, the consent it presents, and the points the exchange holds
    (``exchange_held``) only if its token carries ``member:coalition``, and anything only if it
    carries ``member:write``."""
    return DebitAuthority(
        asserted_by=str(caller.asserted_by),
        consent=consent,
        exchange_held=frozenset(exchange_held),
        spends_exchange_held=Scope.MEMBER_COALITION in caller.scopes,
        writes=Scope.MEMBER_WRITE in caller.scopes,
    )
