"""Signing off a partner's period: the last step, once its records are reconciled."""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.errors import BadUserInput
from exchange.settlement.errors import NotReconciled, PartnerSignedOff, UnresolvedBreaks
from exchange.settlement.models import SettlementPosition
from exchange.settlement.positions import position_of
from exchange.settlement.reconciliation import (
    current_reconciliation,
    require_current,
    require_reconciled_participant,
    unresolved_breaks,
)

MAX_NOTE = 500


async def sign_off(
    session: AsyncSession,
    partner: str,
    period: str,
    *,
    actor: str,
    note: str | None,
    now: datetime,
    seen: str | None = None,
) -> SettlementPosition:
    """Sign off the partner's closed period: its records must be imported and every break of
    the current reconciliation resolved; ``seen``, the id of the reconciliation a page's form
    showed, must still be the current one. Afterwards nothing of it changes: imports and
    resolutions are refused, and so is another sign-off; the same one sent again (by the same
    actor, with the same note: a retry after a lost answer) is answered as it stands."""
    if note is not None and len(note) > MAX_NOTE:
        raise BadUserInput(f"a note is at most {MAX_NOTE} characters", field="note")
    require_reconciled_participant(partner)
    position = await position_of(session, partner, period, for_update=True, reconciled=True)
    if position.signed_off_at is not None:
        if (position.signed_off_by, position.sign_off_note) == (actor, note):
            return position
        raise PartnerSignedOff(partner, period)
    reconciliation = await current_reconciliation(session, partner, period)
    require_current(partner, period, reconciliation, seen)
    if reconciliation is None:
        raise NotReconciled(partner, period)
    unresolved = await unresolved_breaks(session, reconciliation.id)
    if unresolved:
        raise UnresolvedBreaks(partner, period, unresolved)
    position.signed_off_at = now
    position.signed_off_by = actor
    position.sign_off_note = note
    session.add(position)
    await session.flush()
    return position
