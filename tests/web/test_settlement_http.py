"""The settlement console over HTTP: closing in the background, the netting picture, statements,
the streamed upload, bulk resolution and sign-off; who is refused, and forms without their token."""

from __future__ import annotations

import csv
import gzip
import html
import io
import json
import re
import shutil
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from joserfc import jws
from joserfc.jwk import KeySet
from sqlalchemy import text

from exchange.auth.scopes import Role
from exchange.ledger.models import SettlementPeriod
from exchange.services.container import load_partners_directory, open_services
from exchange.settlement import jobs
from exchange.settlement.models import SettlementJob
from exchange.testing.databases import PostgresDatabases
from exchange.web import settlement as settlement_pages
from exchange.web.formatting import format_money
from exchange.web.i18n import ENGLISH
from tests.conftest import SAMPLE_PARTNERS
from tests.web.conftest import Gateway, run_async
from tests.web.settlement_month import CSRF_FIELD, RECORDS, settling_gateway, wait_for_job
from tests.web.test_console_http import form_token, signed_in
from tests.web.test_partner_http import facts


@pytest.fixture(scope="module")
def settling(postgres_databases: PostgresDatabases) -> Iterator[tuple[Gateway, str]]:
    yield from settling_gateway(postgres_databases)


def close_from_console(client: httpx.Client, month: str) -> None:
    """Close ``month`` as staff do, from the console's form (a job), and wait until it is closed."""
    token = form_token(client, "/console/settlement/")
    queued = client.post("/console/settlement/close", data={"csrf_token": token, "period": month})
    assert queued.status_code == 303 and queued.headers["location"].startswith("/console/settlement/jobs/")
    assert f"Period {month} is closed." in wait_for_job(client, queued.headers["location"])


def test_staff_close_reconcile_resolve_in_bulk_and_sign_off(settling: tuple[Gateway, str]) -> None:
    gateway, month = settling
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as client:
        close_from_console(client, month)
        # A month before it, nothing posted into it, counts as closed: closing it is refused at once.
        nothing = client.post(
            "/console/settlement/close",
            data={"csrf_token": form_token(client, "/console/settlement/"), "period": "2001-01"},
            headers={"accept-language": "zh-TW"},
        )
        assert nothing.status_code == 400 and "2001-01 期間已視同結算：此期間沒有任何入帳" in nothing.text
        token = form_token(client, "/console/settlement/")

        picture = client.get(f"/console/settlement/{month}").text
        assert picture.count("<svg") == 2 and "Multilateral netting" in picture
        assert "NT$207.00" in picture  # gross: 100 + 40 + 30 + 25 + 12
        assert "Coalition point liability" in picture and " points × NT$" in picture
        # Participants by their programs' names, each id small beside it for matching files.
        fresh_mart = 'FreshMart Rewards <small class="muted participant-id">fresh-mart</small>'
        assert f'<th scope="row">{fresh_mart}</th>' in picture
        assert "<title>FreshMart Rewards → " in picture or " → FreshMart Rewards: " in picture, "the picture too"
        assert "EXCHANGE" not in picture.replace("/EXCHANGE", ""), "the exchange is named, not its code"
        assert ">The exchange</text>" in picture

        statement = client.get(f"/console/settlement/{month}/statements/fresh-mart")
        assert statement.status_code == 200 and "statement.js" in statement.text
        assert "<code>Asia/Taipei</code>" in statement.text and " points × NT$" in statement.text
        assert f"<h1>Statement of {fresh_mart}, {month}</h1>" in statement.text
        assert "<title>Statement of FreshMart Rewards," in statement.text
        # The exchange's statement is its own, not "Statement of The exchange".
        fees = client.get(f"/console/settlement/{month}/statements/EXCHANGE").text
        assert f"<h1>The exchange's own statement, {month}</h1>" in fees.replace("&#39;", "'")
        chinese = client.get(f"/console/settlement/{month}/statements/EXCHANGE", headers={"Accept-Language": "zh-TW"})
        assert f"<h1>交換平台本身的對帳單，{month}</h1>" in chinese.text
        signed = client.get(f"/console/settlement/{month}/statements/fresh-mart/jws").text
        keys = KeySet.import_key_set(client.get("/.well-known/statement-keys.json").json())
        document = json.loads(jws.deserialize_compact(signed, keys).payload)
        assert (document["partner"], document["period"]["name"]) == ("fresh-mart", month)
        assert client.get(f"/console/settlement/{month}/statements/fresh-mart/csv").text.startswith("partner,period,")

        records = f"/console/settlement/{month}/reconciliations/fresh-mart/records"
        unsigned = client.put(records, content=RECORDS, headers={"Content-Type": "text/csv"})
        assert unsigned.status_code == 403
        page = client.get(f"/console/settlement/{month}/reconciliations/fresh-mart").text
        assert "No file of this partner has been imported" in page
        # A malformed file is refused, saying why in the reader's language; nothing is imported.
        headers = {"Content-Type": "text/csv", "X-CSRF-Token": token, "Accept-Language": "zh-TW"}
        malformed = client.put(records, content=b"reference,amount\nr,1.234\n", headers=headers)
        refusal = malformed.json()
        assert malformed.status_code == 400 and (refusal["code"], refusal["line"]) == ("BAD_USER_INPUT", 2)
        assert refusal["message"].startswith("第 2 行：") and "不是 TWD 金額" in refusal["message"], refusal
        assert "is not an amount" not in refusal["message"]
        assert (
            "No file of this partner has been imported"
            in client.get(f"/console/settlement/{month}/reconciliations/fresh-mart").text
        )
        uploaded = client.put(records, content=RECORDS, headers={"Content-Type": "text/csv", "X-CSRF-Token": token})
        assert uploaded.status_code == 200, uploaded.text
        assert uploaded.json()["unresolvedBreaks"] == 5
        reconciliation = f"/console/settlement/{month}/reconciliations/fresh-mart"
        compared = client.get(reconciliation).text
        assert '<form method="post" action="' + reconciliation + '/resolve" id="resolve">' in compared
        assert f'href="{reconciliation}/breaks.csv"' in compared
        assert f"<h1>Reconciliation of {fresh_mart}, {month}</h1>" in compared
        assert 'Formosa Air Miles <small class="muted participant-id">formosa-air</small>' in compared, "counterparty"
        report = client.get(f"{reconciliation}/breaks.csv")
        assert report.headers["content-type"] == "text/csv; charset=utf-8"
        assert f'filename="breaks-fresh-mart-{month}.csv"' in report.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(report.text.removeprefix("\ufeff"))))
        assert [(row["kind"], row["reference"]) for row in rows] == [
            ("AMOUNT_MISMATCH", "conversion:c4"),
            ("MISSING_IN_LEDGER", "conversion:x1"),
            ("MISSING_IN_LEDGER", "conversion:x2"),
            ("MISSING_IN_PARTNER", "conversion:c2"),
            ("MISSING_IN_PARTNER", "conversion:c5"),
        ]
        assert all(row["next_step"] and not row["resolution"] for row in rows)
        assert client.get(f"/console/settlement/{month}/reconciliations/wallet-pay/breaks.csv").status_code == 404
        for query in ("?kind=NOPE", "?counterparty=" + "x" * 65):
            assert client.get(reconciliation + query).status_code == 200, query
        for query in ("?after=" + "9" * 30, "?kind=NOPE&after=x", "?after=%C2%B2", "?after=", "?after=-1"):
            refused = client.get(reconciliation + query)
            assert refused.status_code == 400 and "after must be the number" in refused.text, query
        assert client.get(reconciliation + "?counterparty=%00").status_code == 400
        assert client.get(f"/console/settlement/{month}/statements/fresh-mart/xml").status_code == 404
        assert client.get("/console/settlement/2026-13").status_code == 400
        assert client.get("/console/settlement/jobs/no-such-job").status_code == 404
        assert client.get(f"/console/settlement/{month}/statements/fresh%00mart").status_code == 400
        assert client.get(f"/console/settlement/{month}/reconciliations/{'x' * 65}").status_code == 400

        resolve = f"/console/settlement/{month}/reconciliations/fresh-mart/resolve"
        no_reason = client.post(resolve, data={"csrf_token": token, "scope": "filter", "resolution": "ACCEPT_LEDGER"})
        assert no_reason.status_code == 400 and "Reason: give one, in 1 to 500 characters" in no_reason.text
        nul = client.post(
            resolve, data={"csrf_token": token, "scope": "filter", "resolution": "ACCEPT_LEDGER", "reason": "a\x00b"}
        )
        assert nul.status_code == 400 and "NUL" in nul.text
        missing = client.post(
            resolve,
            data={
                "csrf_token": token,
                "scope": "filter",
                "kind": "MISSING_IN_LEDGER",
                "resolution": "ACCEPT_LEDGER",
                "reason": "not ours",
            },
        )
        assert missing.status_code == 303 and "resolved%3A2" in missing.headers["location"]
        every = {"csrf_token": token, "scope": "filter", "reason": "agreed"}
        unnamed = client.post(resolve, data={**every, "resolution": "ADJUST"})
        assert unnamed.status_code == 400 and "conversion:c2" in unnamed.text  # c2 has wallet-pay and a fee
        adjusted = client.post(resolve, data={**every, "resolution": "ADJUST", "kind": "AMOUNT_MISMATCH"})
        assert adjusted.status_code == 303 and "resolved%3A1" in adjusted.headers["location"]
        accepted = client.post(resolve, data={**every, "resolution": "ACCEPT_LEDGER"})
        assert accepted.status_code == 303 and "resolved%3A2" in accepted.headers["location"]
        page = client.get(f"/console/settlement/{month}/reconciliations/fresh-mart").text
        assert "not ours" in page and "agreed" in page and "Sign off the period for this partner" in page
        signed_off = client.post(
            f"/console/settlement/{month}/reconciliations/fresh-mart/sign-off",
            data={"csrf_token": token, "note": "all agreed"},
        )
        assert signed_off.status_code == 303
        page = client.get(signed_off.headers["location"]).text
        # One sentence says who signed it off and when, not "Signed off by x. <a time>".
        assert re.search(r"<p>Signed off by console:\S+ on <time datetime=\"[^\"]+\">[^<]+</time>\.</p>", page), page
        assert 'id="resolve"' not in page and 'name="break"' not in page, "nothing left to resolve: no form"
        assert "<blockquote" in page and "all agreed" in page  # the note, as staff wrote it
    with signed_in(gateway, gateway.person(Role.PARTNER, "fresh-mart")) as client:
        listing = client.get("/console/partner/statements").text
        assert "Signed off on " in listing and "all agreed" in listing, "the partner reads when, and the note"
        assert "Signed off by" not in listing, "who signed off is the exchange's staff's to know"


def forget_statement(gateway: Gateway, month: str, participant: str) -> None:
    """As after a closing cut while issuing: the participant's statement is not stored yet."""

    async def forget() -> None:
        async with open_services(gateway.settings) as services, services.db.transaction() as session:
            await session.exec(
                text("DELETE FROM issued_statement WHERE period = :p AND participant = :who"),  # type: ignore[call-overload]
                params={"p": month, "who": participant},
            )

    run_async(forget)


def test_the_period_page_says_which_statements_are_not_issued_yet_until_they_are(
    settling: tuple[Gateway, str],
) -> None:
    gateway, month = settling
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as client:
        close_from_console(client, month)
        assert "not issued yet" not in client.get(f"/console/settlement/{month}").text.lower()
        forget_statement(gateway, month, "formosa-air")
        page = client.get(f"/console/settlement/{month}").text
        assert "1 statement is not issued yet." in page
        row = next(row for row in page.split("<tr>") if 'participant-id">formosa-air<' in row)
        assert "Not issued yet" in row
        assert client.get(f"/console/settlement/{month}/statements/formosa-air").status_code == 200  # issues it
        assert "not issued yet" not in client.get(f"/console/settlement/{month}").text.lower()
        forget_statement(gateway, month, "formosa-air")
        close_from_console(
            client, month
        )  # closing a closed period again issues what is missing, and changes nothing else
        assert "not issued yet" not in client.get(f"/console/settlement/{month}").text.lower()


def test_every_participants_figures_cross_foot_across_both_consoles_the_statement_and_the_books(
    settling: tuple[Gateway, str],
) -> None:
    """The month closed, for every participant: the settlement console's period page, the
    statement as issued (JSON and CSV), the partner console's statements list and its books CSV
    show the same totals, each amount naming its currency."""
    gateway, month = settling

    def shown(amount: str) -> str:
        return format_money(Decimal(amount), "TWD", ENGLISH.locale)

    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as client:
        close_from_console(client, month)
        page = client.get(f"/console/settlement/{month}").text
        rows = page.split('<h2 id="positions-heading">')[1].split("<tr>")[2:]
        documents = {}
        for row in rows:
            who = row.split(f"/console/settlement/{month}/statements/")[1].split('"')[0]
            document = json.loads(client.get(f"/console/settlement/{month}/statements/{who}/json").text)
            totals = document["totals"]
            cells = [cell.split(">", 1)[1].split("<")[0] for cell in row.split('class="number"')[1:]]
            assert cells == [shown(totals["receivable"]), shown(totals["payable"]), shown(totals["net"])], who
            figures = {
                row["record"]: row
                for row in csv.DictReader(
                    io.StringIO(client.get(f"/console/settlement/{month}/statements/{who}/csv").text)
                )
            }
            assert {name: figures[name]["amount"] for name in ("payable", "receivable", "net")} == totals, who
            assert {row["currency"] for row in figures.values()} == {document["currency"]} == {"TWD"}
            # The statement page shows its totals by counterparty, as the document carries them.
            statement = client.get(f"/console/settlement/{month}/statements/{who}").text
            by_counterparty = statement.split('id="counterparties-heading"')[1].split("<tbody>")[1].split("</table>")[0]
            numbers = [cell.split(">", 1)[1].split("<")[0] for cell in by_counterparty.split('class="number"')[1:]]
            assert numbers == [
                shown(each[figure])
                for each in document["counterparties"]
                for figure in ("receivable", "payable", "net")
            ], who
            documents[who] = document
        assert sorted(documents) == ["EXCHANGE", "formosa-air", "fresh-mart", "tune-stream", "wallet-pay"]
        assert sum(Decimal(document["totals"]["net"]) for document in documents.values()) == 0
    for who, document in documents.items():
        if who == "EXCHANGE":
            continue
        with signed_in(gateway, gateway.person(Role.PARTNER, who)) as client:
            listing = client.get("/console/partner/statements").text
            row = next(row for row in listing.split("<tr>") if f'/console/partner/statements/{month}"' in row)
            cells = [cell.split(">", 1)[1].split("<")[0] for cell in row.split('class="number"')[1:]]
            totals = document["totals"]
            # In the settlement console's order: the same figures, the same columns.
            assert cells == [shown(totals["receivable"]), shown(totals["payable"]), shown(totals["net"])], who
            assert client.get(f"/console/partner/statements/{month}/statement.json").text == json.dumps(
                document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ), "the stored bytes"
            books = list(csv.DictReader(io.StringIO(client.get(f"/console/partner/books/{month}/books.csv").text)))
            net = next(row for row in books if row["figure"] == "money_net")
            assert (net["amount"], net["currency"]) == (totals["net"], "TWD"), who


def test_settlement_pages_refuse_other_roles_and_forms_without_their_token(settling: tuple[Gateway, str]) -> None:
    gateway, month = settling
    pages = [
        "/console/settlement/",
        f"/console/settlement/{month}",
        f"/console/settlement/{month}/statements/fresh-mart",
    ]
    for person in (gateway.person(Role.ADMIN), gateway.person(Role.PARTNER, "fresh-mart")):
        with signed_in(gateway, person) as client:
            token = form_token(client, "/console/")
            for path in pages:
                assert client.get(path).status_code == 403, (person.role, path)
            close = client.post("/console/settlement/close", data={"csrf_token": token, "period": month})
            assert close.status_code == 403
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as client:
        refused = client.post("/console/settlement/close", data={"period": month})
        assert refused.status_code == 403 and "Nothing was changed" in refused.text
        assert CSRF_FIELD.search(client.get("/console/settlement/").text) is not None
        not_over = client.post(
            "/console/settlement/close",
            data={"csrf_token": form_token(client, "/console/settlement/"), "period": "2999-01"},
        )
        assert not_over.status_code == 400 and "is not over yet" in not_over.text
        assert "close it after then" in not_over.text  # and what to do about it
        # A refusal names the form's field and its rule in the reader's language, not the API's English.
        chinese = {"accept-language": "zh-TW"}
        token = form_token(client, "/console/settlement/")
        bad = client.post("/console/settlement/close", data={"csrf_token": token, "period": "2026-13"}, headers=chinese)
        assert bad.status_code == 400 and "期間必須是年與月，例如 2026-11" in bad.text
        assert "a period is written" not in bad.text
        shown = client.get("/console/settlement/2026-13", headers=chinese)
        assert shown.status_code == 400 and "期間必須是年與月，例如 2026-11" in shown.text
        late = client.post(
            "/console/settlement/close", data={"csrf_token": token, "period": "2999-01"}, headers=chinese
        )
        assert "2999-01 期間尚未結束：結束於 2999年2月1日" in late.text
        # A period not closed yet has no reconciliation to show, said in the reader's language.
        unclosed = client.get("/console/settlement/2999-01/reconciliations/fresh-mart", headers=chinese)
        assert unclosed.status_code == 409 and "2999-01 期間尚未結算" in unclosed.text
        assert "is not closed" not in unclosed.text


def test_a_break_far_into_a_partners_file_names_its_line_with_thousands_grouped(
    settling: tuple[Gateway, str],
) -> None:
    """Staff and the partner read "line 1,002", as every other number on the pages, not "line 1002"."""
    gateway, month = settling
    lines = ["reference,amount", *(f"conversion:unknown-{n},1.00" for n in range(1_000)), "conversion:c5,1.00"]
    reconciliation = f"/console/settlement/{month}/reconciliations/tune-stream"
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as client:
        token = form_token(client, "/console/settlement/")
        headers = {"Content-Type": "text/csv", "X-CSRF-Token": token}
        queued = client.post("/console/settlement/close", data={"csrf_token": token, "period": month})
        if queued.status_code == 303:  # not closed yet by the module's first test
            wait_for_job(client, queued.headers["location"])
        uploaded = client.put(f"{reconciliation}/records", content="\n".join(lines) + "\n", headers=headers)
        assert uploaded.status_code == 200, uploaded.text
        page = client.get(reconciliation, params={"kind": "AMOUNT_MISMATCH"}).text
        assert "conversion:c5" in page and "(line 1,002)" in page
    with signed_in(gateway, gateway.person(Role.PARTNER, "tune-stream")) as client:
        address: str | None = f"/console/partner/statements/{month}/reconciliation"
        while address is not None and "conversion:c5" not in (page := client.get(address).text):
            after = re.search(r'href="(\?after=\d+)"', page)
            address = f"/console/partner/statements/{month}/reconciliation{after[1]}" if after else None
        assert 'conversion:c5</bdi></code><br><span class="muted">line 1,002</span>' in page


def test_staff_see_the_reconciliations_totals_to_the_cent_as_the_partners_console_shows_them(
    settling: tuple[Gateway, str],
) -> None:
    """formosa-air's file repeats c3 and has c4 a cent over and a line the ledger lacks: both
    consoles show its total, the statement's net and the difference the breaks make, in the
    same words (the file named as the reader's), in English and in Chinese."""
    gateway, month = settling
    records = "reference,amount\nconversion:c3,-30.00\nconversion:c3,-30.00\nconversion:c4,24.51\nconversion:x9,1.25\n"
    reconciliation = f"/console/settlement/{month}/reconciliations/formosa-air"
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as client:
        token = form_token(client, "/console/settlement/")
        queued = client.post("/console/settlement/close", data={"csrf_token": token, "period": month})
        assert f"Period {month} is closed." in wait_for_job(client, queued.headers["location"])
        headers = {"Content-Type": "text/csv", "X-CSRF-Token": token}
        assert client.put(f"{reconciliation}/records", content=records, headers=headers).status_code == 200
        staff = {language: facts(client.get(reconciliation, headers=headers).text) for language, headers in LANGUAGES}
        staff_repeats = {
            language: repeated_line(client.get(reconciliation, headers=headers).text) for language, headers in LANGUAGES
        }
    with signed_in(gateway, gateway.person(Role.PARTNER, "formosa-air")) as client:
        address = f"/console/partner/statements/{month}/reconciliation"
        partner = {language: facts(client.get(address, headers=headers).text) for language, headers in LANGUAGES}
        partner_repeats = {
            language: repeated_line(client.get(address, headers=headers).text) for language, headers in LANGUAGES
        }
    # The repeated c3: its ledger amount, as the API and the break report give it, said to be
    # compared on the first line; its difference is its own amount.
    for repeats in (staff_repeats, partner_repeats):
        assert repeats["en"] == ("-NT$30.00", "-NT$30.00 (compared on the reference's first line)", "-NT$30.00")
        assert repeats["zh-TW"][1] == "-NT$30.00 （已於此參考編號的第一行比對）"
    # -60.00 + 24.51 + 1.25; the statement's -30.00 + 24.50; the repeated line, the cent and the extra line.
    assert [staff["en"][term] for term in TOTALS] == ["-NT$34.24", "-NT$5.50", "-NT$28.74"]
    for language, (file_term, *same_terms) in (("en", TOTALS), ("zh-TW", CHINESE_TOTALS)):
        theirs = "Your file's total" if language == "en" else "您檔案的合計"
        assert staff[language][file_term] == partner[language][theirs], language
        for term in same_terms:
            assert staff[language][term] == partner[language][term], (language, term)


def repeated_line(page: str) -> tuple[str, ...]:
    """The amount cells (the file's, the ledger's, the difference) of the break that repeats c3's
    line, as text: the only break of c3, whose first line matched."""
    (row,) = [row for row in page.split("<tr>")[1:] if "conversion:c3" in row and 'class="number"' in row]
    cells = re.findall(r'<td class="number" data-label="[^"]*">(.*?)</td>', row, re.DOTALL)
    return tuple(" ".join(html.unescape(re.sub(r"<[^>]+>", "", cell)).split()) for cell in cells)


LANGUAGES = (("en", {"accept-language": "en"}), ("zh-TW", {"accept-language": "zh-TW"}))
TOTALS = ("Total of the partner's file", "The statement's net", "Difference, which the breaks account for")
CHINESE_TOTALS = ("夥伴檔案的合計", "對帳單淨額", "差額（即各筆差異之和）")


def test_an_uploaded_subtotal_row_and_a_partners_own_columns_are_judged_in_the_readers_language(
    settling: tuple[Gateway, str],
) -> None:
    """A subtotal row among the records was imported as a break; a partner's export naming record
    and transaction columns was refused at line 1 as the statement's CSV uploaded back."""
    gateway, month = settling
    records = f"/console/settlement/{month}/reconciliations/wallet-pay/records"
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as client:
        token = form_token(client, "/console/settlement/")
        queued = client.post("/console/settlement/close", data={"csrf_token": token, "period": month})
        if queued.status_code == 303:  # not closed yet by the module's first test
            wait_for_job(client, queued.headers["location"])
        headers = {"Content-Type": "text/csv", "X-CSRF-Token": token, "Accept-Language": "zh-TW"}
        subtotal = (
            "reference,amount\nconversion:c2,78.40\nconversion:c3,-30.00\nconversion:c1,-100.00\n小計 錢包,-130.00\n"
        )
        refused = client.put(records, content=subtotal.encode(), headers=headers).json()
        assert (refused["code"], refused["line"]) == ("BAD_USER_INPUT", 5), refused
        assert refused["message"] == (
            "第 5 行：reference 欄的 '小計 錢包' 看來是小計列：其金額 -130.00 正是第 3 至 4 行紀錄的總和，"
            f"而帳本在 {month} 期間沒有 wallet-pay 的這個參考編號；請刪除這一列：檔案只放紀錄。未匯入任何內容。"
        )
        export = "Record,Transaction,Reference,Amount\n1,JE-7,conversion:c2,78.4O\n"
        refused = client.put(records, content=export.encode(), headers=headers).json()
        assert (refused["code"], refused["line"]) == ("BAD_USER_INPUT", 2), refused
        assert "不是 TWD 金額" in refused["message"], refused
        assert "No file of this partner has been imported" in client.get(records.removesuffix("/records")).text


def lines_page_by_page(client: httpx.Client, address: str) -> tuple[list[str], list[str]]:
    """Every line reference a statement page shows, following its "Next lines" links from the
    first page, and what each page says it shows."""
    references: list[str] = []
    said: list[str] = []
    page = client.get(address).text
    while True:
        said.append(re.sub(r"\s+", " ", page.split('<nav class="lines-shown"')[1].split("</p>")[0].split("<p>")[1]))
        references += re.findall(r"<bdi>([^<]+:[^<]+)</bdi>", page)
        following = re.search(r'href="\?(after=\d+)" rel="next"', page)
        if following is None:
            return references, said
        next_page = client.get(f"{address}?{following[1]}").text
        previous = re.search(r'href="\?([^"]*)" rel="prev"', next_page)
        assert previous is not None, "each later page links back"
        assert client.get(f"{address}?{previous[1]}").text == page, "to the page before it"
        page = next_page


def test_a_statements_lines_show_a_page_at_a_time_in_both_consoles_and_download_whole(
    settling: tuple[Gateway, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy month's statement holds more lines than a page lays out: both consoles show them
    a page at a time (here 2), saying which, with links to the pages before and after; every
    line is on one page, in the statement's order; a cursor past the last line is refused; the
    downloads hold every line."""
    gateway, month = settling
    monkeypatch.setattr(settlement_pages, "LINES_SHOWN", 2)
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as client:
        close_from_console(client, month)
        address = f"/console/settlement/{month}/statements/formosa-air"
        document = client.get(f"{address}/json").json()
        expected = [line["reference"] for line in document["lines"]]
        assert len(expected) >= 3, "the month gives formosa-air more lines than a page shows"
        shown, said = lines_page_by_page(client, address)
        pages = -(-len(expected) // 2)
        assert shown == expected
        assert said[0] == f"Lines 1 to 2 of {len(expected)}; the downloads hold them all."
        assert len(said) == pages and said[-1].startswith(f"Lines {2 * pages - 1} to ")
        assert len(list(csv.DictReader(io.StringIO(client.get(f"{address}/csv").text)))) > len(expected)
        past = client.get(address, params={"after": str(len(expected))})
        assert past.status_code == 400 and f"the statement has {len(expected)} lines" in past.text
        assert client.get(address, params={"after": "two"}).status_code == 400
        chinese = client.get(address, headers={"accept-language": "zh-TW"}).text
        assert f"第 1 至 2 筆明細，共 {len(expected)} 筆" in chinese and "下一頁明細" in chinese
    with signed_in(gateway, gateway.person(Role.PARTNER, "formosa-air")) as client:
        shown, said = lines_page_by_page(client, f"/console/partner/statements/{month}")
        assert shown == expected and len(said) == pages


def failed_job(gateway: Gateway, period: str, error: str) -> str:
    """A job closing ``period`` that failed for ``error`` (the reason it keeps, in English); its page."""

    async def fail() -> str:
        async with open_services(gateway.settings) as services, services.db.transaction() as session:
            now = services.settlement.clock.now()
            job = await jobs.enqueue_close(session, period, by="console:someone", now=now)
            await jobs.finish(session, job.id, now, error=error)
            return f"/console/settlement/jobs/{job.id}"

    return run_async(fail)


def test_a_failed_closing_job_says_why_in_the_readers_language(settling: tuple[Gateway, str]) -> None:
    """The reason a job keeps is the refusal's English; its page (and the fragment it polls)
    says it in the page's language, as any refusal on the console is said."""
    gateway, _ = settling
    earlier = failed_job(gateway, "2026-09", "period 2026-08 has postings and is not closed: close it first")
    unexpected = failed_job(gateway, "2026-07", "an unexpected error: see the gateway's log")
    chinese = {"accept-language": "zh-TW"}
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as client:
        for path in (earlier, f"{earlier}/progress"):
            page = client.get(path, headers=chinese).text
            assert "結算失敗" in page and "2026-08 期間有入帳且尚未結算：請先將其結算" in page, path
            assert "has postings" not in page, path
        assert "Period 2026-08 has postings and is not closed: close it first" in client.get(earlier).text
        page = client.get(unexpected, headers=chinese).text
        assert "意外錯誤使其中止" in page and "an unexpected error" not in page


def set_archived(gateway: Gateway, month: str, archived: bool) -> None:
    """As `exchange ledger archive` marks the period's close anchor (or, undone, as before it):
    the state the pages read, without detaching the partitions that the module's other tests read."""

    async def mark() -> None:
        async with open_services(gateway.settings) as services, services.db.transaction() as session:
            await session.exec(
                text(
                    "UPDATE ledger_close_anchor SET archived_at = CASE WHEN :archived THEN now() END WHERE period = :p"
                ),  # type: ignore[call-overload]
                params={"p": month, "archived": archived},
            )

    run_async(mark)


def test_an_archived_period_is_said_to_be_archived_and_what_that_leaves_possible(
    settling: tuple[Gateway, str],
) -> None:
    gateway, month = settling
    chinese = {"accept-language": "zh-TW"}
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as client:
        close_from_console(client, month)
        set_archived(gateway, month, True)
        try:
            listing = client.get("/console/settlement/").text
            row = next(row for row in listing.split("<tr>") if f'href="/console/settlement/{month}"' in row)
            assert '<span class="state state--archived">Archived</span>' in row and ">Closed<" not in row
            page = client.get(f"/console/settlement/{month}").text
            assert '<span class="state state--archived">Archived</span>' in page
            assert "the period's ledger lines have left the ledger" in page
            assert "nothing of it can be reconciled, resolved or changed any more" in page
            assert page.count("<svg") == 2, "its figures stay"
            chinese_page = client.get(f"/console/settlement/{month}", headers=chinese).text
            assert "已封存" in chinese_page and "此期間的帳本明細已移出帳本" in chinese_page
            assert "Archived" not in chinese_page
        finally:
            set_archived(gateway, month, False)
        assert '<span class="state state--closed">Closed</span>' in client.get(f"/console/settlement/{month}").text


def closing_meanwhile(gateway: Gateway, period: str, *, with_job: bool) -> str | None:
    """``period`` left CLOSING, as while a closer works on it, and (``with_job``) a job of the
    console running it, its runner alive; the job's id."""

    async def start() -> str | None:
        async with open_services(gateway.settings) as services, services.db.transaction() as session:
            now = services.settlement.clock.now()
            session.add(
                SettlementPeriod(period=period, status="CLOSING", closing_started_at=now, closed_by="console:ana")
            )
            if not with_job:
                return None
            job = SettlementJob(
                id=str(uuid.uuid4()),
                kind=jobs.CLOSE_PERIOD,
                subject=period,
                state="RUNNING",
                progress=40,
                requested_by="console:ana",
                requested_at=now,
                started_at=now,
                heartbeat_at=now,
            )
            session.add(job)
            return job.id

    return run_async(start)


def forget_closing(gateway: Gateway, period: str) -> None:
    async def forget() -> None:
        async with open_services(gateway.settings) as services, services.db.transaction() as session:
            for table in ("settlement_job", "settlement_period"):
                column = "subject" if table == "settlement_job" else "period"
                await session.exec(text(f"DELETE FROM {table} WHERE {column} = :p"), params={"p": period})  # type: ignore[call-overload]

    run_async(forget)


@pytest.mark.parametrize("with_job", [True, False], ids=["job-running", "no-job"])
def test_a_closing_periods_page_links_to_the_job_closing_it(settling: tuple[Gateway, str], with_job: bool) -> None:
    gateway, _ = settling
    period = "2999-01"
    job_id = closing_meanwhile(gateway, period, with_job=with_job)
    try:
        with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as client:
            page = client.get(f"/console/settlement/{period}").text
            assert '<span class="state state--closing">Closing</span>' in page
            chinese = client.get(f"/console/settlement/{period}", headers={"accept-language": "zh-TW"}).text
            if with_job:
                assert f'<a href="/console/settlement/jobs/{job_id}">Closing {period} is under way' in page
                assert f"{period} 正在結算中：查看其進度" in chinese
                assert "Closing 2999-01" in client.get(f"/console/settlement/jobs/{job_id}").text
            else:
                assert "/console/settlement/jobs/" not in page
                assert "closing the period again finishes it" in page and "再次結算此期間即可完成" in chinese
    finally:
        forget_closing(gateway, period)


def test_every_refusal_of_the_reconciliation_forms_is_said_in_the_readers_language(
    settling: tuple[Gateway, str],
) -> None:
    """Refusals only a form made by hand (or a typed address) reaches, said in Chinese as the
    forms' other refusals are, never in the service's English."""
    gateway, month = settling
    chinese = {"accept-language": "zh-TW"}
    path = f"/console/settlement/{month}/reconciliations/tune-stream"
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as client:
        close_from_console(client, month)
        token = form_token(client, "/console/settlement/")
        upload = {"X-CSRF-Token": token, **chinese}
        assert (
            client.put(
                f"{path}/records", content=RECORDS_OF_TUNE_STREAM, headers={"Content-Type": "text/csv", **upload}
            ).status_code
            == 200
        )
        shown = re.search(r'name="reconciliation" value="([^"]+)"', client.get(path).text)
        assert shown is not None
        form = {"csrf_token": token, "reconciliation": shown[1], "reason": "checked"}
        said = {
            "break ids are numbers": ({**form, "scope": "selected", "break": "one"}, "差異以其編號選取"),
            "no class of break is called": (
                {**form, "scope": "filter", "kind": "NOPE"},
                "沒有名為 <bdi>'NOPE'</bdi> 的差異類別",
            ),
            "accepting the ledger's figure posts nothing": (
                {**form, "scope": "filter", "resolution": "ACCEPT_LEDGER", "adjust_against": "wallet-pay"},
                "採用帳本金額不會入帳任何內容",
            ),
        }
        for english, (data, words) in said.items():
            refused = client.post(f"{path}/resolve", data={"resolution": "ACCEPT_LEDGER", **data}, headers=chinese)
            assert refused.status_code == 400 and words in html.unescape(refused.text), english
            assert english not in html.unescape(refused.text), english
        plain = client.put(
            f"{path}/records", content=b"reference,amount\n", headers={"Content-Type": "text/plain", **upload}
        )
        assert plain.status_code == 415 and plain.json()["message"] == "請以 CSV 檔案（text/csv）傳送紀錄"
        utf16 = client.put(
            f"{path}/records",
            content="reference,amount\n".encode("utf-16"),
            headers={"Content-Type": "text/csv; charset=utf-16", **upload},
        )
        assert utf16.status_code == 415
        assert utf16.json()["message"] == "紀錄以 UTF-8 讀取，而非上傳所宣告的字元集 'utf-16'：請另存為「CSV UTF-8」"
        gzipped = client.put(
            f"{path}/records",
            content=gzip.compress(b"reference,amount\n"),
            headers={"Content-Type": "text/csv", "Content-Encoding": "gzip", **upload},
        )
        assert gzipped.status_code == 415
        assert gzipped.json()["message"] == "紀錄依傳送的內容讀取，不會解開上傳所宣告的壓縮 'gzip'：請直接傳送原檔案"
        early = client.post(
            "/console/settlement/close", data={"csrf_token": token, "period": "1969-12"}, headers=chinese
        )
        assert early.status_code == 400 and "期間必須在 1970 至 8999 年之間" in early.text
        assert "a period falls in the years" not in early.text


def test_the_exchange_has_no_reconciliation_to_upload_records_to(settling: tuple[Gateway, str]) -> None:
    """Its page offered an upload form, which the upload then refused: the page says why instead."""
    gateway, month = settling
    path = f"/console/settlement/{month}/reconciliations/EXCHANGE"
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as client:
        close_from_console(client, month)
        for language, why in (
            ("en", "The exchange has no reconciliation of its own"),
            ("zh-TW", "交換平台沒有自己的對帳"),
        ):
            page = client.get(path, headers={"accept-language": language})
            assert page.status_code == 404 and why in html.unescape(page.text), language
            assert 'id="upload"' not in page.text and "/records" not in page.text, language


def test_an_unknown_participant_is_named_in_the_readers_words_not_by_the_apis_argument(
    settling: tuple[Gateway, str],
) -> None:
    gateway, month = settling
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as client:
        close_from_console(client, month)
        for kind in ("statements", "reconciliations"):
            for language, said in (("en", "Participant: no such program"), ("zh-TW", "參與者：沒有這個計畫")):
                page = client.get(f"/console/settlement/{month}/{kind}/nope", headers={"accept-language": language})
                assert page.status_code == 404 and said in page.text, (kind, language)
                assert "partnerId" not in page.text, (kind, language)


#: tune-stream's file of the month: c5 agrees; one line the ledger lacks.
RECORDS_OF_TUNE_STREAM = "reference,amount\nconversion:c5,-12.00\nconversion:t1,3.00\n"


def test_a_program_loaded_after_the_month_closed_reads_its_books_of_the_month_as_closed(
    settling: tuple[Gateway, str], tmp_path: Path
) -> None:
    """The month's closing fixed no point value of the program's: its books are valued at
    today's declared value, and the page says the month is closed, not open."""
    gateway, month = settling
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as client:
        close_from_console(client, month)
    partners = tmp_path / "partners"
    shutil.copytree(SAMPLE_PARTNERS, partners)
    late = (partners / "tune-stream.toml").read_text().replace('id = "tune-stream"', 'id = "late-joiner"', 1)
    (partners / "late-joiner.toml").write_text(late.replace("tune-stream-premium-month", "late-joiner-premium-month"))
    settings = gateway.settings.model_copy(update={"partners_dir": partners, "environment": "development"})
    run_async(lambda: load_partners_directory(settings))
    with signed_in(gateway, gateway.person(Role.PARTNER, "late-joiner")) as client:
        page = html.unescape(client.get(f"/console/partner/books/{month}").text)
        assert "the period is closed, but no value of your program's was fixed when it closed" in page
        assert "the period is open" not in page
        chinese = client.get(f"/console/partner/books/{month}", headers={"accept-language": "zh-TW"}).text
        assert "此期間已結算" in chinese and "期間尚未結算" not in chinese
        exported = client.get(f"/console/partner/books/{month}/books.csv").text
        assert f"late-joiner,{month},period_status,,CLOSED," in exported


def test_what_the_guard_refuses_before_a_page_sees_it_is_said_in_the_readers_language(
    settling: tuple[Gateway, str],
) -> None:
    """A cursor no link gives, one past a statement's lines, a value sent twice, a NUL in a
    form: refused before any service sees them, said in Chinese on a Chinese page."""
    gateway, month = settling
    chinese = {"accept-language": "zh-TW"}
    reconciliation = f"/console/settlement/{month}/reconciliations/fresh-mart"
    statement = f"/console/settlement/{month}/statements/fresh-mart"
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as client:
        close_from_console(client, month)
        token = form_token(client, "/console/settlement/")
        said = {
            "after must be the number": (
                client.get(reconciliation, params={"after": "x"}, headers=chinese),
                "after 必須是頁面連結所給的數字",
            ),
            "was sent 2 times": (
                client.get(reconciliation, params=[("after", "1"), ("after", "2")], headers=chinese),
                "after 送出了 2 次：它只接受一個值",
            ),
            "the statement has": (client.get(statement, params={"after": "9999"}, headers=chinese), "after 必須小於"),
            "holds a NUL character": (
                client.post(
                    f"{reconciliation}/resolve", data={"csrf_token": token, "reason": "a\x00b"}, headers=chinese
                ),
                "reason 含有 NUL 字元：請移除",
            ),
        }
        for english, (refused, words) in said.items():
            text = html.unescape(refused.text)
            assert refused.status_code == 400 and words in text and english not in text, english
