"""`exchange settle close | reconcile | statement`, run as an operator runs them."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from exchange.db.database import Database
from exchange.errors import ConfigurationError
from exchange.ledger.periods import SettlementCalendar, start_closing
from exchange.ledger.posting import Ledger
from exchange.services.container import open_services
from exchange.services.settlement import BreakView, SettlementService
from exchange.settings import DEVELOPMENT_KEY_ENCRYPTION_SECRET, Settings
from exchange.settlement.keys import StatementKeys
from exchange.settlement.models import Reconciliation, RecordsSource
from exchange.testing.clock import FrozenClock
from tests.integration.settlement.conftest import RETENTION_YEARS, TAIPEI, conversion, redemption
from tests.integration.test_cli import run_here


def statement_keys(db: Database) -> StatementKeys:
    return StatementKeys(
        db, DEVELOPMENT_KEY_ENCRYPTION_SECRET, FrozenClock(datetime.now(UTC)), retention_years=RETENTION_YEARS
    )


async def published_statement_keys(database_url: str) -> KeySet:
    """What /.well-known/statement-keys.json serves for the database."""
    db = Database.from_url(database_url)
    try:
        return KeySet.import_key_set(await statement_keys(db).jwks())
    finally:
        await db.dispose()


@pytest.fixture
async def october(database_url: str) -> dict[str, str]:
    """A migrated, loaded database holding an October of postings (over by now)."""
    env = {"EXCHANGE_DATABASE_URL": database_url}
    assert run_here("db", "upgrade", env=env).returncode == 0
    assert run_here("partners", "load", "--dir", "partners", env=env).returncode == 0
    at = datetime(2026, 10, 10, 4, 0, tzinfo=UTC)
    db = Database.from_url(database_url)
    try:
        async with db.transaction() as session:
            await Ledger(timezone=TAIPEI, clock=FrozenClock(at)).post_many(
                session,
                [
                    conversion("c1", "wallet-pay", "fresh-mart", 10_000, fee=200, at=at),
                    redemption("r1", "fresh-mart", "formosa-air", 1_500, at=at),
                ],
            )
            await statement_keys(db).ensure_active(session)  # as a gateway's first start does
    finally:
        await db.dispose()
    return env


async def test_close_prints_positions_and_the_saving_and_is_repeatable(october: dict[str, str]) -> None:
    closed = run_here("settle", "close", "2026-10", env=october)
    assert closed.returncode == 0, closed.stderr
    lines = closed.stdout.splitlines()
    assert lines[0] == "period 2026-10: CLOSED"
    assert " ".join(lines[1].split()) == (
        "participant opening (TWD) receivable (TWD) payable (TWD) net (TWD) closing (TWD)"
    ), "amounts name their currency, in the consoles' order"
    assert all(
        Decimal(receivable) - Decimal(payable) == Decimal(net)
        for _, _, receivable, payable, net, _ in (line.split() for line in lines[2:6])
    ), "receivable less payable is the net"
    assert [line.split()[0::5] for line in lines[2:6]] == [
        ["EXCHANGE", "2.00"],
        ["formosa-air", "15.00"],
        ["fresh-mart", "83.00"],
        ["wallet-pay", "-100.00"],
    ]
    said = [" ".join(line.split()) for line in lines[6:]]
    assert said == [
        "net positions sum to 0.00 TWD",
        "payments gross: 3 moving 115.00 TWD",
        "payments bilateral: 3 moving 115.00 TWD",
        "payments multilateral: 4 moving 100.00 TWD",
        "the coalition point (coalition) at the period's end: 0 points outstanding × 1 TWD = liability 0.00 TWD"
        " (half-even to the minor unit)",
    ]
    assert run_here("settle", "close", "2026-10", env=october).stdout == closed.stdout


async def test_recover_finishes_a_close_that_crashed_after_the_period_started_closing(
    october: dict[str, str], database_url: str
) -> None:
    """`exchange settle close` switched October to CLOSING and died: `exchange recover` closes
    it, says so on its last line, and the figures are those a close run to the end gives."""
    db = Database.from_url(database_url)
    try:
        async with db.transaction() as session:
            calendar = SettlementCalendar(TAIPEI)
            await start_closing(session, calendar, "2026-10", by="cron", now=datetime.now(UTC))
    finally:
        await db.dispose()
    recovered = run_here("recover", env=october)
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.stdout.splitlines()[-1] == "1 settlement period left closing finished: 2026-10"
    closed = run_here("settle", "close", "2026-10", env=october)
    assert closed.returncode == 0, closed.stderr
    assert closed.stdout.splitlines()[0] == "period 2026-10: CLOSED"
    assert "net positions sum to 0.00 TWD" in closed.stdout
    again = run_here("recover", env=october)
    assert again.stdout.splitlines()[-1] == "0 settlement periods left closing finished"


async def test_close_previous_closes_the_period_that_ended_last_in_the_settlement_time_zone(
    database_url: str,
) -> None:
    env = {"EXCHANGE_DATABASE_URL": database_url, "EXCHANGE_SETTLEMENT_TIMEZONE": "Asia/Taipei"}
    assert run_here("db", "upgrade", env=env).returncode == 0
    assert run_here("partners", "load", "--dir", "partners", env=env).returncode == 0
    today = datetime.now(TAIPEI)
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    at = datetime(year, month, 10, 12, 0, tzinfo=TAIPEI)
    db = Database.from_url(database_url)
    try:
        async with db.transaction() as session:
            await Ledger(timezone=TAIPEI, clock=FrozenClock(at)).post_many(
                session, [conversion("c1", "wallet-pay", "fresh-mart", 10_000, fee=200, at=at)]
            )
    finally:
        await db.dispose()

    for argv in (["settle", "close"], ["settle", "close", "--previous", f"{year}-{month:02d}"]):
        refused = run_here(*argv, env=env)
        assert refused.returncode == 2 and "give PERIOD or --previous, one of the two" in refused.stderr
    closed = run_here("settle", "close", "--previous", env=env)
    assert closed.returncode == 0, closed.stderr
    assert closed.stdout.splitlines()[0] == f"period {year}-{month:02d}: CLOSED"
    assert "wallet-pay" in closed.stdout
    assert run_here("settle", "close", "--previous", env=env).stdout == closed.stdout


async def test_reconcile_prints_the_classification_and_refuses_a_malformed_file(
    october: dict[str, str], tmp_path: Path
) -> None:
    assert run_here("settle", "close", "2026-10", env=october).returncode == 0
    before = run_here("settle", "breaks", "--partner", "fresh-mart", "2026-10", env=october)
    assert before.returncode == 2 and "exchange settle reconcile --partner fresh-mart 2026-10 FILE" in before.stderr
    records = tmp_path / "fresh-mart-2026-10.csv"
    records.write_text("reference,amount\nconversion:c1,98.00\nredemption:r1,-15.00\nredemption:r1,-15.00\nextra:1,3\n")
    result = run_here("settle", "reconcile", "--partner", "fresh-mart", "2026-10", str(records), env=october)
    assert result.returncode == 0, result.stderr
    counts = dict(line.split() for line in result.stdout.splitlines()[1:6])
    assert counts == {
        "MATCHED": "2",
        "AMOUNT_MISMATCH": "0",
        "MISSING_IN_LEDGER": "1",
        "DUPLICATE": "1",
        "MISSING_IN_PARTNER": "0",
    }
    assert "2 breaks to resolve" in result.stdout
    listed = run_here("settle", "breaks", "--partner", "fresh-mart", "2026-10", env=october).stdout.splitlines()
    assert "partner (TWD)" in listed[0] and "ledger (TWD)" in listed[0], "amounts name their currency"
    # Each break's difference is what it puts between the totals: the repeated line its amount.
    differences = {line.split()[1]: Decimal(line.split()[-3]) for line in listed[1:-1]}
    assert differences == {"DUPLICATE": Decimal("-15.00"), "MISSING_IN_LEDGER": Decimal("3.00")}
    total = next(line for line in result.stdout.splitlines() if "difference (breaks)" in line)
    assert Decimal(total.split()[-2]) == sum(differences.values()) == Decimal("-12.00")
    # Staff run it, about a partner's file: not "your file" (partner wording).
    assert re.search(r"^  the file's total +71\.00 TWD$", result.stdout, re.MULTILINE), result.stdout
    assert "your file" not in result.stdout

    records.write_text("reference,amount\nconversion:c1,98.00\nconversion:c2,9.999\n")
    refused = run_here("settle", "reconcile", "--partner", "fresh-mart", "2026-10", str(records), env=october)
    assert refused.returncode == 2
    assert refused.stderr.startswith("Error: line 3: amount: '9.999' is not an amount in TWD")
    assert refused.stderr.rstrip().endswith("nothing was imported")


async def test_statement_prints_json_csv_and_a_jws_the_jwks_verifies(
    october: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    assert run_here("settle", "statement", "--partner", "fresh-mart", "2026-10", env=october).returncode == 2
    assert run_here("settle", "close", "2026-10", env=october).returncode == 0
    document = json.loads(run_here("settle", "statement", "--partner", "fresh-mart", "2026-10", env=october).stdout)
    assert document["closingPosition"] == "83.00"
    table = run_here("settle", "statement", "--partner", "fresh-mart", "--format", "csv", "2026-10", env=october).stdout
    assert "fresh-mart,2026-10,TWD,closing,,,,,,,83.00,,2026-09-30T16:00:00Z,2026-10-31T16:00:00Z,Asia/Taipei,,," in (
        table.splitlines()
    )
    token = run_here(
        "settle", "statement", "--partner", "fresh-mart", "--format", "jws", "2026-10", env=october
    ).stdout.strip()
    assert json.loads(jws.deserialize_compact(token, await published_statement_keys(database_url)).payload) == document
    written = tmp_path / "statement.csv"
    saved = run_here(
        "settle",
        "statement",
        "--partner",
        "fresh-mart",
        "--format",
        "csv",
        "--output",
        str(written),
        "2026-10",
        env={**october, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"},
    )
    assert saved.returncode == 0, saved.stderr
    assert written.read_bytes() == table.replace("\n", "\r\n").encode()  # exactly the CSV's bytes, CRLF kept
    # Standard output says what was written, and where, instead of nothing.
    statement_lines = len(document["lines"])
    assert statement_lines > 1
    size = len(written.read_bytes())
    assert saved.stdout == (
        f"wrote the statement of fresh-mart for 2026-10 (csv, {statement_lines} statement lines, {size:,} bytes) "
        f"to {written}\n"
    )
    # The exchange's statement is named as its own, not as a program's.
    fees = run_here(
        "settle", "statement", "--partner", "EXCHANGE", "--output", str(tmp_path / "fees.json"), "2026-10", env=october
    )
    assert fees.stdout.startswith("wrote the exchange's own statement for 2026-10 (json, "), fees.stderr


async def test_keys_rotate_statements_leaves_an_earlier_jws_verifying_unless_the_key_is_compromised(
    october: dict[str, str], database_url: str
) -> None:
    assert run_here("settle", "close", "2026-10", env=october).returncode == 0
    statement = ("settle", "statement", "--partner", "fresh-mart", "--format", "jws", "2026-10")
    before = run_here(*statement, env=october).stdout.strip()
    cached = await published_statement_keys(database_url)  # what a verifier holds
    rotated = run_here("keys", "rotate", "--statements", env=october)
    assert rotated.returncode == 0, rotated.stderr
    new_kid = re.search(r"^active statement-signing key: (\S+)$", rotated.stdout, re.MULTILINE)
    old_kid = jws.extract_compact(before.encode()).headers()["kid"]
    assert new_kid is not None and new_kid.group(1) != old_kid
    assert re.search(r"^it is published now and signs from \d{4}-", rotated.stdout, re.MULTILINE), rotated.stdout
    assert re.search(rf"^retired key {old_kid} signs until \d{{4}}-", rotated.stdout, re.MULTILINE)
    until = re.search(rf"^retired key {old_kid} stays published until (\d{{4}})-", rotated.stdout, re.MULTILINE)
    assert until is not None and int(until.group(1)) == datetime.now(UTC).year + RETENTION_YEARS
    assert rotated.stdout.splitlines()[-1] == f"published statement keys: {new_kid.group(1)}, {old_kid}"

    # Downloaded again after the rotation: the statement as issued, signed by the old key, which
    # verifiers' cached keys verify.
    meanwhile = run_here(*statement, env=october).stdout.strip()
    assert meanwhile == before and jws.extract_compact(meanwhile.encode()).headers()["kid"] == old_kid
    assert jws.deserialize_compact(meanwhile, cached).payload == jws.deserialize_compact(before, cached).payload

    # A compromised key cannot wait: the newest key signs at once, the keys published until now
    # are withdrawn, and the statements they signed are signed again with the newest key.
    urgent = run_here("keys", "rotate", "--statements", "--compromised", env=october)
    assert urgent.returncode == 0, urgent.stderr
    newest = re.search(r"^active statement-signing key: (\S+)$", urgent.stdout, re.MULTILINE)
    assert newest is not None
    assert "it signs now: verifiers that cached the published keys must fetch them again" in urgent.stdout
    withdrawn = re.search(r"^withdrawn \(no longer published\): (.+)$", urgent.stdout, re.MULTILINE)
    assert withdrawn is not None and set(withdrawn.group(1).split(", ")) == {old_kid, new_kid.group(1)}
    resigned = re.search(r"^(\d+) issued statements? signed again with the new key", urgent.stdout, re.MULTILINE)
    assert resigned is not None and int(resigned.group(1)) >= 1
    assert urgent.stdout.splitlines()[-1] == f"published statement keys: {newest.group(1)}"
    # Downloaded again: the same document, signed by the newest key; the JWS the compromised key
    # made no longer verifies with what the exchange publishes.
    after = run_here(*statement, env=october).stdout.strip()
    assert jws.extract_compact(after.encode()).headers()["kid"] == newest.group(1)
    published = await published_statement_keys(database_url)
    assert {key.kid for key in published} == {newest.group(1)}
    assert jws.deserialize_compact(after, published).payload == jws.deserialize_compact(before, cached).payload
    with pytest.raises(JoseError):
        jws.deserialize_compact(before, published)


async def test_resolve_takes_a_selection_in_bulk_and_sign_off_follows(october: dict[str, str], tmp_path: Path) -> None:
    assert run_here("settle", "close", "2026-10", env=october).returncode == 0
    before = run_here("settle", "breaks", "--partner", "fresh-mart", "2026-10", env=october)
    assert before.returncode == 2 and "exchange settle reconcile --partner fresh-mart 2026-10 FILE" in before.stderr
    records = tmp_path / "fresh-mart-2026-10.csv"
    records.write_text("reference,amount\nconversion:c1,98.00\nredemption:r1,-15.00\nredemption:r1,-15.00\nextra:1,3\n")
    assert (
        run_here("settle", "reconcile", "--partner", "fresh-mart", "2026-10", str(records), env=october).returncode == 0
    )
    early = run_here("settle", "sign-off", "--partner", "fresh-mart", "2026-10", env=october)
    assert (early.returncode, "2 unresolved breaks" in early.stderr) == (2, True)

    resolve = ("settle", "resolve", "--partner", "fresh-mart", "--reason", "agreed in the monthly call")
    unselected = run_here(*resolve, "--resolution", "ACCEPT_LEDGER", "2026-10", env=october)
    assert unselected.returncode == 2 and "--all" in unselected.stderr
    refused = run_here(*resolve, "--resolution", "ADJUST", "--kind", "DUPLICATE", "2026-10", env=october)
    assert refused.returncode == 2 and "has no amount to adjust by" in refused.stderr
    one = run_here(*resolve, "--resolution", "ACCEPT_LEDGER", "--kind", "DUPLICATE", "2026-10", env=october)
    assert one.stdout.splitlines() == [
        "resolved 1 break (0 already resolved the same way)",
        "1 break of fresh-mart 2026-10 still open",
    ], one.stderr
    # Adjusting says what it posted, where, and what the partner's records of that period need.
    adjust = ("--resolution", "ADJUST", "--adjust-against", "EXCHANGE", "--all", "--as", "alice@settlement")
    done = run_here(*resolve, *adjust, "2026-10", env=october)
    resolved, posted, still = done.stdout.splitlines()
    assert (resolved, still) == (
        "resolved 1 break (0 already resolved the same way)",
        "0 breaks of fresh-mart 2026-10 still open",
    ), done.stderr
    into = re.fullmatch(
        r"posted 1 adjustment into (2026-1[12]), 3\.00 TWD in all to the position of fresh-mart: "
        r"each is on the statements of (2026-1[12]) as break:<its break id>",
        posted,
    )
    assert into is not None and into[1] == into[2], posted
    # What a script repeating itself, or taking a class the month has none of, needs: done (0),
    # saying that nothing matched which filters.
    again = run_here(*resolve, "--resolution", "ACCEPT_LEDGER", "--all", "2026-10", env=october)
    assert (again.returncode, again.stdout.splitlines()) == (
        0,
        [
            "resolved 0 breaks: no open break of fresh-mart 2026-10 matched --all",
            "0 breaks of fresh-mart 2026-10 still open",
        ],
    )
    none = run_here(
        *resolve,
        "--resolution",
        "ACCEPT_LEDGER",
        "--kind",
        "AMOUNT_MISMATCH",
        "--counterparty",
        "EXCHANGE",
        "2026-10",
        env=october,
    )
    assert (none.returncode, none.stdout.splitlines()[0]) == (
        0,
        "resolved 0 breaks: no open break of fresh-mart 2026-10 matched --kind AMOUNT_MISMATCH --counterparty EXCHANGE",
    )
    typo = run_here(*resolve, "--resolution", "ACCEPT_LEDGER", "--counterparty", "wallet-pya", "2026-10", env=october)
    assert (typo.returncode, typo.stdout) == (2, ""), typo.stderr
    # The ids it could have meant: the programs, and the exchange's own.
    assert typo.stderr.startswith("Error: no program has id 'wallet-pya'; the programs are "), typo.stderr
    assert {"wallet-pay", "EXCHANGE"} <= set(typo.stderr.split("; the programs are ")[1].strip().split(", "))

    signed = run_here(
        "settle", "sign-off", "--partner", "fresh-mart", "--as", "carol@settlement", "2026-10", env=october
    )
    assert signed.stdout.strip() == "signed off fresh-mart 2026-10 by carol@settlement", signed.stderr
    late = run_here(*resolve, "--resolution", "ACCEPT_LEDGER", "--all", "2026-10", env=october)
    assert late.returncode == 2 and "signed off" in late.stderr


async def test_books_print_a_partners_figures_as_text_or_csv(october: dict[str, str]) -> None:
    exported = run_here("books", "fresh-mart", "2026-10", "--csv", env=october)
    assert exported.returncode == 0, exported.stderr
    rows = {row[2]: row[3:] for row in csv.reader(io.StringIO(exported.stdout))}
    assert rows["issued"] == ["10000", "1000.00", "TWD"]
    assert rows["money_net"] == ["", "83.00", "TWD"], "98.00 for the points it issued, 15.00 for a reward"
    assert rows["budget_level"] == ["", "NONE", ""]
    shown = run_here("books", "fresh-mart", "2026-10", env=october)
    assert shown.stdout.splitlines()[0] == "fresh-mart 2026-10 (TWD)"
    assert ["issued", "10000", "1000.00", "TWD"] in [line.split() for line in shown.stdout.splitlines()]
    lines = [line.split() for line in shown.stdout.splitlines()[1:]]
    assert ["coalition_estimated_breakage", "-"] in lines, "not known before any lot matured"
    assert not [line for line in lines if line[-1] == "TWD" and len(line) < 3], "no currency without an amount"


async def test_each_month_end_refusal_says_what_to_do_next(october: dict[str, str], tmp_path: Path) -> None:
    early = run_here("settle", "close", "2099-01", env=october)
    assert early.returncode == 2
    assert "period 2099-01 is not over: it ends at 2099-01-31T16:00:00+00:00; close it after then" in early.stderr
    assert run_here("settle", "close", "2026-10", env=october).returncode == 0
    records = tmp_path / "fresh-mart-2026-10.csv"
    records.write_text("reference,amount\nconversion:c1,98.00\nextra:1,3\n")
    reconcile = ("settle", "reconcile", "--partner", "fresh-mart", "2026-10", str(records))
    assert run_here(*reconcile, env=october).returncode == 0
    resolve = ("settle", "resolve", "--partner", "fresh-mart", "--reason", "agreed in the monthly call")
    listed = run_here("settle", "breaks", "--partner", "fresh-mart", "2026-10", env=october).stdout
    first = re.findall(r"^\s+(\d+) ", listed, re.MULTILINE)[0]
    assert run_here(*resolve, "--resolution", "ACCEPT_LEDGER", "--break", first, "2026-10", env=october).returncode == 0

    otherwise = run_here(*resolve, "--resolution", "ADJUST", "--break", first, "2026-10", env=october)
    assert otherwise.returncode == 2
    assert (
        f"break {first} was already resolved differently: leave it out "
        "(exchange settle breaks lists how each break was resolved)" in otherwise.stderr
    )
    corrected = tmp_path / "fresh-mart-2026-10-corrected.csv"
    corrected.write_text("reference,amount\nconversion:c1,98.00\n")
    reconcile_corrected = (*reconcile[:-1], str(corrected))
    again = run_here(*reconcile_corrected, env=october)
    assert again.returncode == 2
    assert (
        "breaks of the reconciliation of fresh-mart for 2026-10 are already resolved; a new import would reopen them: "
        "resolve the open breaks of the current import instead" in again.stderr
    )
    assert run_here(*resolve, "--resolution", "ACCEPT_LEDGER", "--all", "2026-10", env=october).returncode == 0
    assert run_here("settle", "sign-off", "--partner", "fresh-mart", "2026-10", env=october).returncode == 0
    late = run_here(*reconcile_corrected, env=october)
    assert late.returncode == 2
    assert (
        "the period 2026-10 of fresh-mart is signed off: its records and breaks are final; "
        "a difference found since is reconciled in the next open period" in late.stderr
    )


async def test_a_partner_without_a_position_is_told_the_periods_it_took_part_in(october: dict[str, str]) -> None:
    """Asking for a partner's statement or breaks of a period it had no business in (September,
    before its first posting; happy-card, which never had any) names the periods to ask about
    instead, or says there are none yet."""
    for period in ("2026-10", "2026-11"):
        assert run_here("settle", "close", period, env=october).returncode == 0
    for command in ("statement", "breaks"):
        idle = run_here("settle", command, "--partner", "happy-card", "2026-11", env=october)
        assert (idle.returncode, idle.stderr) == (
            2,
            "Error: 'happy-card' took no part in settling period 2026-11; it has taken part in no closed period yet\n",
        )
        earlier = run_here("settle", command, "--partner", "fresh-mart", "2026-09", env=october)
        assert (earlier.returncode, earlier.stderr) == (
            2,
            "Error: 'fresh-mart' took no part in settling period 2026-09; the periods it took part in, latest first:"
            " 2026-11, 2026-10\n",
        )


async def test_the_exchange_is_told_it_has_no_reconciliation_not_asked_for_its_records(
    october: dict[str, str], tmp_path: Path
) -> None:
    """The exchange took part in the month (its fees), but sends no records and signs nothing
    off: "no records of EXCHANGE are imported yet: the partner uploads them" sent staff looking
    for a file no one writes."""
    assert run_here("settle", "close", "2026-10", env=october).returncode == 0
    records = tmp_path / "exchange-2026-10.csv"
    records.write_text("reference,amount\nconversion:c1,2.00\n")
    said = (
        "Error: the exchange has no reconciliation of its own: its lines are the other side of the partners' "
        "statements, which their reconciliations compare; name a partner's program, or the coalition point\n"
    )
    for command in (
        ("settle", "reconcile", "--partner", "EXCHANGE", "2026-10", str(records)),
        ("settle", "breaks", "--partner", "EXCHANGE", "2026-10"),
        (
            "settle",
            "resolve",
            "--partner",
            "EXCHANGE",
            "--resolution",
            "ACCEPT_LEDGER",
            "--all",
            "--reason",
            "r",
            "2026-10",
        ),
        ("settle", "sign-off", "--partner", "EXCHANGE", "2026-10"),
    ):
        refused = run_here(*command, env=october)
        assert (refused.returncode, refused.stderr) == (2, said), command


async def test_reconcile_point_refused_writes_no_kept_file(october: dict[str, str], tmp_path: Path) -> None:
    """The point took no part in October (no posting touches it): the import is refused, and
    `--keep` leaves no file that would look like its records, nor overwrites one there."""
    assert run_here("settle", "close", "2026-10", env=october).returncode == 0
    kept, earlier = tmp_path / "point.csv", tmp_path / "earlier.csv"
    earlier.write_text("kept from before\n")
    for path in (kept, earlier):
        refused = run_here("settle", "reconcile-point", "--keep", str(path), "2026-10", env=october)
        assert refused.returncode == 2
        assert "'coalition' took no part in settling period 2026-10" in refused.stderr
    assert not kept.exists()
    assert earlier.read_text() == "kept from before\n"


async def test_reconcile_records_who_imported_the_file_as_reconcile_point_does(
    october: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    assert run_here("settle", "close", "2026-10", env=october).returncode == 0
    records = tmp_path / "fresh-mart-2026-10.csv"
    records.write_text("reference,amount\nconversion:c1,98.00\n")
    imported = ("settle", "reconcile", "--partner", "fresh-mart")
    assert run_here(*imported, "--as", "mei@settlement", "2026-10", str(records), env=october).returncode == 0
    async with open_services(Settings(database_url=database_url)) as services:
        current = await services.settlement.reconciliation("fresh-mart", "2026-10")
    assert (current.reconciliation.imported_by, current.reconciliation.source) == (
        "mei@settlement",
        RecordsSource.PARTNER_FILE,
    )


async def test_breaks_are_printed_a_page_at_a_time_as_they_are_read(
    october: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A month's breaks may be many thousands: the listing prints each page as it reads it,
    # instead of holding every break until the last page is in. Its second page fails here.
    assert run_here("settle", "close", "2026-10", env=october).returncode == 0
    records = tmp_path / "fresh-mart-2026-10.csv"
    records.write_text(
        "reference,amount\nconversion:c1,98.00\nredemption:r1,-15.00\n" + "".join(f"extra:{n},1\n" for n in range(150))
    )
    assert (
        run_here("settle", "reconcile", "--partner", "fresh-mart", "2026-10", str(records), env=october).returncode == 0
    )
    read = SettlementService.breaks
    pages: list[list[BreakView]] = []

    async def breaks(self: SettlementService, of: Reconciliation, **asked: Any) -> list[BreakView]:
        if pages:
            raise ConfigurationError("the database went away")
        pages.append(await read(self, of, **asked))
        return pages[-1]

    monkeypatch.setattr(SettlementService, "breaks", breaks)
    listed = run_here("settle", "breaks", "--partner", "fresh-mart", "2026-10", env=october)
    assert listed.returncode != 0 and "the database went away" in listed.stderr
    assert len(pages[0]) == 100
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == [str(view.row.id) for view in pages[0]]
