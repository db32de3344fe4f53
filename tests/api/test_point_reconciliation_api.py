"""Staff reconcile the coalition point over GraphQL (`reconcileCoalitionPoint`), as
`exchange settle reconcile-point` does: its records come from the exchange's own book of the
point, no file is sent, and the staff client that asked is recorded as the importer (the book as
the records' source). A partner may not; a bad or open period is refused as
`importPartnerRecords` refuses it, and nothing is imported (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from exchange.auth.scopes import Role
from exchange.ledger.posting import Ledger
from exchange.services.container import open_services
from exchange.settings import Settings
from exchange.settlement.errors import ResolvedBreaksWouldBeLost
from exchange.testing.clock import FrozenClock
from exchange.testing.kit import ExchangeKit
from tests.api.conftest import ON_SQLITE_TOO, post_last_month
from tests.factories import conversion

POINT = "coalition"
RECONCILE = """mutation($p: String!) { reconcileCoalitionPoint(period: $p) {
  partnerId period importedBy source lines matched missingInPartner unresolvedBreaks
  breaks { kind reference ledgerAmount nextStep }
} }"""
IMPORT = 'mutation($p: String!) { importPartnerRecords(partnerId: "coalition", period: $p, csv: "reference,amount\\n") { id } }'
CURRENT = 'query($p: String!) { reconciliation(partnerId: "coalition", period: $p) { id } }'


@pytest.fixture
def gateway_settings(store_settings: Settings) -> Settings:
    return store_settings


async def point_month(kit: ExchangeKit) -> str:
    """Last month, with a conversion out of the point that the ledger posted and the point's book
    has no operation of (posted by hand): the one line that cannot match."""
    period = await post_last_month(kit)
    ledger = Ledger.for_settings(kit.settings, FrozenClock(datetime.now(UTC)))
    during = ledger.calendar.starts_at(period) + timedelta(days=3)
    async with kit.db.transaction() as session:
        await ledger.post_many(session, [conversion("p1", POINT, "fresh-mart", 1_500, 30, at=during)])
    return period


def refusal(body: dict[str, Any]) -> dict[str, Any]:
    (error,) = body["errors"]
    return {"path": error["path"], **error["extensions"]}


@ON_SQLITE_TOO
async def test_staff_reconcile_the_point_from_its_own_book(kit: ExchangeKit) -> None:
    period = await point_month(kit)
    client = await kit.new_client(Role.SETTLEMENT)
    staff = await kit.client_token(client)
    await kit.data("mutation($p: String!) { closePeriod(period: $p) { status } }", staff, p=period)

    reconciled = (await kit.data(RECONCILE, staff, p=period))["reconcileCoalitionPoint"]
    assert reconciled == {
        "partnerId": POINT,
        "period": period,
        "importedBy": client.client.client_id,
        "source": "COALITION_BOOK",
        "lines": 0,
        "matched": 0,
        "missingInPartner": 1,
        "unresolvedBreaks": 1,
        "breaks": [
            {
                "kind": "MISSING_IN_PARTNER",
                "reference": "conversion:p1",
                "ledgerAmount": "-15.00",
                # No partner sent these records: the step is settlement staff's.
                "nextStep": "The ledger posted this reference to the point and the book of the point holds no "
                "applied operation of it: see whether the book's operation was reversed or changed by hand; let "
                "the ledger stand, or post an adjustment.",
            }
        ],
    }
    assert (await kit.data(CURRENT, staff, p=period))["reconciliation"]["id"]


@ON_SQLITE_TOO
async def test_the_point_is_reconciled_by_staff_only_of_a_closed_period(kit: ExchangeKit) -> None:
    period = await point_month(kit)
    staff = await kit.staff_token(Role.SETTLEMENT)
    # Open still: refused as importPartnerRecords refuses the same period.
    early = refusal((await kit.graphql(RECONCILE, staff, p=period)).json())
    assert early == {**refusal((await kit.graphql(IMPORT, staff, p=period)).json()), "path": early["path"]}
    assert early["code"] == "PERIOD_NOT_CLOSED"
    bad = refusal((await kit.graphql(RECONCILE, staff, p="2026-13")).json())
    assert bad == {"path": ["reconcileCoalitionPoint"], "code": "BAD_USER_INPUT", "field": "period"}

    await kit.data("mutation($p: String!) { closePeriod(period: $p) { status } }", staff, p=period)
    for token in (
        await kit.partner_token("fresh-mart"),
        await kit.staff_token(Role.SETTLEMENT, scope="settlement:read"),
    ):
        body = (await kit.graphql(RECONCILE, token, p=period)).json()
        assert body["data"] == {"reconcileCoalitionPoint": None}
        assert refusal(body)["code"] == "FORBIDDEN"
    nothing = (await kit.graphql(CURRENT, staff, p=period)).json()
    assert refusal(nothing)["code"] == "NOT_FOUND"  # nothing was imported


@ON_SQLITE_TOO
async def test_a_refused_reconciliation_names_only_a_field_its_caller_has(kit: ExchangeKit) -> None:
    """Once a break is resolved, a new import is refused. A partner's records name their input
    (`csv`); the point's, written from the book for the period, name none: neither
    `reconcileCoalitionPoint`, nor the console's button, nor `exchange settle reconcile-point` is
    sent a file to correct (the console says so of the book, not of a file)."""
    period = await point_month(kit)
    staff = await kit.staff_token(Role.SETTLEMENT)
    await kit.data("mutation($p: String!) { closePeriod(period: $p) { status } }", staff, p=period)
    sent = IMPORT.replace("{ id }", "{ breaks { id } }")
    [unmatched] = (await kit.data(sent, staff, p=period))["importPartnerRecords"]["breaks"]
    resolve = 'mutation($id: ID!) { resolveBreak(breakId: $id, resolution: ACCEPT_LEDGER, reason: "the ledger is right") { id } }'
    await kit.data(resolve, staff, id=unmatched["id"])

    async with open_services(kit.settings) as services:
        with pytest.raises(ResolvedBreaksWouldBeLost) as from_book:
            await services.settlement.import_point_records(period, by="staff")
        assert from_book.value.field is None
        with pytest.raises(ResolvedBreaksWouldBeLost) as from_file:
            await services.settlement.import_records(
                POINT, period, io.BytesIO(b"reference,amount\nx,1.00\n"), by="staff"
            )
        assert from_file.value.field == "csv"
    refused = refusal((await kit.graphql(RECONCILE, staff, p=period)).json())
    assert refused == {"path": ["reconcileCoalitionPoint"], "code": "BAD_USER_INPUT"}
