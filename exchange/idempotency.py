"""One rule for idempotency keys, for every write a client makes safe to retry with one.

The member chooses the key, by one rule (:data:`IDEMPOTENCY_KEY_RULE`, checked by
:func:`key_problem`): printable ASCII, so that a key reads, logs and compares the same
everywhere (no look-alike letters, no invisible ones), and no space at either end, so that
``"k1 "`` is not a second key beside ``"k1"`` and a key of spaces is no key. The services
check it of every key they are given (``exchange.services.requests.idempotency_key``), and
the API declares it of every ``idempotencyKey`` (``exchange.api.inputs.IdempotencyKey``). The
saga's first row is inserted
under (member, key) with ``ON CONFLICT DO NOTHING``, so the unique key decides between
requests that race with the same key (the database has the second wait until the first
commits or rolls back). When nothing was inserted, the row the key holds is the answer if it
was made for the same request, and ``IDEMPOTENCY_CONFLICT`` if it was made for another.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db import direct
from exchange.db.dialects import Insert
from exchange.errors import IdempotencyConflict

#: The longest idempotency key a client may choose (the key columns' length).
IDEMPOTENCY_KEY_LENGTH = 100
#: The rule, in the words errors and the schema use.
IDEMPOTENCY_KEY_RULE = f"1 to {IDEMPOTENCY_KEY_LENGTH} printable ASCII characters, with no space at either end"
_KEY = re.compile(rf"[!-~](?:[ -~]{{0,{IDEMPOTENCY_KEY_LENGTH - 2}}}[!-~])?")


def key_problem(key: str) -> str | None:
    """Why ``key`` breaks :data:`IDEMPOTENCY_KEY_RULE`, in words (``None``: it keeps it)."""
    if _KEY.fullmatch(key):
        return None
    return f"must be {IDEMPOTENCY_KEY_RULE}" + (f", got {len(key)}" if len(key) > IDEMPOTENCY_KEY_LENGTH else "")


class Keyed(Protocol):
    """A saga row a member's key may hold; read-only here, so that a saga whose key is optional
    (a status match sent without one) is keyed too."""

    @property
    def member_id(self) -> str: ...

    @property
    def idempotency_key(self) -> str | None: ...


Row = TypeVar("Row", bound=Keyed)
#: Any table model's row a key holds, whatever owns the key (:func:`same_request` reads no owner).
Held = TypeVar("Held")


async def keyed(session: AsyncSession, model: type[Row], member_id: str, key: str) -> Row | None:
    """The row the member's key holds, if any."""
    columns = model.__table__.c  # type: ignore[attr-defined]  # a table model's, as Keyed does not say
    return (
        await session.exec(select(model).where(columns.member_id == member_id, columns.idempotency_key == key))
    ).first()


def claiming(insert: Insert) -> Insert:
    """``insert`` (a plain ``INSERT`` or an ``INSERT … SELECT`` of a saga's first row) as
    :func:`record_once` runs it: doing nothing on a taken key, returning the row it made."""
    # returning() is typed as a generic ReturningInsert; it is the dialect insert it was
    return insert.on_conflict_do_nothing().returning(*insert.table.columns)  # type: ignore[return-value]


async def record_once(
    session: AsyncSession,
    model: type[Row],
    claim: Insert,
    *,
    params: Mapping[str, Any] | None = None,
    member_id: str,
    key: str,
    same: Callable[[Row], bool],
) -> tuple[Row | None, bool]:
    """Insert a saga's first row under the member's key (``claim``, made by :func:`claiming`,
    with ``params``), in the caller's unit of work. A claim given ``params`` is one built once
    (its values are all parameters): it goes straight to the driver (:func:`direct.execute`).

    ``(row, True)``: inserted now. ``(row, False)``: the key holds a row for the same request
    (``same``), nothing was inserted. ``(None, False)``: nothing inserted and the key holds
    nothing: the ``SELECT`` found nothing to insert, or another unique value was taken — the
    caller says why. ``IdempotencyConflict`` if the key holds a row for another request.
    """
    if params is None:
        created = (await session.exec(claim)).first()
    else:  # built once: sent straight to the driver
        created = (await direct.execute(session, claim, params)).first()
    if created is not None:
        # As the ORM loads a row: its values are the database's own, validated as they were written.
        return direct.loaded(model, created), True  # type: ignore[type-var]  # a table model, as Keyed does not say
    existing = await keyed(session, model, member_id, key)
    if existing is None:
        return None, False
    return same_request(existing, key, same), False


def same_request(existing: Held, key: str, same: Callable[[Held], bool]) -> Held:
    """``existing``, the row the key holds, if it was made for the same request (``same``)."""
    if not same(existing):
        kind = type(existing).__tablename__.replace("_", " ")  # type: ignore[attr-defined]
        raise IdempotencyConflict(
            f"idempotency key {key!r} was used for another {kind}: a key names one request, so choose a "
            f"new key for a new {kind} (the same key and request again return the first {kind})",
            field="idempotencyKey",
        )
    return existing
