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
  confirmed in time) gave the points back, plus price and fee, placed by the cancel's own
  reversal. A redemption cancelled in a later month so reconciles in both months, and a
  month's records do not change when a later month cancels one of its redemptions.
* ``coalition-expiry:<lot id>``: each expiry batch, named by its first lot as the expiry job
  names its transaction: minus the value of the points expired, rounded per keeper of the
  breakage as the job does (``expiry.breakage_legs``).

Which month a line is in (``Month.holds``): the period the ledger posted its transaction into,
which is the month it was made in, or, when that month closed while it was still in flight,
the first month open when it posted (a late line, as in every participant's statement); one
the ledger has not posted, the month it was made in (``created_at``; a cancel's reversal, the
book's; an expiry, its time). The book's lines never move after the fact, and a late line is
matched where the statements show it, not a break in two months. What is taken from the ledger
is only that month: each line's presence and amount come from the book, so an operation the
book holds that the ledger never posted, or posted otherwise, is a break. An operation its saga
undid before the ledger posted it (a conversion compensated, a debit given back in doubt) is no
record.

The rows are read as a stream and written as they come.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
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
from exchange.ledger.models import LedgerTransaction
from exchange.rewards.models import Redemption

HEADER = "reference,amount,counterparty,partner,period,currency\n"


@dataclass(frozen=True, slots=True)
class Month:
    """The period the records are of, and its bounds [starts, ends) in the settlement time zone."""

    period: str
    starts: datetime
    ends: datetime

    def holds(self, transaction_id: ColumnElement[str] | Mapped[str], made_at: Mapped[datetime]) -> ColumnElement[bool]:
        """Whether a record falls in this month: the period the ledger posted ``transaction_id``
        into (its own month, or as a late line the first month open when it was posted); one
        the ledger has not posted, the month ``made_at`` falls in (where it shows as a break)."""
        posted = (
            select(col(LedgerTransaction.period)).where(col(LedgerTransaction.id) == transaction_id).scalar_subquery()
        )
        return or_(posted == self.period, and_(posted.is_(None), made_at >= self.starts, made_at < self.ends))


def _applied(kinds: tuple[OperationKind, ...]) -> list[ColumnElement[bool]]:
    """The book's applied operations of ``kinds``."""
    return [
        col(CoalitionOperation.kind).in_([kind.value for kind in kinds]),
        col(CoalitionOperation.status) == OperationStatus.APPLIED.value,
    ]


def _transaction(prefix: str, saga_id: Mapped[str], suffix: str = "") -> ColumnElement[str]:
    """The id of the ledger transaction a saga posts (``conversion:<id>``, ``redemption:<id>:reversal``)."""
    return literal(prefix, String) + saga_id + literal(suffix, String)


def _operations(month: Month) -> Executable:
    """Conversions and redemptions the point's book holds as applied in ``month``: reference,
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
        .where(
            *_applied((OperationKind.CREDIT, OperationKind.DEBIT)),
            month.holds(_transaction("conversion:", col(Conversion.id)), col(Conversion.created_at)),
        )
        .group_by(col(Conversion.id))
    )
    both = union_all(conversions, _redemptions(month)).subquery()
    return select(both.c.reference, both.c.amount, both.c.counterparty).order_by(both.c.reference)


def _redemptions(month: Month) -> Select[str, Any, str]:
    """Rewards paid with the point, per reference, as the ledger posts them in ``month``:
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
            month.holds(_transaction("redemption:", col(Redemption.id)), col(Redemption.created_at)),
        )
    )
    reversals: Select[str, int, str] = (
        select(col(Redemption.id).label("id"), price.label("amount"), col(Redemption.publisher).label("publisher"))
        .select_from(CoalitionOperation)
        .join(Redemption, col(Redemption.id) == col(CoalitionOperation.saga_id))
        .where(
            *_applied((OperationKind.REVERSAL,)),
            month.holds(
                _transaction("redemption:", col(Redemption.id), ":reversal"), col(CoalitionOperation.created_at)
            ),
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


def _expiries(month: Month) -> Executable:
    """The expiry batches of ``month``, per funding program: the batch's first lot (as the
    expiry job orders them), its transaction, the funder, the points. A batch is in the month
    the ledger posted it into (``Month.holds``), as every other line: a batch dated in a month
    that closed before it posted (an expiry run that went on past its month's end) is a late
    line of the next."""
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
        .where(month.holds(col(CoalitionExpiry.ledger_transaction_id), col(CoalitionExpiry.expired_at)))
        .group_by(col(CoalitionExpiry.ledger_transaction_id), col(CoalitionLot.funded_by))
        .order_by("first_lot", col(CoalitionExpiry.ledger_transaction_id))
    )


def _routed(month: Month) -> Executable:
    """The conversions routed through the point that completed, in ``month``: id, route."""
    return (
        select(col(Conversion.id), col(Conversion.route))
        .where(
            # A direct conversion's route is JSON null, which is not SQL NULL.
            cast(col(Conversion.route), String) != "null",
            col(Conversion.status) == ConversionStatus.COMPLETED.value,
            # Both legs are posted in one unit of work: the first's period is the second's.
            month.holds(_transaction("conversion:", col(Conversion.id), ":1"), col(Conversion.created_at)),
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


async def _expiry_batches(session: AsyncSession, rules: PointRules, month: Month) -> AsyncIterator[tuple[str, int]]:
    """Each expiry batch of ``month`` as (reference, what it took out of the point's
    clearing account): the point's leg of ``breakage_legs``, so rounded as the job rounds."""
    chart = ChartOfAccounts(rules.currency.code)
    batch: tuple[int, str] | None = None
    by_funder: dict[str | None, int] = defaultdict(int)
    async for first_lot, transaction, funder, points in await session.stream(_expiries(month)):
        if batch is not None and batch != (first_lot, transaction):
            yield f"{EXPIRY_KIND}:{batch[0]}", breakage_legs(rules, chart, by_funder)[0].amount
            by_funder = defaultdict(int)
        batch = (first_lot, transaction)
        by_funder[funder] += int(points)
    if batch is not None:
        yield f"{EXPIRY_KIND}:{batch[0]}", breakage_legs(rules, chart, by_funder)[0].amount


async def records(session: AsyncSession, rules: PointRules, month: Month, out: IO[bytes]) -> None:
    """Write the point's records of ``month`` to ``out`` as CSV (see the module's docstring), a
    row at a time as the database streams them."""
    currency = rules.currency

    def line(reference: str, minor: int, counterparty: str | None) -> None:
        out.write(
            f"{reference},{currency.from_minor(minor)},{counterparty or ''},"
            f"{rules.program_id},{month.period},{currency.code}\n".encode()
        )

    out.write(HEADER.encode())
    async for reference, amount, counterparty in await session.stream(_operations(month)):
        line(reference, int(amount), counterparty)
    async for conversion_id, route in await session.stream(_routed(month)):
        kept, payer = kept_by_the_point(route)
        line(f"conversion:{conversion_id}", kept, payer)
    # A reference is one line: batches that share their first lot are summed.
    batch_reference, total = None, 0
    async for batch, taken in _expiry_batches(session, rules, month):
        if batch_reference is not None and batch != batch_reference:
            line(batch_reference, total, None)
            total = 0
        batch_reference, total = batch, total + taken
    if batch_reference is not None:
        line(batch_reference, total, None)
