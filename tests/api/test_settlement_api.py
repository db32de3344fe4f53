"""The settlement cycle over GraphQL with real tokens: staff close, partners read their own
statement (and verify it with the published statement keys), upload their records, staff
resolve and sign off; no partner reaches another partner's figures by any path."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from joserfc import jws
from joserfc.jwk import KeySet
from sqlalchemy import text

from exchange.auth.scopes import Role
from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.posting import Ledger
from exchange.testing.clock import FrozenClock
from tests.api.conftest import ExchangeKit

CHART = ChartOfAccounts("TWD")


def errors_at(body: dict[str, Any]) -> dict[tuple[str | int, ...], str]:
    return {tuple(error["path"]): error["extensions"]["code"] for error in body.get("errors", [])}


CLOSE = """mutation($period: String!) { closePeriod(period: $period) {
  period status closedBy positions { partnerId netPosition } netting { gross { count total } multilateral { count total } }
} }"""
STATEMENT = "query($partner: ID!, $period: String!) { statement(partnerId: $partner, period: $period) { partnerId netPosition json jws keyId lines { reference category counterparty amount } } }"


async def close(kit: ExchangeKit, period: str) -> dict[str, Any]:
    return (await kit.data(CLOSE, await kit.staff_token(Role.SETTLEMENT), period=period))["closePeriod"]


async def test_staff_close_a_period_and_see_every_position_and_the_saving(kit: ExchangeKit, last_month: str) -> None:
    closed = await close(kit, last_month)
    assert closed["status"] == "CLOSED" and closed["closedBy"].startswith("settlement-")
    assert {p["partnerId"]: p["netPosition"] for p in closed["positions"]} == {
        "EXCHANGE": "2.60",
        "formosa-air": "-30.00",
        "fresh-mart": "98.00",
        "wallet-pay": "-70.60",
    }
    assert closed["netting"] == {
        "gross": {"count": 4, "total": "130.00"},
        "multilateral": {"count": 4, "total": "100.60"},
    }
    staff = await kit.staff_token(Role.SETTLEMENT)
    messages = {
        partner: (await kit.graphql(STATEMENT, staff, partner=partner, period=last_month)).json()["errors"][0][
            "message"
        ]
        for partner in ("happy-card", "fresh_mart", "exchange")
    }
    known = "EXCHANGE, coalition, formosa-air, fresh-mart, happy-card, harbor-bank, tune-stream, wallet-pay"
    assert messages == {
        "happy-card": f"'happy-card' took no part in settling period {last_month}; it has taken part in no closed period yet",
        # A typo is not a program without business: it is named, with the ids it could have meant,
        # the exchange's own among them.
        "fresh_mart": f"no program has id 'fresh_mart'; the programs are {known}",
        "exchange": f"no program has id 'exchange'; the programs are {known}",
    }
    # Not the exchange's own, where asked for a reconciliation: it has none.
    reconciliation = 'query($p: String!) { reconciliation(partnerId: "fresh_mart", period: $p) { id } }'
    typo = (await kit.graphql(reconciliation, staff, p=last_month)).json()["errors"][0]["message"]
    assert typo == f"no program has id 'fresh_mart'; the programs are {known.removeprefix('EXCHANGE, ')}"


async def test_a_partner_sees_a_periods_state_and_only_its_own_position(kit: ExchangeKit, last_month: str) -> None:
    await close(kit, last_month)
    token = await kit.partner_token("fresh-mart")
    body = (
        await kit.graphql(
            "query($period: String!) { settlementPeriod(period: $period) { status positions { partnerId } "
            'mine: position(partnerId: "fresh-mart") { status netPosition signedOffBy } '
            'theirs: position(partnerId: "wallet-pay") { netPosition } obligations { amount } netting { gross { count } } } }',
            token,
            period=last_month,
        )
    ).json()
    period = body["data"]["settlementPeriod"]
    assert period["status"] == "CLOSED" and period["mine"] == {
        "status": "CLOSED",
        "netPosition": "98.00",
        "signedOffBy": None,
    }
    assert period["positions"] is None and period["theirs"] is None and period["obligations"] is None
    assert errors_at(body) == {
        ("settlementPeriod", path): "FORBIDDEN" for path in ("positions", "theirs", "obligations", "netting")
    } | {("settlementPeriod", "mine", "signedOffBy"): "FORBIDDEN"}
    member = await kit.member_token("wallet-pay", "alice")
    refused = (
        await kit.graphql("query($p: String!) { settlementPeriod(period: $p) { status } }", member, p=last_month)
    ).json()
    assert errors_at(refused) == {("settlementPeriod",): "FORBIDDEN"}


async def test_staff_see_which_statements_are_not_issued_yet_and_partners_do_not(
    kit: ExchangeKit, last_month: str
) -> None:
    """As after a closing cut while issuing: the period is CLOSED, a statement is not stored yet."""
    query = "query($p: String!) { settlementPeriod(period: $p) { status statementsNotIssued } }"
    staff = await kit.staff_token(Role.SETTLEMENT)
    assert (await kit.data(query, staff, p=last_month))["settlementPeriod"] == {
        "status": "OPEN",
        "statementsNotIssued": None,
    }
    await close(kit, last_month)
    assert (await kit.data(query, staff, p=last_month))["settlementPeriod"]["statementsNotIssued"] == []
    async with kit.db.transaction() as session:
        await session.exec(
            text("DELETE FROM issued_statement WHERE participant = 'fresh-mart'")  # type: ignore[call-overload]
        )
    assert (await kit.data(query, staff, p=last_month))["settlementPeriod"] == {
        "status": "CLOSED",
        "statementsNotIssued": ["fresh-mart"],
    }
    await kit.data(STATEMENT, staff, partner="fresh-mart", period=last_month)  # its first download issues it
    assert (await kit.data(query, staff, p=last_month))["settlementPeriod"]["statementsNotIssued"] == []
    partner = (await kit.graphql(query, await kit.partner_token("fresh-mart"), p=last_month)).json()
    assert errors_at(partner) == {("settlementPeriod", "statementsNotIssued"): "FORBIDDEN"}


async def test_an_archived_period_says_when_it_was_archived_and_stays_closed(kit: ExchangeKit, last_month: str) -> None:
    """As the console shows it Archived: staff and partners read when (the state is theirs both)."""
    query = "query($p: String!) { settlementPeriod(period: $p) { status archivedAt } }"
    staff, partner = await kit.staff_token(Role.SETTLEMENT), await kit.partner_token("fresh-mart")
    assert (await kit.data(query, staff, p=last_month))["settlementPeriod"] == {"status": "OPEN", "archivedAt": None}
    await close(kit, last_month)
    assert (await kit.data(query, staff, p=last_month))["settlementPeriod"] == {"status": "CLOSED", "archivedAt": None}
    async with kit.db.transaction() as session:  # as `exchange ledger archive` marks it (PostgreSQL, every sign-off)
        await session.exec(
            text(  # type: ignore[call-overload]
                "UPDATE ledger_close_anchor SET archived_at = '2026-12-03T04:05:06Z' WHERE period = :p"
            ).bindparams(p=last_month)
        )
    archived = {"status": "CLOSED", "archivedAt": "2026-12-03T04:05:06+00:00"}
    for token in (staff, partner):
        assert (await kit.data(query, token, p=last_month))["settlementPeriod"] == archived


async def test_a_partner_reads_its_own_signed_statement_and_verifies_it_with_the_statement_keys(
    kit: ExchangeKit, last_month: str
) -> None:
    await close(kit, last_month)
    token = await kit.partner_token("wallet-pay")
    statement = (await kit.data(STATEMENT, token, partner="wallet-pay", period=last_month))["statement"]
    assert statement["netPosition"] == "-70.60"
    assert statement["lines"] == [
        {"reference": "conversion:c1", "category": "conversion", "counterparty": "fresh-mart", "amount": "-98.00"},
        {"reference": "conversion:c1", "category": "fee", "counterparty": "EXCHANGE", "amount": "-2.00"},
        {"reference": "conversion:c2", "category": "conversion", "counterparty": "formosa-air", "amount": "29.40"},
    ]
    published = (await kit.http.get("/.well-known/statement-keys.json")).json()
    verified = jws.deserialize_compact(statement["jws"], KeySet.import_key_set(published), algorithms=["RS256"])
    assert verified.payload.decode() == statement["json"] and verified.protected["kid"] == statement["keyId"]
    token_keys = (await kit.http.get("/.well-known/jwks.json")).json()
    assert statement["keyId"] not in {key["kid"] for key in token_keys["keys"]}, "statements have keys of their own"


async def test_no_partner_reads_another_partners_statement_or_reconciliation_by_any_path(
    kit: ExchangeKit, last_month: str
) -> None:
    await close(kit, last_month)
    token = await kit.partner_token("formosa-air")
    query = """query($period: String!, $other: ID!) {
      direct: statement(partnerId: "wallet-pay", period: $period) { netPosition }
      variable: statement(partnerId: $other, period: $period) { json }
      exchange: statement(partnerId: "EXCHANGE", period: $period) { jws }
      records: reconciliation(partnerId: $other, period: $period) { id }
      own: statement(partnerId: "formosa-air", period: $period) { netPosition counterparties { counterparty net } }
    }"""
    body = (await kit.graphql(query, token, period=last_month, other="wallet-pay")).json()
    assert body["data"]["own"] == {
        "netPosition": "-30.00",
        "counterparties": [
            {"counterparty": "EXCHANGE", "net": "-0.60"},
            {"counterparty": "wallet-pay", "net": "-29.40"},
        ],
    }
    assert errors_at(body) == {(alias,): "FORBIDDEN" for alias in ("direct", "variable", "exchange", "records")}
    upload = (
        await kit.graphql(
            'mutation($p: String!) { importPartnerRecords(partnerId: "wallet-pay", period: $p, csv: "reference,amount\\n") { id } }',
            token,
            p=last_month,
        )
    ).json()
    assert errors_at(upload) == {("importPartnerRecords",): "FORBIDDEN"}


MONEY_PAIRS = {
    "openingPosition": "opening",
    "payable": "grossPayable",
    "receivable": "grossReceivable",
    "netPosition": "netAmount",
    "closingPosition": "closing",
}
POSITION = " ".join(f"{old} {new} {{ amount currency }}" for old, new in MONEY_PAIRS.items())


def same_amounts(found: dict[str, Any], pairs: dict[str, str]) -> None:
    """Each deprecated decimal and its Money replacement say the same amount, in TWD."""
    for old, new in pairs.items():
        expected = None if found[old] is None else {"amount": found[old], "currency": "TWD"}
        assert found[new] == expected, (old, new, found)


async def test_money_fields_say_what_the_deprecated_decimals_say(kit: ExchangeKit, last_month: str) -> None:
    await close(kit, last_month)
    staff = await kit.staff_token(Role.SETTLEMENT)
    period = (
        await kit.data(
            "query($p: String!) { settlementPeriod(period: $p) { positions { " + POSITION + " }"
            " obligations { amount value { amount currency } }"
            " netting { gross { total totalValue { amount currency } } } } }",
            staff,
            p=last_month,
        )
    )["settlementPeriod"]
    for position in period["positions"]:
        same_amounts(position, MONEY_PAIRS)
    for obligation in period["obligations"]:
        same_amounts(obligation, {"amount": "value"})
    same_amounts(period["netting"]["gross"], {"total": "totalValue"})
    statement = (
        await kit.data(
            'query($p: String!) { statement(partnerId: "wallet-pay", period: $p) { currency '
            + POSITION
            + " counterparties { payable grossPayable { amount currency } receivable grossReceivable { amount currency }"
            " net netAmount { amount currency } } lines { amount value { amount currency } } } }",
            staff,
            p=last_month,
        )
    )["statement"]
    assert statement["currency"] == "TWD" and statement["netAmount"] == {"amount": "-70.60", "currency": "TWD"}
    same_amounts(statement, MONEY_PAIRS)
    for totals in statement["counterparties"]:
        same_amounts(totals, {"payable": "grossPayable", "receivable": "grossReceivable", "net": "netAmount"})
    for line in statement["lines"]:
        same_amounts(line, {"amount": "value"})
    imported = (
        await kit.data(
            'mutation($p: String!, $csv: String!) { importPartnerRecords(partnerId: "fresh-mart", period: $p, csv: $csv)'
            " { breaks { id partnerAmount partnerValue { amount currency } ledgerAmount ledgerValue { amount currency }"
            " difference differenceValue { amount currency } } } }",
            staff,
            p=last_month,
            csv="reference,amount\nconversion:c1,97.00\nconversion:c9,5.00\n",
        )
    )["importPartnerRecords"]
    pairs = {"partnerAmount": "partnerValue", "ledgerAmount": "ledgerValue", "difference": "differenceValue"}
    # A line the ledger lacks differs by its whole amount: what it puts between the totals.
    assert {b["differenceValue"]["amount"] for b in imported["breaks"]} == {"-1.00", "5.00"}
    for found in imported["breaks"]:
        same_amounts(found, pairs)
    adjusted = (
        await kit.data(
            'mutation($id: ID!) { resolveBreak(breakId: $id, resolution: ADJUST, reason: "agreed") {'
            " resolution { adjustment adjustmentValue { amount currency } } } }",
            staff,
            id=next(b["id"] for b in imported["breaks"] if b["differenceValue"]["amount"] == "-1.00"),
        )
    )["resolveBreak"]["resolution"]
    assert adjusted == {"adjustment": "-1.00", "adjustmentValue": {"amount": "-1.00", "currency": "TWD"}}


RECORDS = "reference,amount,counterparty\nconversion:c1,98.00,wallet-pay\nconversion:c9,5.00,formosa-air\n"
IMPORT = """mutation($p: String!, $csv: String!) { importPartnerRecords(partnerId: "fresh-mart", period: $p, csv: $csv) {
  id lines matched missingInLedger unresolvedBreaks
  breaks { id kind reference line partnerAmount ledgerAmount resolution { reason } nextStep }
} }"""


async def test_a_partner_uploads_its_records_and_staff_resolve_and_sign_off(kit: ExchangeKit, last_month: str) -> None:
    await close(kit, last_month)
    partner = await kit.partner_token("fresh-mart")
    staff = await kit.staff_token(Role.SETTLEMENT)
    imported = (await kit.data(IMPORT, partner, p=last_month, csv=RECORDS))["importPartnerRecords"]
    assert (imported["lines"], imported["matched"], imported["missingInLedger"], imported["unresolvedBreaks"]) == (
        2,
        1,
        1,
        1,
    )
    [missing] = imported["breaks"]
    assert missing | {"id": None} == {
        "id": None,
        "kind": "MISSING_IN_LEDGER",
        "reference": "conversion:c9",
        "line": 3,
        "partnerAmount": "5.00",
        "ledgerAmount": None,
        "resolution": None,
        # What the partner's finance team reads beside it, as the break report's column says it.
        "nextStep": "The ledger has no item of this reference in this period: check the reference, and whether the "
        "item belongs to another period (a late item is in the first period still open); settlement staff will let "
        "the ledger stand or post an adjustment.",
    }

    sign_off = 'mutation($p: String!) { signOffPeriod(partnerId: "fresh-mart", period: $p, note: "ok") { status signedOffAt signedOffBy } }'
    early = (await kit.graphql(sign_off, staff, p=last_month)).json()
    assert early["errors"][0]["extensions"] == {"code": "UNRESOLVED_BREAKS", "unresolved": 1}

    resolve = """mutation($id: ID!) { resolveBreak(breakId: $id, resolution: ADJUST, reason: "confirmed with formosa-air",
      adjustment: {amount: "5.00"}) { resolution { resolution adjustment counterparty transactionId resolvedBy } nextStep } }"""
    refused = (await kit.graphql(resolve, partner, id=missing["id"])).json()
    assert errors_at(refused) == {("resolveBreak",): "FORBIDDEN"}
    resolved_break = (await kit.data(resolve, staff, id=missing["id"]))["resolveBreak"]
    assert resolved_break["nextStep"] == (
        f"Resolved by settlement staff with an adjustment, break:{missing['id']}, posted into the next "
        "open period: it is on that period's statement, and belongs in your records of that period."
    )
    resolved = resolved_break["resolution"]
    assert resolved | {"resolvedBy": None, "transactionId": None} == {
        "resolution": "ADJUST",
        "adjustment": "5.00",
        "counterparty": "formosa-air",
        "resolvedBy": None,
        "transactionId": None,
    }
    assert resolved["transactionId"] == f"adjustment:break:{missing['id']}" and resolved["resolvedBy"].startswith(
        "settlement-"
    )

    reopening = (await kit.graphql(IMPORT, partner, p=last_month, csv=RECORDS + "conversion:c7,1.00,\n")).json()
    assert reopening["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "csv"}
    signed = (await kit.data(sign_off, staff, p=last_month))["signOffPeriod"]
    assert (
        signed["status"] == "SIGNED_OFF" and signed["signedOffBy"].startswith("settlement-") and signed["signedOffAt"]
    )
    assert (await kit.data(sign_off, staff, p=last_month))["signOffPeriod"] == signed, "a retry: as it stands"
    assert (await kit.data(resolve, staff, id=missing["id"]))["resolveBreak"]["resolution"] == resolved, "a retry"
    accept = 'mutation($id: ID!) { resolveBreak(breakId: $id, resolution: ACCEPT_LEDGER, reason: "r") { id } }'
    assert errors_at((await kit.graphql(accept, staff, id=missing["id"])).json()) == {
        ("resolveBreak",): "PERIOD_CLOSED"
    }
    other_note = sign_off.replace('note: "ok"', 'note: "agreed"')
    for refused, token in ((other_note, staff), (sign_off, await kit.staff_token(Role.SETTLEMENT))):
        assert errors_at((await kit.graphql(refused, token, p=last_month)).json()) == {
            ("signOffPeriod",): "PERIOD_CLOSED"
        }
    # The same file again (a retry after a lost answer) is answered its reconciliation as it stands.
    again = (await kit.data(IMPORT, partner, p=last_month, csv=RECORDS))["importPartnerRecords"]
    assert again["id"] == imported["id"] and again["unresolvedBreaks"] == 0
    assert again["breaks"][0]["resolution"] == {"reason": "confirmed with formosa-air"}
    for other in (RECORDS + "conversion:c7,1.00,formosa-air\n", RECORDS + "conversion:c7,1.234,\n"):
        refused = (await kit.graphql(IMPORT, partner, p=last_month, csv=other)).json()
        assert errors_at(refused) == {("importPartnerRecords",): "PERIOD_CLOSED"}
    seen = (
        await kit.graphql(
            'query($p: String!) { reconciliation(partnerId: "fresh-mart", period: $p) { unresolvedBreaks breaks { resolution { reason resolvedBy } } } }',
            partner,
            p=last_month,
        )
    ).json()
    assert seen["data"]["reconciliation"]["unresolvedBreaks"] == 0
    assert seen["data"]["reconciliation"]["breaks"][0]["resolution"] == {
        "reason": "confirmed with formosa-air",
        "resolvedBy": None,
    }
    assert errors_at(seen) == {("reconciliation", "breaks", 0, "resolution", "resolvedBy"): "FORBIDDEN"}


async def test_a_malformed_upload_names_its_line_and_imports_nothing(kit: ExchangeKit, last_month: str) -> None:
    await close(kit, last_month)
    partner = await kit.partner_token("fresh-mart")
    body = (await kit.graphql(IMPORT, partner, p=last_month, csv=RECORDS + "conversion:c3,1.234,\n")).json()
    assert body["data"] == {"importPartnerRecords": None}
    assert body["errors"][0]["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "csv",
        "line": 4,
        "reason": "amount: '1.234' is not an amount in TWD: write an exact decimal such as -1234.5, with at most 2 decimals and 15 integer digits, a decimal point and no thousands separator; it has 3 decimals, more than the currency has (where a dot separates thousands it reads 1234), so it is not guessed",
    }
    nothing = (
        await kit.graphql(
            'query($p: String!) { reconciliation(partnerId: "fresh-mart", period: $p) { id } }', partner, p=last_month
        )
    ).json()
    assert nothing["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_closing_refuses_what_cannot_close_with_typed_errors(kit: ExchangeKit, last_month: str) -> None:
    staff = await kit.staff_token(Role.SETTLEMENT)
    bad = (await kit.graphql(CLOSE, staff, period="2026-13")).json()
    assert bad["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "period"}
    current = Ledger.for_settings(kit.settings, FrozenClock(datetime.now(UTC))).calendar.period_of(datetime.now(UTC))
    early = (await kit.graphql(CLOSE, staff, period=current)).json()
    assert (
        early["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT" and "is not over" in early["errors"][0]["message"]
    )
    statement = (await kit.graphql(STATEMENT, staff, partner="fresh-mart", period=last_month)).json()
    assert statement["errors"][0]["extensions"]["code"] == "PERIOD_NOT_CLOSED"
    read_only = await kit.staff_token(Role.SETTLEMENT, scope="settlement:read")
    assert errors_at((await kit.graphql(CLOSE, read_only, period=last_month)).json()) == {("closePeriod",): "FORBIDDEN"}


BULK = """mutation($p: String!, $selection: BreakSelectionInput!, $resolution: Resolution!) {
  resolveBreaks(partnerId: "fresh-mart", period: $p, selection: $selection, resolution: $resolution,
                reason: "agreed in the monthly call") {
    resolved unchanged reconciliation { unresolvedBreaks breaks { kind resolution { resolution reason } } }
} }"""


async def test_staff_resolve_a_selection_of_breaks_in_one_request(kit: ExchangeKit, last_month: str) -> None:
    await close(kit, last_month)
    partner = await kit.partner_token("fresh-mart")
    staff = await kit.staff_token(Role.SETTLEMENT)
    records = RECORDS + "conversion:c8,1.00,formosa-air\nconversion:c8,1.00,formosa-air\n"
    imported = (await kit.data(IMPORT, partner, p=last_month, csv=records))["importPartnerRecords"]
    assert imported["unresolvedBreaks"] == 3
    refused = (await kit.graphql(BULK, partner, p=last_month, selection={}, resolution="ACCEPT_LEDGER")).json()
    assert errors_at(refused) == {("resolveBreaks",): "FORBIDDEN"}
    bad = (await kit.graphql(BULK, staff, p=last_month, selection={"ids": ["x"]}, resolution="ACCEPT_LEDGER")).json()
    assert bad["errors"][0]["extensions"] | {"code": None} == {"code": None, "field": "selection.ids"}
    duplicates = {"kind": "DUPLICATE"}
    adjusted = (await kit.graphql(BULK, staff, p=last_month, selection=duplicates, resolution="ADJUST")).json()
    assert adjusted["errors"][0]["extensions"] | {"code": None} == {"code": None, "field": "selection"}
    accepted = (
        await kit.data(BULK, staff, p=last_month, selection={"counterparty": "formosa-air"}, resolution="ACCEPT_LEDGER")
    )["resolveBreaks"]
    assert (accepted["resolved"], accepted["unchanged"], accepted["reconciliation"]["unresolvedBreaks"]) == (3, 0, 0)
    assert {b["resolution"]["reason"] for b in accepted["reconciliation"]["breaks"]} == {"agreed in the monthly call"}
    ids = [b["id"] for b in imported["breaks"]]
    again = await kit.data(BULK, staff, p=last_month, selection={"ids": ids}, resolution="ACCEPT_LEDGER")
    assert (again["resolveBreaks"]["resolved"], again["resolveBreaks"]["unchanged"]) == (0, 3)


async def test_a_selection_resolved_before_the_sign_off_answers_its_repeat_and_refuses_anything_new(
    kit: ExchangeKit, last_month: str
) -> None:
    """As resolveBreak answers its repeat after the sign-off: a retry of resolveBreaks whose
    answer was lost, by ids or by filters, answers the resolutions recorded, nothing resolved
    now; another resolution, reason or selection would change a final period: PERIOD_CLOSED."""
    await close(kit, last_month)
    partner = await kit.partner_token("fresh-mart")
    staff = await kit.staff_token(Role.SETTLEMENT)
    records = RECORDS + "conversion:c8,1.00,formosa-air\nconversion:c8,1.00,formosa-air\n"
    imported = (await kit.data(IMPORT, partner, p=last_month, csv=records))["importPartnerRecords"]
    ids = [b["id"] for b in imported["breaks"]]
    by_filter = {"counterparty": "formosa-air"}
    first = (await kit.data(BULK, staff, p=last_month, selection=by_filter, resolution="ACCEPT_LEDGER"))[
        "resolveBreaks"
    ]
    assert (first["resolved"], first["unchanged"]) == (3, 0)
    sign_off = 'mutation($p: String!) { signOffPeriod(partnerId: "fresh-mart", period: $p) { status } }'
    assert (await kit.data(sign_off, staff, p=last_month))["signOffPeriod"] == {"status": "SIGNED_OFF"}

    again = await kit.data(BULK, staff, p=last_month, selection=by_filter, resolution="ACCEPT_LEDGER")
    assert again["resolveBreaks"] == first | {"resolved": 0}
    named = await kit.data(BULK, staff, p=last_month, selection={"ids": ids}, resolution="ACCEPT_LEDGER")
    assert named["resolveBreaks"] == first | {"resolved": 0, "unchanged": 3}

    other_reason = BULK.replace("agreed in the monthly call", "agreed later")
    for query, selection, resolution in (
        (BULK, {"ids": ids}, "ADJUST"),
        (BULK, by_filter, "ADJUST"),
        (other_reason, {"ids": ids[:1]}, "ACCEPT_LEDGER"),
        (other_reason, by_filter, "ACCEPT_LEDGER"),
        (BULK, {"counterparty": "wallet-pay"}, "ACCEPT_LEDGER"),
    ):
        refused = (await kit.graphql(query, staff, p=last_month, selection=selection, resolution=resolution)).json()
        assert errors_at(refused) == {("resolveBreaks",): "PERIOD_CLOSED"}, (selection, resolution)


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


LINE_PAGE = """query($w: ID!, $p: String!, $first: Int!, $after: String) { statement(partnerId: $w, period: $p) {
  linePage(first: $first, after: $after) { items { transactionId reference kind category effectiveAt effectivePeriod
    reverses reversesPeriod counterparty value { amount } } nextCursor } } }"""


async def walked_lines(kit: ExchangeKit, token: str, partner: str, period: str, first: int) -> list[dict[str, Any]]:
    """Every line of the statement, ``first`` at a time by ``linePage``'s cursors."""
    lines: list[dict[str, Any]] = []
    after = None
    while True:
        page = (await kit.data(LINE_PAGE, token, w=partner, p=period, first=first, after=after))["statement"]
        lines += page["linePage"]["items"]
        if (after := page["linePage"]["nextCursor"]) is None:
            return lines
        assert len(page["linePage"]["items"]) == first


async def test_a_statements_fields_read_as_its_json_and_jws_figure_by_figure(kit: ExchangeKit, last_month: str) -> None:
    """Its lines too, walked a page at a time: the signed document's lines, in its order."""
    await close(kit, last_month)
    staff = await kit.staff_token(Role.SETTLEMENT)
    statement = (
        await kit.data(
            'query($p: String!) { statement(partnerId: "wallet-pay", period: $p) {'
            " startsAt endsAt timeZone closedAt opening { amount currency } grossPayable { amount currency }"
            " grossReceivable { amount currency } netAmount { amount currency } closing { amount currency }"
            " counterparties { counterparty grossPayable { amount } grossReceivable { amount } netAmount { amount } }"
            " coalitionLiability { programId points pointValue liability { amount currency } } json jws } }",
            staff,
            p=last_month,
        )
    )["statement"]
    statement["lines"] = await walked_lines(kit, staff, "wallet-pay", last_month, first=2)
    document = json.loads(statement["json"])
    assert len(document["lines"]) > 2, "more than one page"
    period = document["period"]
    assert [instant(statement[name]) for name in ("startsAt", "endsAt", "closedAt")] == [
        instant(period[name]) for name in ("start", "end", "closedAt")
    ]
    assert statement["timeZone"] == period["timeZone"] == kit.settings.settlement_timezone
    figures = {"opening": "openingPosition", "closing": "closingPosition"}
    figures |= {"grossPayable": "payable", "grossReceivable": "receivable", "netAmount": "net"}
    for field, key in figures.items():
        expected = document["totals"][key] if key in document["totals"] else document[key]
        assert statement[field] == {"amount": expected, "currency": document["currency"]}, field
    assert [
        {"counterparty": c["counterparty"], **{key: c[field]["amount"] for field, key in figures.items() if field in c}}
        for c in statement["counterparties"]
    ] == document["counterparties"]
    names = {"transactionId": "transaction", "value": "amount"}

    def as_in_json(line: dict[str, Any]) -> dict[str, Any]:
        reversed_ = line.pop("reverses"), line.pop("reversesPeriod")
        reverses = None if reversed_[0] is None else {"transaction": reversed_[0], "period": reversed_[1]}
        return {
            names.get(field, field): value["amount"] if field == "value" else value for field, value in line.items()
        } | {
            "effectiveAt": instant(line["effectiveAt"]),
            "reverses": reverses,
        }

    assert [as_in_json(line) for line in statement["lines"]] == [
        line | {"effectiveAt": instant(line["effectiveAt"])} for line in document["lines"]
    ]
    assert {line["effectivePeriod"] for line in statement["lines"]} == {last_month}
    liability = statement["coalitionLiability"]
    assert {
        "program": liability["programId"],
        "points": liability["points"],
        "pointValue": liability["pointValue"],
        "amount": liability["liability"]["amount"],
    } == document["coalitionLiability"] and liability["liability"]["currency"] == document["currency"]
    assert jws.extract_compact(statement["jws"].encode()).payload.decode() == statement["json"]


async def test_every_participants_position_and_issued_statement_cross_foot_over_graphql(
    kit: ExchangeKit, last_month: str
) -> None:
    """What staff read of the period (its positions) and every participant's issued statement
    (its fields and its JSON) agree on every total, each naming the settlement currency."""
    money = "opening { amount currency } grossPayable { amount currency } grossReceivable { amount currency }"
    money += " netAmount { amount currency } closing { amount currency }"
    await close(kit, last_month)
    staff = await kit.staff_token(Role.SETTLEMENT)
    period = (
        await kit.data(
            f"query($p: String!) {{ settlementPeriod(period: $p) {{ statementsNotIssued positions {{ partnerId {money} }} }} }}",
            staff,
            p=last_month,
        )
    )["settlementPeriod"]
    assert period["statementsNotIssued"] == [] and len(period["positions"]) == 4
    assert sum(Decimal(position["netAmount"]["amount"]) for position in period["positions"]) == 0
    for position in period["positions"]:
        who = position.pop("partnerId")
        statement = (
            await kit.data(
                f"query($w: ID!, $p: String!) {{ statement(partnerId: $w, period: $p) {{ {money} lineCount json }} }}",
                staff,
                w=who,
                p=last_month,
            )
        )["statement"]
        document = json.loads(statement.pop("json"))
        assert document["version"] == 2 and len(document["lines"]) == statement.pop("lineCount"), who
        assert statement == position, who
        totals = document["totals"]
        in_json = {
            "opening": document["openingPosition"],
            "grossPayable": totals["payable"],
            "grossReceivable": totals["receivable"],
            "netAmount": totals["net"],
            "closing": document["closingPosition"],
        }
        assert statement == {field: {"amount": amount, "currency": "TWD"} for field, amount in in_json.items()}, who
        assert document["currency"] == "TWD"


async def test_statement_lines_and_breaks_take_a_first_from_1_to_1000_and_refuse_any_other(
    kit: ExchangeKit, last_month: str
) -> None:
    """As every other page: a larger number was cut to 1,000 without a word (a client asking for
    5,000 took the first 1,000 for all of them), 0 answered none."""
    await close(kit, last_month)
    token = await kit.partner_token("fresh-mart")
    records = "reference,amount\nconversion:c1,98.01\nconversion:c1,98.01\n"
    imported = """mutation($p: String!, $csv: String!) {
      importPartnerRecords(partnerId: "fresh-mart", period: $p, csv: $csv) { id } }"""
    await kit.data(imported, token, p=last_month, csv=records)
    read = """query($p: String!, $first: Int!) {
      statement(partnerId: "fresh-mart", period: $p) { lines(first: $first) { reference } }
      paged: statement(partnerId: "fresh-mart", period: $p) { linePage(first: $first) { items { reference } } }
      reconciliation(partnerId: "fresh-mart", period: $p) { breaks(first: $first) { kind } } }"""
    most = await kit.data(read, token, p=last_month, first=1000)
    assert len(most["statement"]["lines"]) == 1 and len(most["reconciliation"]["breaks"]) == 2
    assert most["paged"]["linePage"]["items"] == most["statement"]["lines"]
    for first in (1001, 0):
        body = (await kit.graphql(read, token, p=last_month, first=first)).json()
        assert body["data"] == {"statement": None, "paged": None, "reconciliation": None}
        assert sorted(
            (tuple(error["path"]), error["extensions"]["code"], error["extensions"]["field"])
            for error in body["errors"]
        ) == [
            (("paged", "linePage"), "BAD_USER_INPUT", "first"),
            (("reconciliation", "breaks"), "BAD_USER_INPUT", "first"),
            (("statement", "lines"), "BAD_USER_INPUT", "first"),
        ]


async def test_a_statements_line_cursor_is_refused_by_another_statement_and_the_offset_list_reads_the_same_lines(
    kit: ExchangeKit, last_month: str
) -> None:
    await close(kit, last_month)
    staff = await kit.staff_token(Role.SETTLEMENT)
    walked = await walked_lines(kit, staff, "wallet-pay", last_month, first=1)
    offsets = """query($p: String!, $offset: Int!) {
      statement(partnerId: "wallet-pay", period: $p) { lineCount lines(first: 2, offset: $offset) { transactionId } } }"""
    for offset in range(len(walked)):
        statement = (await kit.data(offsets, staff, p=last_month, offset=offset))["statement"]
        assert statement["lineCount"] == len(walked)
        assert statement["lines"] == [{"transactionId": line["transactionId"]} for line in walked[offset : offset + 2]]
    cursor = (await kit.data(LINE_PAGE, staff, w="wallet-pay", p=last_month, first=1, after=None))["statement"]
    theirs = cursor["linePage"]["nextCursor"]
    body = (await kit.graphql(LINE_PAGE, staff, w="fresh-mart", p=last_month, first=1, after=theirs)).json()
    [error] = body["errors"]
    assert (error["extensions"]["code"], error["extensions"]["field"]) == ("BAD_USER_INPUT", "after")
