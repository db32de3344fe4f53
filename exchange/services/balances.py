"""Whether a member's balance covers points they are about to spend, read before they send:
the quote page (the points a conversion takes) and the reward page (the points each paying
program would be charged) both ask here.

The reading is advice, not a check: the partner's debit decides in the end, and the balance is
the federated view's (:meth:`~exchange.federation.accounts.Federation.accounts_at`: live, or
cached a few seconds since the member's last activity). A partner that does not answer leaves
the balance unread, and the member may still send.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from exchange.federation.accounts import Federation


@dataclass(frozen=True, slots=True)
class Coverage:
    """``needed`` points beside the member's ``balance`` at the program paying them (``None``:
    it could not be read, the partner did not answer)."""

    needed: int
    balance: int | None

    @property
    def short(self) -> bool:
        """The balance read is below the points needed: spending them would fail at the debit."""
        return self.balance is not None and self.balance < self.needed

    @property
    def none_held(self) -> bool:
        """The balance read is nothing at all: no price of any size can be paid there."""
        return self.balance == 0


async def coverage(federation: Federation, member_id: str, needed: Mapping[str, int]) -> dict[str, Coverage]:
    """For each program of ``needed``, its points beside the member's balance there, every
    partner asked at once."""
    views = await federation.accounts_at(member_id, needed.keys())
    held = {view.program.id: view.account.balance for view in views if view.account is not None}
    return {program_id: Coverage(points, held.get(program_id)) for program_id, points in needed.items()}
