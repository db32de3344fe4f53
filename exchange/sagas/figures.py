"""Where the sagas stand, counted in the database: the figures the metrics show.

One statement for every saga table (a ``UNION ALL`` of one ``GROUP BY status`` each) reads only
rows that are not final, through each table's ``(status, next_attempt_at)`` index, so its cost
follows the work in flight, not the history.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, func, literal, or_, union_all
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db.types import UTCDateTime
from exchange.observability.metrics import SagaFigures
from exchange.sagas.engine import Saga


async def read_figures(session: AsyncSession, sagas: Sequence[Saga], now: datetime) -> list[SagaFigures]:  # type: ignore[type-arg]
    """The figures of every saga in ``sagas``, read in one statement at ``now``."""
    selects = []
    for saga in sagas:
        model = saga.model
        lease = col(model.lease_until)
        selects.append(
            select(  # type: ignore[call-overload]
                literal(saga.slug).label("saga"),
                col(model.status).label("status"),
                func.count().label("rows"),
                func.min(col(model.created_at), type_=UTCDateTime).label("oldest"),
                func.sum(case((or_(lease.is_(None), lease <= now), 1), else_=0)).label("unleased"),
            )
            .where(col(model.status).in_(list(saga.active)))
            .group_by(col(model.status))
        )
    rows = (await session.exec(union_all(*selects))).all()  # type: ignore[call-overload]
    figures = {saga.slug: SagaFigures(saga.slug, {str(state): 0 for state in saga.active}) for saga in sagas}
    oldest: dict[str, datetime] = {}
    backlog: dict[str, int] = {}
    for saga_name, status, count, first, unleased in rows:
        figures[saga_name].states[status] = int(count)
        if first is not None and (saga_name not in oldest or first < oldest[saga_name]):
            oldest[saga_name] = first
        backlog[saga_name] = backlog.get(saga_name, 0) + int(unleased or 0)
    return [
        SagaFigures(
            name,
            figure.states,
            max((now - oldest[name]).total_seconds(), 0.0) if name in oldest else 0.0,
            backlog.get(name, 0),
        )
        for name, figure in figures.items()
    ]
