"""An issued statement never changes: closing a period stores each participant's signed document
once the period is CLOSED, and every download serves those bytes and that signature, whatever is
posted, rotated or changed in the code afterwards. A statement not issued yet (a closing cut
while issuing, a period closed before statements were stored) is issued at its first download,
once."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import delete, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import col, select

from exchange.ledger.periods import PeriodStatus
from exchange.services.settlement import SettlementService
from exchange.settlement import issued
from exchange.settlement.issued import sign
from exchange.settlement.keys import PUBLICATION_LEAD
from exchange.settlement.models import IssuedStatement, SettlementPosition
from exchange.settlement.participants import EXCHANGE
from exchange.settlement.statements import StatementLine, csv_pieces, encode_statement
from exchange.testing.clock import FrozenClock
from tests.integration.settlement.conftest import NOVEMBER, close, conversion, post, redemption, served


@pytest.fixture
async def november(settlement: SettlementService, clock: FrozenClock) -> SettlementService:
    await post(
        settlement,
        [
            conversion("c1", "fresh-mart", "wallet-pay", 10_000, fee=200),
            redemption("r1", "wallet-pay", "fresh-mart", 2_500, fee=25),
        ],
    )
    await close(settlement, clock, "2026-11")
    return settlement


async def issued_rows(service: SettlementService, period: str) -> list[IssuedStatement]:
    async with service.db.transaction() as session:
        found = await session.exec(
            select(IssuedStatement).where(IssuedStatement.period == period).order_by(col(IssuedStatement.participant))
        )
        return list(found.all())


async def verify(service: SettlementService, signed: str) -> bytes:
    """The payload of ``signed``, verified with what /.well-known/statement-keys.json serves now."""
    published = KeySet.import_key_set(await service.keys.jwks())
    return jws.deserialize_compact(signed, published, algorithms=["RS256"]).payload


async def forget_issued(service: SettlementService, period: str) -> None:
    """As for a period closed before statements were stored: no stored statement."""
    async with service.db.transaction() as session:
        await session.exec(delete(IssuedStatement).where(col(IssuedStatement.period) == period))  # type: ignore[call-overload]


async def walked(service: SettlementService, participant: str, period: str) -> list[StatementLine]:
    """Every line of the issued statement, two at a time by the pages' cursors."""
    lines: list[StatementLine] = []
    after = None
    while True:
        page = await service.statement_lines(participant, period, first=2, after=after)
        lines += page.items
        if (after := page.next_cursor) is None:
            return lines


async def at_once(lines: list[dict[str, Any]]) -> AsyncIterator[list[dict[str, Any]]]:
    """A document's lines as one page, as the CSV was rendered from the whole document."""
    yield lines


async def test_a_statements_figures_and_pages_of_lines_are_its_documents_read_whole(
    november: SettlementService,
) -> None:
    """What a page shows (figures read from the document but its lines, and its lines a page at
    a time) is what the whole document holds, for each participant."""
    for row in await issued_rows(november, "2026-11"):
        figures = await november.statement_figures(row.participant, "2026-11")
        lines = await walked(november, row.participant, "2026-11")
        assert replace(figures, lines=lines).document() == json.loads(row.document), row.participant
        assert (figures.version, figures.key_id, figures.issued_at, figures.resigned_at) == (
            row.version,
            row.key_id,
            row.issued_at,
            row.resigned_at,
        )
        assert await november.statement_line_count(row.participant, "2026-11") == len(lines)


async def test_a_statements_csv_streamed_from_its_lines_is_byte_for_byte_its_stored_document_rendered_whole(
    settlement: SettlementService, clock: FrozenClock
) -> None:
    """The CSV download reads the statement's head and its lines' rows a page at a time (two
    here), never the document; the database's copies of them (the trigger's JSON on SQLite and
    PostgreSQL) give the very CSV the stored document rendered at once gives, whatever the text
    holds."""
    awkward = ['comma, "quotes"', "台灣 🎉 é\u2028", "new\r\nline\ttab", "=SUM(A1)", "-1"]
    await post(
        settlement,
        [
            replace(redemption(f"r{n}", "wallet-pay", "fresh-mart", 1_000 + n), reference=text)
            for n, text in enumerate(awkward)
        ],
    )
    await close(settlement, clock, "2026-11")
    amounts: list[str] = []
    for participant in ("wallet-pay", "fresh-mart"):
        document = json.loads((await settlement.issued_statement(participant, "2026-11")).document)
        streamed = "".join([piece async for piece in await settlement.statement_csv(participant, "2026-11", page=2)])
        rendered_whole = "".join([piece async for piece in csv_pieces(document, at_once(document["lines"]))])
        assert streamed == rendered_whole, participant
        rows = list(csv.DictReader(io.StringIO(streamed, newline="")))
        amounts += [row["amount"] for row in rows if row["record"] == "line"]
        assert {*awkward[:3], "'=SUM(A1)", "-1"} <= {row["reference"] for row in rows}, participant
    assert len(amounts) == 2 * len(awkward)
    assert sorted(amounts)[:2] == ["-10.00", "-10.01"], "a redemption is owed by one side: negative there"


async def test_a_statement_with_awkward_text_cut_into_pieces_is_stored_as_encoded_and_signed(
    settlement: SettlementService, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL takes the document and its JWS a piece at a time (COPY, as CSV): quotes,
    backslashes, line ends and characters of every width arrive exactly as written, pieces of
    7 × 3 bytes cutting through all of them."""
    monkeypatch.setattr(issued, "PIECE", 21)
    awkward = 'a "quoted" \\ back\\slash,\nnew line\r\n台灣 🎉 é'
    await post(
        settlement,
        [
            replace(redemption(f"r{n}", "wallet-pay", "fresh-mart", 1_000 + n), reference=f"{awkward * n}{n}")
            for n in range(5)
        ],
    )
    await close(settlement, clock, "2026-11")
    row = await served(settlement, "wallet-pay", "2026-11")
    async with settlement.db.transaction() as session:
        encoded = await encode_statement(
            session,
            issuer=settlement.issuer,
            calendar=settlement.calendar,
            currency=row.currency,
            participant="wallet-pay",
            period="2026-11",
        )
    assert row.json().encode() == encoded
    assert [line.reference for line in row.lines] == [f"{awkward * n}{n}" for n in range(5)]
    assert await walked(settlement, "wallet-pay", "2026-11") == list(row.lines), "as stored, a page at a time"
    assert row.jws == sign(encoded, await settlement.signing_key())
    assert await verify(settlement, row.jws) == encoded


async def test_closing_issues_every_participants_statement_and_downloads_serve_it(
    november: SettlementService, clock: FrozenClock
) -> None:
    rows = await issued_rows(november, "2026-11")
    assert [row.participant for row in rows] == [EXCHANGE, "fresh-mart", "wallet-pay"]
    for row in rows:
        statement = await served(november, row.participant, "2026-11")
        assert (statement.json(), statement.jws, statement.key_id, row.version) == (
            row.document,
            row.jws,
            row.key_id,
            2,
        )
        assert await verify(november, statement.jws) == row.document.encode()
    period = await november.period("2026-11")
    assert period.row is not None and {row.issued_at for row in rows} == {period.row.closed_at}


async def test_two_downloads_are_byte_identical_whatever_happens_in_between(
    november: SettlementService, clock: FrozenClock
) -> None:
    first = await served(november, "fresh-mart", "2026-11")
    kept = (first.json(), first.csv(), first.jws)
    # A rotation that has taken effect, and a late line for November (posted into December).
    await november.rotate_key()
    clock.advance(seconds=PUBLICATION_LEAD.total_seconds())
    await post(november, [conversion("late", "fresh-mart", "wallet-pay", 999, at=NOVEMBER)])
    again = await served(november, "fresh-mart", "2026-11")
    assert (again.json(), again.csv(), again.jws) == kept
    assert await verify(november, again.jws) == kept[0].encode()
    # The late line is December's: its statement shows it, naming the period it happened in.
    await close(november, clock, "2026-12")
    december = json.loads((await served(november, "fresh-mart", "2026-12")).json())
    assert [(line["reference"], line["effectivePeriod"]) for line in december["lines"]] == [
        ("conversion:late", "2026-11")
    ]


def as_version_1(document: dict[str, Any]) -> str:
    """The document as the code of version 1 wrote it: its lines named neither their effective
    period nor what they reverse."""
    old = document | {
        "version": 1,
        "lines": [
            {name: value for name, value in line.items() if name not in {"effectivePeriod", "reverses"}}
            for line in document["lines"]
        ],
    }
    return json.dumps(old, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


async def test_a_stored_version_1_statement_is_served_as_stored_and_verifies(
    november: SettlementService, clock: FrozenClock
) -> None:
    current = await served(november, "fresh-mart", "2026-11")
    old = as_version_1(json.loads(current.json()))
    key = await november.signing_key()
    signed = sign(old.encode(), key)
    await forget_issued(november, "2026-11")
    async with november.db.transaction() as session:
        session.add(
            IssuedStatement(
                period="2026-11",
                participant="fresh-mart",
                version=1,
                document=old,
                key_id=str(key.kid),
                jws=signed,
                issued_at=current.closed_at,
            )
        )
    again = await served(november, "fresh-mart", "2026-11")
    assert (again.json(), again.jws, again.row.version) == (old, signed, 1)
    assert await verify(november, again.jws) == old.encode()
    assert (again.opening, again.net, again.closing, len(again.lines)) == (
        current.opening,
        current.net,
        current.closing,
        len(current.lines),
    )
    lines = [row for row in csv.DictReader(io.StringIO(again.csv(), newline="")) if row["record"] == "line"]
    assert [(line["reference"], line["amount"], line["effective_period"]) for line in lines] == [
        ("conversion:c1", "-98.00", ""),
        ("conversion:c1", "-2.00", ""),
        ("redemption:r1", "24.75", ""),
    ]


async def test_a_period_closed_before_statements_were_stored_is_issued_at_its_first_download_once(
    november: SettlementService, clock: FrozenClock
) -> None:
    await forget_issued(november, "2026-11")
    clock.advance(seconds=3600)
    first = await served(november, "wallet-pay", "2026-11")
    (row,) = await issued_rows(november, "2026-11")
    assert (row.participant, row.issued_at, row.document) == ("wallet-pay", clock.now(), first.json())
    await november.rotate_key()
    clock.advance(seconds=3600)  # past the new key's lead: it signs now
    again = await served(november, "wallet-pay", "2026-11")
    assert (again.json(), again.jws) == (first.json(), first.jws)
    assert await verify(november, again.jws) == first.json().encode()
    assert [(kept.participant, kept.jws, kept.issued_at) for kept in await issued_rows(november, "2026-11")] == [
        (row.participant, row.jws, row.issued_at)
    ]


async def test_a_closing_cut_while_issuing_and_taken_again_issues_each_statement_once(
    settlement: SettlementService, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await post(settlement, [conversion("c1", "fresh-mart", "wallet-pay", 10_000, fee=200)])
    issue = issued.issue
    issuing: list[str] = []

    async def cut_at_the_second(*arguments: Any) -> None:
        issuing.append(arguments[2])
        if len(issuing) == 2:
            raise RuntimeError("the gateway died while issuing the statements")
        await issue(*arguments)

    with monkeypatch.context() as patched:
        patched.setattr(issued, "issue", cut_at_the_second)
        with pytest.raises(RuntimeError, match="died while issuing"):
            await close(settlement, clock, "2026-11")
    cut = await settlement.period("2026-11")
    assert cut.status == PeriodStatus.CLOSED  # the closing's own work held
    [first] = await issued_rows(settlement, "2026-11")
    assert first.participant == issuing[0]
    # What staff read (the console's period page, GraphQL): which statements are not issued yet.
    everyone = [position.participant for position in cut.positions]
    assert list(cut.not_issued) == [who for who in everyone if who != first.participant]
    await served(settlement, cut.not_issued[0], "2026-11")  # a first download issues it
    assert list((await settlement.period("2026-11")).not_issued) == list(cut.not_issued[1:])

    assert list((await close(settlement, clock, "2026-11")).not_issued) == []
    issued_now = await issued_rows(settlement, "2026-11")
    async with settlement.db.transaction() as session:
        participants = (
            await session.exec(select(SettlementPosition.participant).where(SettlementPosition.period == "2026-11"))
        ).all()
    assert sorted(row.participant for row in issued_now) == sorted(participants)
    assert [(row.jws, row.issued_at) for row in issued_now if row.participant == first.participant] == [
        (first.jws, first.issued_at)
    ]

    # Taken again once closed (a job whose runner went silent), after a rotation that has taken
    # effect (another key signs): nothing changes.
    await settlement.rotate_key()
    clock.advance(seconds=PUBLICATION_LEAD.total_seconds())
    await settlement.close("2026-11", by="staff")
    assert [(row.participant, row.jws, row.issued_at) for row in await issued_rows(settlement, "2026-11")] == [
        (row.participant, row.jws, row.issued_at) for row in issued_now
    ]


@pytest.mark.parametrize(
    "change",
    ["document = '{}'", "version = 9", "issued_at = resigned_at", "period = '2026-10'", "participant = 'x'"],
)
async def test_the_database_refuses_to_change_what_was_issued(november: SettlementService, change: str) -> None:
    with pytest.raises((IntegrityError, DBAPIError), match="an issued statement never changes"):
        async with november.db.transaction() as session:
            await session.exec(text(f"UPDATE issued_statement SET {change}"))  # type: ignore[call-overload]


async def test_a_compromised_key_is_withdrawn_and_the_statements_it_signed_are_signed_again(
    november: SettlementService, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement forged with the compromised key must not verify with what the exchange
    publishes; the statements it signed verify again once fetched again, their documents the
    same bytes. (Two a batch here: every batch is signed, the last one short.)"""
    monkeypatch.setattr(issued, "RESIGN_BATCH", 2)
    before = await issued_rows(november, "2026-11")
    assert len(before) > 2 and len(before) % 2 == 1
    compromised = await november.keys.signing_key()
    assert {row.key_id for row in before} == {compromised.kid}
    clock.advance(seconds=60)
    rotation = await november.rotate_key(compromised=True)
    assert (list(rotation.withdrawn), rotation.resigned) == ([compromised.kid], len(before))
    assert [key.kid for key in rotation.published] == [rotation.new.kid]

    after = await issued_rows(november, "2026-11")
    assert [(row.participant, row.version, row.document, row.issued_at) for row in after] == [
        (row.participant, row.version, row.document, row.issued_at) for row in before
    ]
    assert {(row.key_id, row.resigned_at) for row in after} == {(rotation.new.kid, clock.now())}
    for row, old in zip(after, before, strict=True):
        statement = await served(november, row.participant, "2026-11")
        assert (statement.json(), statement.jws) == (old.document, row.jws)
        assert await verify(november, statement.jws) == old.document.encode()
        with pytest.raises(JoseError):  # what the compromised key signed, the real or a forgery
            await verify(november, old.jws)
        with pytest.raises(JoseError):
            await verify(november, sign(old.document.replace("fresh-mart", "forged").encode(), compromised))

    # Closing again, or an ordinary rotation later, signs nothing again.
    again = await november.rotate_key()
    assert (list(again.withdrawn), again.resigned) == ([], 0)
    assert [row.jws for row in await issued_rows(november, "2026-11")] == [row.jws for row in after]


@pytest.mark.postgres_only
async def test_archiving_a_period_issues_its_statements_not_issued_yet_from_its_legs_first(
    pg_settlement: SettlementService, clock: FrozenClock
) -> None:
    """A period whose closing was cut while issuing (or closed before statements were stored) and
    that is then signed off and archived: its statements come from its legs, which archiving
    takes out of the ledger, so archiving issues them first rather than leave a first download
    to sign a statement without its lines."""
    await post(
        pg_settlement,
        [
            conversion("c1", "fresh-mart", "wallet-pay", 10_000, fee=200),
            redemption("r1", "wallet-pay", "fresh-mart", 2_500, fee=25),
        ],
    )
    await close(pg_settlement, clock, "2026-11")
    kept = {row.participant: json.loads(row.document) for row in await issued_rows(pg_settlement, "2026-11")}
    await forget_issued(pg_settlement, "2026-11")
    async with pg_settlement.db.transaction() as session:
        await session.exec(text("UPDATE settlement_position SET signed_off_at = now()"))  # type: ignore[call-overload]
    await pg_settlement.archive("2026-11", export=None)

    assert sorted(row.participant for row in await issued_rows(pg_settlement, "2026-11")) == sorted(kept)
    for participant, document in kept.items():
        again = (await served(pg_settlement, participant, "2026-11")).document()
        assert (again["lines"], again["totals"]) == (document["lines"], document["totals"]), participant
        assert again["lines"], participant


async def test_a_partners_file_reconciles_and_signs_off_before_its_statement_is_issued(
    november: SettlementService,
) -> None:
    """Reconciliation reads the ledger, not the statement: a closing cut before the partner's
    statement was issued does not hold up its finance team."""
    await forget_issued(november, "2026-11")
    records = "reference,amount,counterparty\nconversion:c1,-100.00,wallet-pay\nredemption:r1,24.75,wallet-pay\n"
    view = await november.import_records("fresh-mart", "2026-11", io.BytesIO(records.encode()), by="fresh-mart")
    assert (view.reconciliation.matched, view.unresolved) == (2, 0)
    assert (await november.sign_off("fresh-mart", "2026-11", by="staff", note=None)).position.signed_off_at
    assert "fresh-mart" in (await november.period("2026-11")).not_issued  # still to be issued: nothing issued it
    statement = await served(november, "fresh-mart", "2026-11")
    assert statement.net == -10_000 + 2_475
