"""Partner records files as finance teams really write them, uploaded as partners upload them
(``PUT /settlement/records/{partnerId}/{period}``, ``text/csv``, the partner's own token): each
is matched correctly, or refused with ``400`` naming its line, the column and the rule, and
nothing imported (the files: tests/records_files.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from exchange.conversions.clearing import conversion_transaction
from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.posting import Ledger
from exchange.testing.clock import FrozenClock
from tests.api.conftest import ExchangeKit
from tests.api.test_settlement_api import close
from tests.records_files import Compared, PeriodLedger, Refused, files, outcome_is

CURRENT = 'query($p: String!) { reconciliation(partnerId: "fresh-mart", period: $p) { id } }'


async def post_a_reversed_conversion(kit: ExchangeKit, period: str) -> None:
    """wallet-pay → fresh-mart, 5.00, posted in ``period`` and reversed within it."""
    ledger = Ledger.for_settings(kit.settings, FrozenClock(datetime.now(UTC)))
    during = ledger.calendar.starts_at(period) + timedelta(days=4)
    async with kit.db.transaction() as session:
        await ledger.post_many(
            session,
            [
                conversion_transaction(
                    chart=ChartOfAccounts("TWD"),
                    transaction_id="t-c3",
                    conversion_id="c3",
                    source="wallet-pay",
                    target="fresh-mart",
                    points_in=500,
                    points_out=500,
                    money_value_minor=500,
                    fee_minor=0,
                    effective_at=during,
                )
            ],
        )
        await ledger.reverse(session, "t-c3", transaction_id="t-c3-reversal", effective_at=during)


async def test_every_file_a_finance_team_uploads_is_matched_or_refused_at_its_line(
    kit: ExchangeKit, last_month: str
) -> None:
    await post_a_reversed_conversion(kit, last_month)
    await close(kit, last_month)
    partner = await kit.partner_token("fresh-mart")
    ledger = PeriodLedger(
        partner="fresh-mart",
        period=last_month,
        lines=(("conversion:c1", "98.00"),),
        reversed=("conversion:c3", "5.00"),
        other="conversion:c2",
    )
    headers = {"authorization": f"Bearer {partner}", "content-type": "text/csv"}
    wrong: dict[str, object] = {}  # every file whose outcome is not the expected one, with what it was
    for name, (data, expected) in files(ledger).items():
        before = (await kit.graphql(CURRENT, partner, p=last_month)).json()
        response = await kit.http.put(f"/settlement/records/fresh-mart/{last_month}", content=data, headers=headers)
        body = response.json()
        if response.status_code == 200:
            found: Compared | Refused | dict[str, object] = Compared(
                body["lines"],
                body["matched"],
                body["amountMismatch"],
                body["missingInLedger"],
                body["duplicate"],
                body["missingInPartner"],
            )
        elif response.status_code == 400 and body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT":
            extensions = body["errors"][0]["extensions"]
            found = Refused(extensions["line"], extensions["reason"])
            if (await kit.graphql(CURRENT, partner, p=last_month)).json() != before:
                wrong[f"{name}: imported though refused"] = found
        else:
            found = {"status": response.status_code, **body}
        if not outcome_is(found, expected):
            wrong[name] = found
    assert wrong == {}


async def test_a_period_written_as_a_day_or_with_a_space_is_told_how_a_period_is_written(kit: ExchangeKit) -> None:
    """A finance team writing the month's first day (``2026-11-01``) or pasting ``' 2026-11'``
    was told only that ``period must be at most 7 characters``, and one writing ``11/2026`` in
    an address that nothing is served there: every way in says the form."""
    partner = await kit.partner_token("fresh-mart")
    headers = {"authorization": f"Bearer {partner}", "content-type": "text/csv"}
    statement = 'query($p: String!) { statement(partnerId: "fresh-mart", period: $p) { jws } }'
    books = 'query($p: String!) { partnerBooks(partnerId: "fresh-mart", period: $p) { costPerPoint } }'
    upload = 'mutation($p: String!) { importPartnerRecords(partnerId: "fresh-mart", period: $p, csv: "") { lines } }'
    for written in ("2026-11-01", " 2026-11", "November 2026, as booked in Taipei", "11/2026", "2026/11"):
        quoted = repr(written) if len(written) <= 20 else f"{written[:20]!r}… ({len(written)} characters)"
        said = f"a period is written YYYY-MM, such as 2026-11; got {quoted}"
        for document in (statement, books, upload):
            errors = (await kit.graphql(document, partner, p=written)).json()["errors"]
            assert [(e["message"], e["extensions"]["code"], e["extensions"]["field"]) for e in errors] == [
                (said, "BAD_USER_INPUT", "period")
            ]
        for response in (
            await kit.http.put(
                f"/settlement/records/fresh-mart/{written}", content=b"reference,amount\n", headers=headers
            ),
            await kit.http.get(f"/settlement/books/fresh-mart/{written}.csv", headers=headers),
        ):
            error = response.json()["errors"][0]
            assert (response.status_code, error["message"], error["extensions"]["field"]) == (400, said, "period")
