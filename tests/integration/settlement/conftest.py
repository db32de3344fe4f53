"""A settlement service on a fresh database (SQLite and PostgreSQL) with the sample programs
loaded, a clock the tests move, and ways to post what partners' operations post."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from exchange.db.database import Database
from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.posting import Ledger, Leg, TransactionRequest
from exchange.loading import load_directory
from exchange.programs.declarations import read_partners_directory
from exchange.rewards.clearing import redemption_transaction
from exchange.services.books import BooksService
from exchange.services.settlement import SettlementService
from exchange.settlement.closing import PeriodReport
from exchange.settlement.issued import IssuedFigures
from exchange.settlement.keys import StatementKeys
from exchange.settlement.models import IssuedStatement
from exchange.settlement.statements import StatementLine
from exchange.testing.clock import FrozenClock
from tests import factories
from tests.conftest import SAMPLE_PARTNERS

TAIPEI = ZoneInfo("Asia/Taipei")
CHART = ChartOfAccounts("TWD")
SECRET = "a test key-encryption secret of some length"
ISSUER = "http://exchange.test"
RETENTION_YEARS = 7
NOVEMBER = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOVEMBER)


async def ready_service(db: Database, clock: FrozenClock, *, statement_key: bool = True) -> SettlementService:
    async with db.transaction() as session:
        await load_directory(session, read_partners_directory(SAMPLE_PARTNERS), clock.now())
    return await settlement_on(db, clock, statement_key=statement_key)


async def settlement_on(db: Database, clock: FrozenClock, *, statement_key: bool = True) -> SettlementService:
    """A settlement service on a database whose programs are loaded, with an active statement
    key unless ``statement_key`` is false (a database no gateway has started on)."""
    keys = StatementKeys(db, SECRET, clock, retention_years=RETENTION_YEARS)
    if statement_key:
        async with db.transaction() as session:
            await keys.ensure_active(session)
    return SettlementService(db=db, ledger=Ledger(timezone=TAIPEI, clock=clock), clock=clock, keys=keys, issuer=ISSUER)


@pytest.fixture
async def settlement(db: Database, clock: FrozenClock) -> SettlementService:
    return await ready_service(db, clock)


@pytest.fixture
async def pg_settlement(pg_db: Database, clock: FrozenClock) -> SettlementService:
    return await ready_service(pg_db, clock)


@pytest.fixture
def books(settlement: SettlementService, clock: FrozenClock) -> BooksService:
    return BooksService(settlement.db, settlement.calendar, clock)


def conversion(
    name: str,
    source: str,
    target: str,
    value: int,
    fee: int = 0,
    *,
    points: tuple[int, int] | None = None,
    at: datetime = NOVEMBER,
) -> TransactionRequest:
    """:func:`tests.factories.conversion`, in November unless ``at`` says otherwise."""
    return factories.conversion(name, source, target, value, fee, points=points, at=at)


def redemption(
    name: str, payer: str, publisher: str, price: int, fee: int = 0, *, at: datetime = NOVEMBER
) -> TransactionRequest:
    """What a cross-partner redemption posts: the paying program owes the publishing partner the
    reward's price, less the exchange's fee."""
    legs = [Leg(CHART.clearing(payer), -price), Leg(CHART.clearing(publisher), price - fee)]
    if fee:
        legs.append(Leg(CHART.fees(), fee))
    return TransactionRequest(
        id=f"t-{name}", kind="redemption", reference=f"redemption:{name}", effective_at=at, legs=tuple(legs)
    )


def points_redemption(
    name: str, paying: str, publisher: str, points: int, price: int, fee: int, *, at: datetime = NOVEMBER
) -> TransactionRequest:
    """What a redemption paid with ``points`` of ``paying`` posts, its points legs included (the
    books count them); :func:`redemption` is its clearing legs alone."""
    return redemption_transaction(
        chart=CHART,
        transaction_id=f"t-{name}",
        redemption_id=name,
        paying=paying,
        publisher=publisher,
        points=points,
        price_minor=price,
        fee_minor=fee,
        effective_at=at,
    )


async def post(service: SettlementService, requests: Iterable[TransactionRequest]) -> None:
    async with service.db.transaction() as session:
        await service.ledger.post_many(session, list(requests))


async def close(service: SettlementService, clock: FrozenClock, period: str) -> PeriodReport:
    """Close ``period`` once it is over (the clock moves a day past its end if need be)."""
    end = service.calendar.ends_at(period)
    if clock.now() < end:
        clock.current = end + timedelta(days=1)
    return await service.close(period, by="staff")


@dataclass(frozen=True, kw_only=True)
class Served(IssuedFigures):
    """A participant's issued statement as the product serves it: its figures as its pages and
    GraphQL show them (``statement_figures``) with every one of its lines (``statement_lines``,
    a page at a time), and its downloads: the stored document and JWS (``issued_statement``)
    and the CSV (``statement_csv``)."""

    row: IssuedStatement
    csv_text: str

    def json(self) -> str:
        return self.row.document

    def csv(self) -> str:
        return self.csv_text

    @property
    def jws(self) -> str:
        return self.row.jws


async def served(service: SettlementService, participant: str, period: str, *, page: int = 100) -> Served:
    """The participant's statement of the closed ``period`` read as every front end reads it
    (a first reading issues one not issued yet)."""
    figures = await service.statement_figures(participant, period)
    lines: list[StatementLine] = []
    after: str | None = None
    while True:
        found = await service.statement_lines(participant, period, first=page, after=after)
        lines.extend(found.items)
        if found.next_cursor is None:
            break
        after = found.next_cursor
    pieces = await service.statement_csv(participant, period)
    return Served(
        **{each.name: getattr(figures, each.name) for each in fields(figures) if each.init and each.name != "lines"},
        lines=lines,
        row=await service.issued_statement(participant, period),
        csv_text="".join([piece async for piece in pieces]),
    )
