"""A small per-process cache of partners' account snapshots.

Answers may be a few seconds old, but never older than the member's last activity at the
exchange: an entry remembers the member's activity marker (``member.activity``) when it was
fetched, and a different marker (a conversion, redemption or status match of theirs finished
since) makes it stale at once. Tiers change slowly, so a longer time-to-live serves the
tier-bonus lookups; a status match still shows in the next quote, as it moves the marker.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from exchange.connectors.contract import MemberAccount

Key = tuple[str, str]  # (member id, program id)


@dataclass(frozen=True, slots=True)
class Cached:
    account: MemberAccount
    fetched_at: float
    marker: object


class SnapshotCache:
    def __init__(self, *, balance_ttl: float, tier_ttl: float, timer: Callable[[], float], size: int = 50_000) -> None:
        self.balance_ttl = balance_ttl
        self.tier_ttl = tier_ttl
        self._timer = timer
        self._size = size
        self._entries: OrderedDict[Key, Cached] = OrderedDict()

    def _get(self, key: Key, ttl: float) -> Cached | None:
        entry = self._entries.get(key)
        if entry is None or self._timer() - entry.fetched_at >= ttl:
            return None
        self._entries.move_to_end(key)
        return entry

    def balance(self, key: Key, marker: object) -> MemberAccount | None:
        """A snapshot fresh enough to show a balance, taken since the member's last activity."""
        entry = self._get(key, self.balance_ttl)
        return entry.account if entry is not None and entry.marker == marker else None

    def tier(self, key: Key, marker: object) -> MemberAccount | None:
        """A snapshot fresh enough to read a tier from, taken since the member's last activity."""
        entry = self._get(key, self.tier_ttl)
        return entry.account if entry is not None and entry.marker == marker else None

    def put(self, key: Key, account: MemberAccount, marker: object) -> None:
        """Remember an answer fetched under the member's activity ``marker``."""
        self._entries[key] = Cached(account, self._timer(), marker)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
