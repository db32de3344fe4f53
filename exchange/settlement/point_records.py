"""The coalition point's records of a period, written from the exchange's own book of the point.

No partner sends the point's records file: the exchange is the point's system of record
(docs/COALITION.md). Its book of the point (``coalition_operation``, ``coalition_lot``,
``coalition_expiry``) is kept apart from the clearing ledger, so its records, imported like a
partner's file (``reconciliation.import_records``), are a real cross-check of the two: what the
point's book holds that the ledger lacks, or the other way round, shows as breaks.

One line per business reference, in the records-file format (``records``), from the point's
side (positive when the point is owed):

* ``conversion:<id>``: each conversion whose credit into the point (or debit out of it) the
  point's book holds as applied. Into the point, the money value less the exchange's fee; out
  of it, minus the money value (the conversion's own figures, as quoted: the book of the point
  holds points, not money).
* ``conversion:<id>`` of a conversion routed through the point (A → point → B: docs/COALITION.md,
  "Routing through the point"), which never touches the point's book: when it completed, what
  the point kept of it by its route's legs, the first leg's money value less its fee less the
  second leg's money value.
* ``redemption:<id>``: each reward paid with the point whose debit the book holds: minus the
  reward's price and fee; and, when a cancel (the member's, the publisher's, or delivery not
  confirmed in time) gave the points back, plus price and fee in the period the book reversed
  the debit, as the ledger posts the cancel's reversal at its own time. A redemption cancelled
  in a later month so reconciles in both months, and a month's records do not change when a
  later month cancels one of its redemptions.

A conversion or a redemption is in the period its own time (``created_at``) falls in, the time
the ledger posts it at, so one whose operation at the point came after midnight is still in the
month it was made.
* ``coalition-expiry:<lot id>``: each expiry batch of the period (by its time), named by its
  first lot as the expiry job names its transaction: minus the value of the points expired,
  rounded per keeper of the breakage as the job does (``expiry.breakage_legs``).

An operation its saga undid before the ledger posted it (a conversion compensated, a debit
given back in doubt) is no record; one the book holds whose ledger posting lands in another period, or never came, is a break, as it
would be in a partner's file (a conversion or redemption posted as a late line of the next
open month, say, shows as a break in both months).

The rows are read as a stream and written as they come.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import IO, Any

from sqlalchemy import ColumnElement, Executable, Select, String, and_, case, cast, func, literal, or_, union_all
from sqlalchemy.orm import Mapped
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.coalition.expiry import KIND as EXPIRY_KIND
from exchange.coalition.expiry import breakage_legs
from exchange.coalition.lots import OperationKind, OperationStatus
from exchange.coalition.models import CoalitionExpiry, CoalitionLot, CoalitionOperation
from exchange.coalition.rules import PointRules
from exchange.conversions.models import Conversion, ConversionStatus
from exchange.ledger.accounts import ChartOfAccounts
from exchange.rewards.models import Redemption

#: Who the reconciliation records as having imported the point's records.
OWN_BOOK = "exchange:coalition-book"
HEADER = "reference,amount,counterparty,partner,period,currency\n"


def _applied(
    kinds: tuple[OperationKind, ...], made_at: Mapped[datetime], starts: datetime, ends: datetime
) -> list[ColumnElement[bool]]:
    """The book's applied operations of ``kinds`` whose time (``made_at``: their saga's, or their
    own) falls in [starts, ends)."""
    operation = CoalitionOperation
    return [
        col(operation.kind).in_([kind.value for kind in kinds]),
        col(operation.status) == OperationStatus.APPLIED.value,
        made_at >= starts,
        made_at < ends,
    ]


def _operations(starts: datetime, ends: datetime) -> Executable:
    """Conversions and redemptions the point's book holds as applied in [starts, ends): reference,
    amount in minor units (the point's side), counterparty."""
    credit = col(CoalitionOperation.kind) == OperationKind.CREDIT.value
    conversions = (
        select(
            (literal("conversion:", String) + col(Conversion.id)).label("reference"),
            func.sum(
                case(
                    (credit, col(Conversion.money_value_minor) - col(Conversion.fee_minor)),
                    else_=-col(Conversion.money_value_minor),
                )
            ).label("amount"),
            func.min(case((credit, col(Conversion.from_program)), else_=col(Conversion.to_program))).label(
                "counterparty"
            ),
        )
        .select_from(CoalitionOperation)
        .join(Conversion, col(Conversion.id) == col(CoalitionOperation.saga_id))
        .where(*_applied((OperationKind.CREDIT, OperationKind.DEBIT), col(Conversion.created_at), starts, ends))
        .group_by(col(Conversion.id))
    )
    both = union_all(conversions, _redemptions(starts, ends)).subquery()
    return select(both.c.reference, both.c.amount, both.c.counterparty).order_by(both.c.reference)


def _redemptions(starts: datetime, ends: datetime) -> Select[str, Any, str]:
    """Rewards paid with the point, per reference, as the ledger posts them in [starts, ends):
    the debit in the month the redemption was made, minus price and fee (even when a later
    cancel gave the points back); a cancel's reversal of the debit in the month the book
    reversed it, plus price and fee. A debit the saga undid itself (no cancel: the ledger
    never posted it) is no record; nor is a reference whose two lines net to zero in one month."""
    cancelled = col(Redemption.cancelled_by).is_not(None)
    price = col(Redemption.price_minor) + col(Redemption.fee_minor)
    debits: Select[str, int, str] = (
        select(col(Redemption.id).label("id"), (-price).label("amount"), col(Redemption.publisher).label("publisher"))
        .select_from(CoalitionOperation)
        .join(Redemption, col(Redemption.id) == col(CoalitionOperation.saga_id))
        .where(
            col(CoalitionOperation.kind) == OperationKind.DEBIT.value,
            or_(
                col(CoalitionOperation.status) == OperationStatus.APPLIED.value,
                and_(col(CoalitionOperation.status) == OperationStatus.REVERSED.value, cancelled),
            ),
            col(Redemption.created_at) >= starts,
            col(Redemption.created_at) < ends,
        )
    )
    reversals: Select[str, int, str] = (
        select(col(Redemption.id).label("id"), price.label("amount"), col(Redemption.publisher).label("publisher"))
        .select_from(CoalitionOperation)
        .join(Redemption, col(Redemption.id) == col(CoalitionOperation.saga_id))
        .where(
            *_applied((OperationKind.REVERSAL,), col(CoalitionOperation.created_at), starts, ends),
            col(CoalitionOperation.points) > 0,
            cancelled,
        )
    )
    moves = union_all(debits, reversals).subquery()
    return (
        select(
            (literal("redemption:", String) + moves.c.id).label("reference"),
            func.sum(moves.c.amount).label("amount"),
            func.min(moves.c.publisher).label("counterparty"),
        )
        .group_by(moves.c.id)
        .having(func.sum(moves.c.amount) != 0)
    )


def _expiries(starts: datetime, ends: datetime) -> Executable:
    """The expiry batches of [starts, ends), per funding program: the batch's first lot (as the
    expiry job orders them), its transaction, the funder, the points."""
    inner_expiry = CoalitionExpiry.__table__.alias("inner_expiry")  # type: ignore[attr-defined]
    inner_lot = CoalitionLot.__table__.alias("inner_lot")  # type: ignore[attr-defined]
    first_lot = (
        select(inner_lot.c.id)
        .join(inner_expiry, inner_expiry.c.lot_id == inner_lot.c.id)
        .where(inner_expiry.c.ledger_transaction_id == col(CoalitionExpiry.ledger_transaction_id))
        .order_by(inner_lot.c.expires_at, inner_lot.c.id)
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(
            first_lot.label("first_lot"),
            col(CoalitionExpiry.ledger_transaction_id),
            col(CoalitionLot.funded_by),
            func.sum(col(CoalitionExpiry.points)).label("points"),
        )
        .select_from(CoalitionExpiry)
        .join(CoalitionLot, col(CoalitionLot.id) == col(CoalitionExpiry.lot_id))
        .where(col(CoalitionExpiry.expired_at) >= starts, col(CoalitionExpiry.expired_at) < ends)
        .group_by(col(CoalitionExpiry.ledger_transaction_id), col(CoalitionLot.funded_by))
        .order_by("first_lot", col(CoalitionExpiry.ledger_transaction_id))
    )


def _routed(starts: datetime, ends: datetime) -> Executable:
    """The conversions routed through the point that completed, made in [starts, ends): id, route."""
    return (
        select(col(Conversion.id), col(Conversion.route))
        .where(
            # A direct conversion's route is JSON null, which is not SQL NULL.
            cast(col(Conversion.route), String) != "null",
            col(Conversion.status) == ConversionStatus.COMPLETED.value,
            col(Conversion.created_at) >= starts,
            col(Conversion.created_at) < ends,
        )
        .order_by(col(Conversion.id))
    )


def kept_by_the_point(route: Sequence[Mapping[str, Any]]) -> tuple[int, str]:
    """What the point kept of a routed conversion, in minor units, and the counterparty that
    paid into it: the first leg's money value less its fee, less the second leg's money value
    (what the ledger's ``partner-clearing:<point>`` keeps of the two transactions)."""
    into, out_of = route
    return int(into["money_value_minor"]) - int(into["fee_minor"]) - int(out_of["money_value_minor"]), str(
        into["from_program"]
    )


async def _expiry_batches(
    session: AsyncSession, rules: PointRules, starts: datetime, ends: datetime
) -> AsyncIterator[tuple[str, int]]:
    """Each expiry batch of [starts, ends) as (reference, what it took out of the point's
    clearing account): the point's leg of ``breakage_legs``, so rounded as the job rounds."""
    chart = ChartOfAccounts(rules.currency.code)
    batch: tuple[int, str] | None = None
    by_funder: dict[str | None, int] = defaultdict(int)
    async for first_lot, transaction, funder, points in await session.stream(_expiries(starts, ends)):
        if batch is not None and batch != (first_lot, transaction):
            yield f"{EXPIRY_KIND}:{batch[0]}", breakage_legs(rules, chart, by_funder)[0].amount
            by_funder = defaultdict(int)
        batch = (first_lot, transaction)
        by_funder[funder] += int(points)
    if batch is not None:
        yield f"{EXPIRY_KIND}:{batch[0]}", breakage_legs(rules, chart, by_funder)[0].amount


async def records(
    session: AsyncSession, rules: PointRules, *, period: str, starts: datetime, ends: datetime, out: IO[bytes]
) -> None:
    """Write the point's records of ``period`` ([starts, ends)) to ``out`` as CSV (see the
    module's docstring), a row at a time as the database streams them."""
    currency = rules.currency
    fixed = f"{rules.program_id},{period},{currency.code}\n"
    out.write(HEADER.encode())
    async for reference, amount, counterparty in await session.stream(_operations(starts, ends)):
        out.write(f"{reference},{currency.from_minor(int(amount))},{counterparty or ''},{fixed}".encode())
    async for conversion_id, route in await session.stream(_routed(starts, ends)):
        kept, payer = kept_by_the_point(route)
        out.write(f"conversion:{conversion_id},{currency.from_minor(kept)},{payer},{fixed}".encode())
    # A reference is one line: batches that share their first lot are summed.
    reference, amount = None, 0
    async for batch, taken in _expiry_batches(session, rules, starts, ends):
        if reference is not None and batch != reference:
            out.write(f"{reference},{currency.from_minor(amount)},,{fixed}".encode())
            amount = 0
        reference, amount = batch, amount + taken
    if reference is not None:
        out.write(f"{reference},{currency.from_minor(amount)},,{fixed}".encode())
