"""A small per-process cache of partners' account snapshots.

Answers may be a few seconds old, but never older than the member's last activity at the
exchange: an entry remembers the member's activity markers
(:class:`~exchange.members.models.ActivityMarkers`) when it was fetched. For a balance, a
different ``balances`` marker (a conversion, redemption or status match of theirs recorded a
step since, finished or not) makes it stale at once; for a tier, a different ``tiers`` marker (a status match
finished since). Tiers change slowly, so a longer time-to-live serves the tier-bonus lookups,
and a conversion leaves them cached: the next quote asks no partner, while a status match
still shows in it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from exchange.connectors.contract import MemberAccount
from exchange.members.models import ActivityMarkers

Key = tuple[str, str]  # (member id, program id)


@dataclass(frozen=True, slots=True)
class Cached:
    account: MemberAccount
    fetched_at: float
    markers: ActivityMarkers


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

    def balance(self, key: Key, markers: ActivityMarkers) -> MemberAccount | None:
        """A snapshot fresh enough to show a balance, taken since the member's last activity."""
        entry = self._get(key, self.balance_ttl)
        return entry.account if entry is not None and entry.markers.balances == markers.balances else None

    def tier(self, key: Key, markers: ActivityMarkers) -> MemberAccount | None:
        """A snapshot fresh enough to read a tier from, taken since the member's last status match."""
        entry = self._get(key, self.tier_ttl)
        return entry.account if entry is not None and entry.markers.tiers == markers.tiers else None

    def put(self, key: Key, account: MemberAccount, markers: ActivityMarkers) -> None:
        """Remember an answer fetched under the member's activity ``markers``."""
        self._entries[key] = Cached(account, self._timer(), markers)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
