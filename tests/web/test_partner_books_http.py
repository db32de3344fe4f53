"""The partner console's books page shows the coalition point's expiry rate digit for digit as
the books CSV writes it (and GraphQL, from the same value: ROUND_RATE, six decimals, half-even)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from functools import partial

import pytest

from exchange.auth.scopes import Role
from exchange.services.container import open_services
from exchange.settings import Settings
from exchange.testing.databases import PostgresDatabases
from tests.integration.settlement.test_coalition_books import lots_of_two_years
from tests.web.conftest import Gateway, run_async, start_gateway
from tests.web.test_console_http import signed_in

#: Lots 1 and 2 lapsed on 1 January 2026 with 400 of their 2,000 points unspent; lot 3 (4,000
#: points, 3,000 unspent) lapses on 1 January 2027: February 2027 looks back at it alone.
RATES = {"2027-01": "0.200000", "2027-02": "0.750000", "2025-10": ""}


@pytest.fixture(scope="module")
def with_lots(postgres_databases: PostgresDatabases) -> Iterator[Gateway]:
    """A gateway of its own whose coalition point has two years of lots."""
    for gateway in start_gateway(postgres_databases):
        run_async(partial(build_lots, gateway.settings))
        yield gateway


async def build_lots(settings: Settings) -> None:
    async with open_services(settings) as services:
        await lots_of_two_years(services.settlement)


def test_the_books_page_shows_the_expiry_rate_as_the_csv_and_graphql_write_it(with_lots: Gateway) -> None:
    with signed_in(with_lots, with_lots.person(Role.PARTNER, "formosa-air")) as client:
        for period, rate in RATES.items():
            exported = csv.DictReader(io.StringIO(client.get(f"/console/partner/books/{period}/books.csv").text))
            written = next(row["amount"] for row in exported if row["figure"] == "coalition_expiry_rate")
            assert written == rate, period
            for language in ("en", "zh-TW"):
                page = client.get(f"/console/partner/books/{period}", headers={"accept-language": language}).text
                assert f'<span id="expiry-rate">{rate or "—"}</span>' in page, (period, language)
