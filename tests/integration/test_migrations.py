"""Migrations: they build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlmodel import SQLModel

import exchange.tables  # noqa: F401
from exchange.db import migrate
from exchange.db.database import Database
from exchange.ledger.partitions import compared
from exchange.loading import load_directory
from exchange.pricing import promotions, quotes
from exchange.programs.declarations import read_partners_directory
from exchange.programs.service import load_partners
from exchange.settings import DEVELOPMENT_KEY_ENCRYPTION_SECRET
from exchange.settlement.statements import canonical_json
from exchange.testing.databases import PostgresDatabases
from exchange.webhooks import subscriptions
from exchange.webhooks.events import Event, EventType
from exchange.webhooks.outbox import emit
from exchange.webhooks.subscriptions import SubscriptionDraft
from tests.conftest import SAMPLE_PARTNERS
from tests.integration.test_cli import EXCHANGE


def test_migrations_match_the_models(database_url: str) -> None:
    engine = create_engine(migrate.sync_database_url(database_url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": compared})
            differences = compare_metadata(context, SQLModel.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_a_fresh_database_is_at_the_head_revision(database_url: str) -> None:
    assert migrate.current_revision(database_url) == migrate.head_revision()
    migrate.ensure_migrated(database_url)


def test_upgrades_started_together_on_an_empty_database_take_turns(postgres_databases: PostgresDatabases) -> None:
    """Several ``exchange db upgrade``s at once (a migration Job retried beside its first run,
    two deploy pipelines): all but one raced the first's CREATE TABLE and failed half-way with a
    unique violation; now each waits for the one before and finds the schema at the head."""
    url = postgres_databases.create_empty()
    upgrades = [
        subprocess.Popen(
            [EXCHANGE, "db", "upgrade"],
            env={**os.environ, "EXCHANGE_DATABASE_URL": url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    said = [(upgrade.communicate(timeout=300), upgrade.returncode) for upgrade in upgrades]
    head = migrate.head_revision()
    assert said == [((f"database at migration {head}\n", ""), 0)] * 3
    assert migrate.current_revision(url) == head


async def test_programs_loaded_before_the_plural_column_get_their_point_name_with_an_s(database_url: str) -> None:
    """Loaded, taken back to the revision before ``point_name_plural`` and up again: every
    program has a plural until the next ``partners load`` writes the declared one."""
    db = Database.from_url(database_url)
    try:
        async with db.transaction() as session:
            await load_partners(session, read_partners_directory(SAMPLE_PARTNERS), datetime.now(UTC))
        config = migrate.alembic_config(database_url)
        await asyncio.to_thread(command.downgrade, config, "0029")
        await asyncio.to_thread(command.upgrade, config, "head")
        async with db.transaction() as session:
            plurals = dict((await session.exec(text("SELECT id, point_name_plural FROM program"))).all())
        assert plurals["formosa-air"] == "Miles" and plurals["coalition"] == "Coalition Points"
    finally:
        await db.dispose()


async def test_quotes_made_before_the_value_cap_was_kept_show_none_cut(database_url: str) -> None:
    """Taken back to the revision before ``quote.value_cap_points`` and up again: a quote made
    before it reads 0, on both databases."""
    db = Database.from_url(database_url)
    try:
        async with db.transaction() as session:
            await load_directory(session, read_partners_directory(SAMPLE_PARTNERS), datetime.now(UTC))
            request = quotes.QuoteRequest(
                member_id="m1", member_level=4, source="fresh-mart", target="formosa-air", points=1000
            )
            policy = quotes.QuotePolicy(ttl=timedelta(seconds=60), timezone=ZoneInfo("Asia/Taipei"))
            quote = await quotes.create_quote(session, request, policy=policy, now=datetime.now(UTC))
        assert quote.value_cap_points > 0, "a Diamond member's 5% tier bonus is cut"
        config = migrate.alembic_config(database_url)
        await asyncio.to_thread(command.downgrade, config, "0034")
        await asyncio.to_thread(command.upgrade, config, "head")
        async with db.transaction() as session:
            kept = (await session.exec(text("SELECT points_out, value_cap_points FROM quote"))).all()
        assert [tuple(row) for row in kept] == [(quote.points_out, 0)]
    finally:
        await db.dispose()


async def test_promotions_keyed_by_program_and_id_still_move_the_pricing_revision(database_url: str) -> None:
    """Taken back to the revision before promotions were keyed by program and id, and up again
    (SQLite rebuilds the table): the declared promotion is kept, two programs hold the same id,
    and every change still moves ``pricing_revision``, which tells each process to reload."""
    db = Database.from_url(database_url)
    now = datetime.now(UTC)
    try:
        async with db.transaction() as session:
            await load_directory(session, read_partners_directory(SAMPLE_PARTNERS), now)
        config = migrate.alembic_config(database_url)
        await asyncio.to_thread(command.downgrade, config, "0035")
        await asyncio.to_thread(command.upgrade, config, "head")
        revision = text("SELECT revision FROM pricing_revision")
        async with db.transaction() as session:
            before = (await session.exec(revision)).one()[0]
            kept = (await session.exec(text("SELECT program_id, id FROM promotion"))).all()
            for program in ("fresh-mart", "wallet-pay"):
                terms = promotions.PromotionTerms(
                    id="spring",
                    program_id=program,
                    bonus_percent=Decimal(5),
                    starts_at=now,
                    ends_at=now + timedelta(days=1),
                )
                await promotions.create_promotion(session, terms, actor="test", now=now)
            after = (await session.exec(revision)).one()[0]
        assert [tuple(row) for row in kept] == [("formosa-air", "formosa-air-year-end-2026")]
        assert after > before
    finally:
        await db.dispose()


async def test_subscriptions_made_before_the_sequence_mark_keep_the_events_after_their_time(database_url: str) -> None:
    """Taken back to the revision before ``webhook_subscription.after_sequence`` and up again:
    a subscription's mark is the latest event that happened before it was made, so the events
    not yet fanned out reach it as the time rule had them."""
    db = Database.from_url(database_url)
    made_at = datetime.now(UTC)
    try:
        async with db.transaction() as session:
            await emit(
                session,
                *(
                    Event(EventType.PERIOD_CLOSED, f"period:{n}", None, {}, made_at + timedelta(seconds=n))
                    for n in (-1, 1)
                ),
            )
        async with db.transaction() as session:
            made = await subscriptions.create(
                session,
                SubscriptionDraft("http://127.0.0.1:9/hook", ["period.closed"]),
                production=False,
                key_secret=DEVELOPMENT_KEY_ENCRYPTION_SECRET,
                by="test",
                now=made_at,
                limit=1,
            )
            events = (await session.exec(text("SELECT object, sequence FROM webhook_event"))).all()
        config = migrate.alembic_config(database_url)
        await asyncio.to_thread(command.downgrade, config, "0047")
        await asyncio.to_thread(command.upgrade, config, "head")
        async with db.transaction() as session:
            mark = (await session.exec(text("SELECT after_sequence FROM webhook_subscription"))).one()[0]
        assert mark == dict(events)["period:-1"]
        assert made.subscription.after_sequence == dict(events)["period:1"]
    finally:
        await db.dispose()


async def test_statements_issued_before_their_lines_were_kept_have_them_from_their_document(database_url: str) -> None:
    """Taken back to the revision before ``issued_statement_line`` and up again: each statement
    issued meanwhile has its document's lines, in its order, each the object the document holds
    (text a JSON parser could trip on included), its head (the rest of the document), and its
    document as it was. So has one stored
    afterwards by any process (a gateway of the release before, during a rolling update)."""
    db = Database.from_url(database_url)
    config = migrate.alembic_config(database_url)
    lines = [
        {"amount": "-1.50", "reference": f'conversion:"{n}", 台北\\n{n}', "reverses": None, "transaction": f"t{n}"}
        for n in range(12)
    ]
    documents = {
        who: canonical_json({"lines": lines[:count], "partner": who, "version": 2})
        for who, count in (("fresh-mart", 12), ("wallet-pay", 0), ("happy-card", 3))
    }

    async def store(*participants: str) -> None:
        async with db.transaction() as session:
            for who in participants:
                await session.exec(
                    text(
                        "INSERT INTO issued_statement (period, participant, version, document, key_id, jws, issued_at) "
                        "VALUES ('2026-10', :who, 2, :document, 'k', 'jws', :at)"
                    ),  # type: ignore[call-overload]
                    params={"who": who, "document": documents[who], "at": datetime.now(UTC)},
                )

    try:
        await asyncio.to_thread(command.downgrade, config, "0051")
        await store("fresh-mart", "wallet-pay")
        await asyncio.to_thread(command.upgrade, config, "head")
        await store("happy-card")
        async with db.transaction() as session:
            kept = (
                await session.exec(
                    text(
                        "SELECT participant, number, line FROM issued_statement_line WHERE period = '2026-10' "
                        "ORDER BY participant, number"
                    )  # type: ignore[call-overload]
                )
            ).all()
            kept_documents = text("SELECT participant, document, head FROM issued_statement")
            documents_now = (await session.exec(kept_documents)).all()  # type: ignore[call-overload]
        assert [(who, number, json.loads(line)) for who, number, line in kept] == [
            *(("fresh-mart", n + 1, line) for n, line in enumerate(lines)),
            *(("happy-card", n + 1, line) for n, line in enumerate(lines[:3])),
        ]
        assert {row[0]: row[1] for row in documents_now} == documents
        assert {row[0]: json.loads(row[2]) for row in documents_now} == {
            who: {"partner": who, "version": 2} for who in documents
        }, "each head: the document but its lines"
    finally:
        await db.dispose()
