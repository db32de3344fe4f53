"""Issued statements: each participant's statement of a closed period, signed once and kept.

A partner's finance team keeps the statement it downloaded when the period closed and may
download it again months later; both must be the same document with the same signature. So
once a period is CLOSED, closing it issues every participant's statement, each in a unit of
work of its own (:func:`issue`): it builds the canonical JSON document
(:mod:`exchange.settlement.statements`), signs exactly those bytes with the active statement key
and stores the bytes, the document's version, the key's id, the JWS and the moment
(``issued_statement``); in the same unit of work the database writes the document's lines,
one row each, and its head (the document but its lines), taken from the stored document by a
trigger (``issued_statement_line`` and ``issued_statement.head``, migration 0052: a page reads its
figures and its lines there, not out of the whole document, and they are the document's
exactly, whichever process stored it). A statement is issued once: one stored already is left as it is, so a
closing cut midway and taken again, or a download racing it, issues nothing twice.

Every download (GraphQL, the consoles, the CLI, through ``SettlementService``) serves the stored
document: the JSON is the stored bytes, the JWS the stored signature (verified with the published
statement keys, which keep a retired key for the retention period; a key withdrawn as compromised
leaves them at once, and the statements it signed are signed again by the key that replaced it:
:func:`resign`, the only change the database lets an issued statement have), and the CSV is
rendered from the stored document alone, as its head and its lines' rows (streamed a page at a
time: :func:`stored_head`, :func:`line_documents`), so a document issued as version 1 stays
version 1. What the consoles and GraphQL show of a statement is read from the same document.

A statement not issued yet (a closing cut before it was, or a period closed before statements
were stored) is issued by whichever comes first: closing the period again, the recovery pass
that finishes unfinished closes (``exchange recover``, the gateways' ``unfinished-closes`` job,
which take such a CLOSED period for unfinished as they take one left CLOSING), or its first
download; once, from the ledger as the code builds it then (a migration cannot sign: only the
gateway holds the statement key's secret). The document is built from the closed period's
stored rows alone and RS256 signs deterministically, so a statement issued so is byte for byte,
signature included, the one an uninterrupted close would have issued with the same key. Late lines never change an issued statement: they are posted into the
next open period and appear on its statement, naming the period they happened in.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import AsyncIterator, Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from joserfc.jwk import RSAKey
from sqlalchemy import bindparam, column, func, literal, select, table, text, update
from sqlmodel import col
from sqlmodel import select as select_rows
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from exchange.coalition.models import CoalitionLiability
from exchange.db.bulk import copy_csv
from exchange.db.dialects import insert, insert_once
from exchange.db.paging import Keyset, Page, read_page
from exchange.keyring.crypto import ALGORITHM
from exchange.ledger.periods import SettlementCalendar
from exchange.money import Currency
from exchange.settlement.models import IssuedStatement, IssuedStatementLine
from exchange.settlement.statements import (
    DOCUMENT_VERSION,
    JWS_TYPE,
    CounterpartyTotals,
    Reversed,
    Statement,
    StatementLine,
    encode_statement,
)


@dataclass(frozen=True)
class Signer:
    """What issuing a statement needs besides the ledger: who issues it, the settlement calendar
    and the statement key that signs now."""

    issuer: str
    calendar: SettlementCalendar
    currency: Currency
    key: RSAKey


#: How many of a document's bytes are base64-encoded, or streamed into the database, at a time
#: (a multiple of 3, so that only the last piece's base64 has padding).
PIECE = 3 << 16


def sign(document: bytes, key: RSAKey) -> str:
    """The JWS (RS256, compact serialization) over the document's UTF-8 bytes."""
    token = io.BytesIO()
    token.writelines(jws_pieces(document, key))
    return token.getvalue().decode("ascii")


def jws_pieces(document: bytes, key: RSAKey) -> Iterator[bytes]:
    """:func:`sign`'s JWS a piece at a time: byte for byte what joserfc's
    ``jws.serialize_compact`` makes of the document, which holds the payload's base64 twice
    over, then the signing input, then the token, then its text, each a third bigger than the
    document (a statement of a million lines is hundreds of megabytes). Here the payload's
    base64 is made twice a piece at a time, once to sign and once to hand out, and is never
    whole."""
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": JWS_TYPE, "cty": "json"}
    segment = _base64url(json.dumps(header, separators=(",", ":")).encode()) + b"."
    signing_input = hashlib.sha256(segment)
    for piece in _payload(document):
        signing_input.update(piece)
    signature = key.get_op_key("sign").sign(signing_input.digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    yield segment
    yield from _payload(document)
    yield b"." + _base64url(signature)


def _pieces(document: bytes) -> Iterator[bytes]:
    """The document in pieces of :data:`PIECE` bytes (a character may be cut between two)."""
    view = memoryview(document)
    for start in range(0, len(view), PIECE):
        yield view[start : start + PIECE].tobytes()


def _payload(document: bytes) -> Iterator[bytes]:
    """The JWS's payload segment, a piece at a time."""
    return map(_base64url, _pieces(document))


def _base64url(data: bytes) -> bytes:
    """Base64url without padding (RFC 7515 §2), as joserfc writes a JWS's segments."""
    return base64.urlsafe_b64encode(data).rstrip(b"=")


async def issue(session: AsyncSession, signer: Signer, participant: str, period: str, now: datetime) -> bool:
    """Build, sign and store the participant's statement of the closed ``period``, unless one is
    stored already (which then stays as it is); whether this call stored it."""
    if await is_stored(session, participant, period):
        return False
    document = await encode_statement(
        session,
        issuer=signer.issuer,
        calendar=signer.calendar,
        currency=signer.currency,
        participant=participant,
        period=period,
    )
    row: dict[str, Any] = {
        "period": period,
        "participant": participant,
        "version": DOCUMENT_VERSION,
        "key_id": str(signer.key.kid),
        "issued_at": now,
    }
    if session.get_bind().dialect.name == "postgresql":
        return await _copy_in(session, row, document, signer.key)
    return await insert_once(
        session, IssuedStatement(**row, document=document.decode(), jws=sign(document, signer.key))
    )


_ISSUED = IssuedStatement.__table__  # type: ignore[attr-defined]
#: The temporary table PostgreSQL receives a statement's document and JWS in (:func:`_copy_in`).
_STAGED = table("issuing_statement", column("document"), column("jws"))


async def _copy_in(session: AsyncSession, row: dict[str, Any], document: bytes, key: RSAKey) -> bool:
    """Insert the issued statement ``row`` (its columns but the document and JWS) with
    ``document`` and its JWS, as :func:`~exchange.db.dialects.insert_once` would (a row stored
    meanwhile stays as it is; whether it was inserted), the two streamed into PostgreSQL a piece
    at a time by COPY.

    As parameters of one INSERT, each would be whole in memory three times more (the text, the
    driver's encoding of it, libpq's message), the JWS a third bigger than the document.
    SQLite runs in process: it takes them as parameters."""
    await session.exec(
        text(f"CREATE TEMPORARY TABLE {_STAGED.name} (document text NOT NULL, jws text NOT NULL) ON COMMIT DROP")
    )  # type: ignore[call-overload]
    await copy_csv(session, _STAGED.name, ("document", "jws"), _csv_record(document, key))
    inserted = await session.exec(
        insert(session, _ISSUED)
        .from_select(
            [*row, "document", "jws"],
            select(
                *(literal(value, _ISSUED.c[name].type) for name, value in row.items()),
                _STAGED.c.document,
                _STAGED.c.jws,
            ),
        )
        .on_conflict_do_nothing(index_elements=["period", "participant"])
        .returning(_ISSUED.c.period)
    )
    stored = inserted.first() is not None
    await session.exec(text(f"DROP TABLE {_STAGED.name}"))  # type: ignore[call-overload]
    return stored


async def _csv_record(document: bytes, key: RSAKey) -> AsyncIterator[bytes]:
    """The CSV record of ``document`` (quoted, its quotes doubled) and its JWS (base64url and
    dots, which need no quoting), a piece at a time."""
    yield b'"'
    for piece in _pieces(document):
        yield piece.replace(b'"', b'""')
    yield b'",'
    for piece in jws_pieces(document, key):
        yield piece
    yield b"\n"


#: How many statements' keys :func:`resign` reads at a time; it reads and signs their documents
#: one by one.
RESIGN_BATCH = 200

_RESIGN = (
    update(_ISSUED)
    .where(_ISSUED.c.period == bindparam("row_period"), _ISSUED.c.participant == bindparam("row_participant"))
    .values(key_id=bindparam("new_key_id"), jws=bindparam("new_jws"), resigned_at=bindparam("new_resigned_at"))
)


async def resign(session: AsyncSession, withdrawn: Collection[str], key: RSAKey, now: datetime) -> int:
    """Sign again with ``key`` every issued statement that a key in ``withdrawn`` signed, its
    document left byte for byte as it was (the database refuses any other change); how many.

    The statements' keys a batch at a time (each one signed leaves the set the next read selects
    from, so a decade of statements is never listed at once), their documents one at a time: a
    busy month's statement is tens of megabytes, and a batch of them would be gigabytes."""
    resigned = 0
    while True:
        batch = (
            await session.exec(
                select_rows(IssuedStatement.period, IssuedStatement.participant)
                .where(col(IssuedStatement.key_id).in_(withdrawn))
                .order_by(col(IssuedStatement.period), col(IssuedStatement.participant))
                .limit(RESIGN_BATCH)
            )
        ).all()
        if not batch:
            return resigned
        for period, participant in batch:
            document = (
                await session.exec(
                    select_rows(IssuedStatement.document).where(
                        IssuedStatement.period == period, IssuedStatement.participant == participant
                    )
                )
            ).one()
            await session.exec(
                _RESIGN,
                params={
                    "row_period": period,
                    "row_participant": participant,
                    "new_key_id": str(key.kid),
                    "new_jws": sign(document.encode(), key),
                    "new_resigned_at": now,
                },
            )
        resigned += len(batch)


async def stored(session: AsyncSession, participant: str, period: str) -> IssuedStatement | None:
    """The participant's statement of ``period`` as issued, or None if none is stored."""
    return await session.get(IssuedStatement, (period, participant))


async def is_stored(session: AsyncSession, participant: str, period: str) -> bool:
    """Whether the participant's statement of ``period`` is issued (its document left unread)."""
    found = await session.exec(
        select_rows(IssuedStatement.period).where(
            IssuedStatement.period == period, IssuedStatement.participant == participant
        )
    )
    return found.first() is not None


def line_of(line: dict[str, Any], currency: Currency) -> StatementLine:
    """One of a stored document's ``lines`` (of any version) as a :class:`StatementLine`."""
    found = line.get("reverses")
    return StatementLine(
        line["transaction"],
        line["reference"],
        line["kind"],
        datetime.fromisoformat(line["effectiveAt"]),
        line["counterparty"],
        amount=currency.to_minor(Decimal(line["amount"])),
        category=line["category"],
        reverses=None if found is None else Reversed(found["transaction"], found["period"]),
    )


#: An issued statement's lines in the document's order, read a page at a time by their number
#: (:func:`line_page`).
STATEMENT_LINES = Keyset("statementLines", (col(IssuedStatementLine.number),), descending=False)


def _lines_of(participant: str, period: str) -> SelectOfScalar[IssuedStatementLine]:
    return select_rows(IssuedStatementLine).where(
        IssuedStatementLine.period == period, IssuedStatementLine.participant == participant
    )


async def line_page(
    session: AsyncSession, participant: str, period: str, currency: Currency, *, first: int, after: str | None
) -> Page[StatementLine]:
    """``first`` lines of the participant's issued statement of ``period`` after the cursor
    ``after`` (one of this statement's ``nextCursor``), in the document's order: those rows only
    are read, however many lines the statement has."""
    page: Page[IssuedStatementLine] = await read_page(
        session, _lines_of(participant, period), STATEMENT_LINES, scope=[participant, period], first=first, after=after
    )
    return Page([line_of(json.loads(row.line), currency) for row in page.items], page.next_cursor)


async def lines_after(
    session: AsyncSession, participant: str, period: str, currency: Currency, *, number: int, first: int
) -> list[StatementLine]:
    """``first`` lines of the participant's issued statement of ``period`` after its
    ``number``-th (0: from the first): what a page of a console, whose links name a line's
    number, and the deprecated ``lines(offset)`` show."""
    rows = await line_documents(session, participant, period, number=number, first=first)
    return [line_of(line, currency) for line in rows]


async def line_documents(
    session: AsyncSession, participant: str, period: str, *, number: int, first: int
) -> list[dict[str, Any]]:
    """``first`` of the participant's issued statement's lines after its ``number``-th (0: from
    the first), each the line's object as its document holds it, read by their numbers (the
    table's key): a page of :func:`~exchange.settlement.statements.csv_pieces`' lines."""
    rows = await session.exec(
        select_rows(IssuedStatementLine.line)
        .where(
            IssuedStatementLine.period == period,
            IssuedStatementLine.participant == participant,
            col(IssuedStatementLine.number) > number,
        )
        .order_by(col(IssuedStatementLine.number))
        .limit(first)
    )
    return [json.loads(line) for line in rows]


async def stored_head(session: AsyncSession, participant: str, period: str) -> dict[str, Any] | None:
    """The participant's issued statement of ``period`` but its lines (its stored ``head``),
    its document left unread; None if none is stored."""
    found = (
        await session.exec(
            select(_ISSUED.c.head).where(_ISSUED.c.period == period, _ISSUED.c.participant == participant)
        )  # type: ignore[call-overload]
    ).first()
    if found is None:
        return None
    assert found.head is not None, "the database writes it with the row"
    return dict(json.loads(found.head))


async def line_count(session: AsyncSession, participant: str, period: str) -> int:
    """How many lines the participant's issued statement of ``period`` has: its last line's
    number, found by the table's key (not by counting them)."""
    last = await session.exec(
        select_rows(func.max(IssuedStatementLine.number)).where(
            IssuedStatementLine.period == period, IssuedStatementLine.participant == participant
        )
    )
    return last.one() or 0


@dataclass(frozen=True)
class IssuedFigures(Statement):
    """A statement as issued, its figures read from the stored document but for its lines, which
    :func:`line_page` reads a page at a time (``lines`` is empty): what the consoles and GraphQL
    show of it, without reading a busy month's document whole."""

    version: int = field(kw_only=True)
    """The document's ``version`` as it was issued."""
    key_id: str = field(kw_only=True)
    issued_at: datetime = field(kw_only=True)
    resigned_at: datetime | None = field(kw_only=True)


async def stored_figures(
    session: AsyncSession, participant: str, period: str, *, calendar: SettlementCalendar, currency: Currency
) -> IssuedFigures | None:
    """The participant's statement of ``period`` as issued, its figures read from its document's
    head (the document but its lines); None if none is stored."""
    columns = ("version", "key_id", "issued_at", "resigned_at", "head")
    found = (
        await session.exec(
            select(*(_ISSUED.c[name] for name in columns)).where(
                _ISSUED.c.period == period, _ISSUED.c.participant == participant
            )
        )  # type: ignore[call-overload]
    ).first()
    if found is None:
        return None
    version, key_id, issued_at, resigned_at, head = found
    assert head is not None, "the database writes it with the row"
    return IssuedFigures(
        lines=(),
        version=version,
        key_id=key_id,
        issued_at=issued_at,
        resigned_at=resigned_at,
        **_figures(json.loads(head), calendar, currency),
    )


def _figures(document: dict[str, Any], calendar: SettlementCalendar, currency: Currency) -> dict[str, Any]:
    """A :class:`Statement`'s fields but its lines, read from a stored document (with or without
    its ``lines``), of any version."""

    def minor(amount: str) -> int:
        return currency.to_minor(Decimal(amount))

    period = document["period"]
    closed_at = datetime.fromisoformat(period["closedAt"])
    liability = document.get("coalitionLiability")
    return {
        "issuer": document["issuer"],
        "participant": document["partner"],
        "period": period["name"],
        "calendar": calendar,
        "currency": currency,
        "closed_at": closed_at,
        "opening": minor(document["openingPosition"]),
        "payable": minor(document["totals"]["payable"]),
        "receivable": minor(document["totals"]["receivable"]),
        "counterparties": [
            CounterpartyTotals(totals["counterparty"], minor(totals["payable"]), minor(totals["receivable"]))
            for totals in document["counterparties"]
        ],
        "coalition_liability": None
        if liability is None
        else CoalitionLiability(
            period=period["name"],
            program_id=liability["program"],
            points=liability["points"],
            point_value=Decimal(liability["pointValue"]),
            liability_minor=minor(liability["amount"]),
            recorded_at=closed_at,
        ),
    }
