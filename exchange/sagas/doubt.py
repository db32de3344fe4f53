"""Settling a partner write whose outcome is unknown: find out, or make sure it never applies.

After a timeout or a crash only the partner knows whether a write landed. Its operation
status says so when it has the operation; when it has none, the request may still be in
flight, so the exchange *voids* the id with a reversal naming it (the partner then refuses
it for good if it arrives later). Either way the write's effect is then known for certain.
"""

from __future__ import annotations

from enum import Enum

from exchange.connectors.connector import PartnerConnector
from exchange.connectors.contract import OperationState


class Settlement(Enum):
    APPLIED = "applied"
    """The partner applied the write; the saga goes on."""
    VOIDED = "voided"
    """The partner never applied it and never will."""
    UNDONE = "undone"
    """It applied after all (late, or was already reversed); the reversal undid it."""


async def settle_or_void(connector: PartnerConnector, operation_id: str, void_id: str) -> Settlement:
    """Whether ``operation_id`` took effect at the partner; if not, void it with ``void_id``.

    Raises the connector's errors as they come: the caller keeps the operation in doubt and
    asks again later (``void_id`` is a fixed id, so asking twice voids at most once).
    """
    operation = await connector.operation_status(operation_id)
    if operation is not None and operation.status is OperationState.APPLIED:
        return Settlement.APPLIED
    reversal = await connector.reverse(void_id, operation_id)
    target = reversal.target
    if target is not None and target.status is OperationState.VOIDED:
        return Settlement.VOIDED
    return Settlement.UNDONE
