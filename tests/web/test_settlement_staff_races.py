"""Settlement staff at work on a partner's reconciliation, two at once: a form sent from a page
that a colleague's later import has made stale changes nothing, and says so in the reader's
language; a form that does not say which breaks it means, or is refused, changes nothing and
comes back as it was sent."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from exchange.auth.scopes import Role
from exchange.testing.databases import PostgresDatabases
from tests.web.conftest import Gateway
from tests.web.settlement_month import CSRF_FIELD, RECORDS, settling_gateway
from tests.web.test_console_http import form_token, signed_in
from tests.web.test_settlement_http import close_from_console

SHOWN_RECONCILIATION = re.compile(r'name="reconciliation" value="([^"]+)"')
REPLACED = "were imported again since the page was shown"


@pytest.fixture(scope="module")
def settling(postgres_databases: PostgresDatabases) -> Iterator[tuple[Gateway, str]]:
    yield from settling_gateway(postgres_databases)


def page_form(client: httpx.Client, path: str) -> dict[str, str]:
    """What a reconciliation page's forms carry: the CSRF token, and the reconciliation shown."""
    page = client.get(path).text
    token, shown = CSRF_FIELD.search(page), SHOWN_RECONCILIATION.search(page)
    assert token is not None and shown is not None, page
    return {"csrf_token": token[1], "reconciliation": shown[1]}


def upload(client: httpx.Client, path: str, records: str, token: str) -> int:
    """Import ``records`` as the page's script does; the breaks left open."""
    uploaded = client.put(
        f"{path}/records", content=records, headers={"Content-Type": "text/csv", "X-CSRF-Token": token}
    )
    assert uploaded.status_code == 200, uploaded.text
    return int(uploaded.json()["unresolvedBreaks"])


def open_breaks(client: httpx.Client, path: str) -> str:
    found = re.search(r'<dd id="open-breaks">([^<]+)</dd>', client.get(path).text)
    assert found is not None
    return found[1]


def test_resolving_from_a_page_a_later_import_replaced_resolves_nothing(settling: tuple[Gateway, str]) -> None:
    """Ana reviews fresh-mart's breaks; Ben imports a corrected file meanwhile; Ana's "every
    open break the filter shows" resolves none of the new import's breaks, which she never
    saw, and says why; sent again from the page as it is now, it resolves them."""
    gateway, month = settling
    path = f"/console/settlement/{month}/reconciliations/fresh-mart"
    with (
        signed_in(gateway, gateway.person(Role.SETTLEMENT)) as ana,
        signed_in(gateway, gateway.person(Role.SETTLEMENT)) as ben,
    ):
        close_from_console(ana, month)
        assert upload(ana, path, RECORDS, form_token(ana, "/console/settlement/")) == 5
        seen = page_form(ana, path)
        corrected = RECORDS.replace("conversion:x2,7.50,tune-stream\n", "")
        assert upload(ben, path, corrected, page_form(ben, path)["csrf_token"]) == 4
        every = {**seen, "scope": "filter", "resolution": "ACCEPT_LEDGER", "reason": "agreed"}
        stale = ana.post(f"{path}/resolve", data=every)
        assert stale.status_code == 409 and REPLACED in stale.text and "nothing was changed" in stale.text
        assert open_breaks(ana, path) == "4"
        chinese = ana.post(f"{path}/resolve", data=every, headers={"accept-language": "zh-TW"})
        assert chinese.status_code == 409 and "was replaced by a later import" not in chinese.text
        assert "未變更任何內容" in chinese.text
        resolved = ana.post(f"{path}/resolve", data={**every, **page_form(ana, path)})
        assert resolved.status_code == 303 and "resolved%3A4" in resolved.headers["location"]


def test_signing_off_from_a_page_a_later_import_replaced_signs_nothing_off(settling: tuple[Gateway, str]) -> None:
    """tune-stream's file agrees with the ledger and Ana opens its sign-off; Ben imports another
    file meanwhile: Ana's sign-off is refused (she has not seen what she would sign off), and
    the period stays open to sign off from the page as it is now."""
    gateway, month = settling
    path = f"/console/settlement/{month}/reconciliations/tune-stream"
    agreeing = "reference,amount,counterparty\nconversion:c5,-12.00,fresh-mart\n"
    with (
        signed_in(gateway, gateway.person(Role.SETTLEMENT)) as ana,
        signed_in(gateway, gateway.person(Role.SETTLEMENT)) as ben,
    ):
        close_from_console(ana, month)
        assert upload(ana, path, agreeing, form_token(ana, "/console/settlement/")) == 0
        seen = page_form(ana, path)
        token = form_token(ben, path)
        assert upload(ben, path, agreeing + "conversion:x7,3.00,fresh-mart\n", token) == 1
        assert upload(ben, path, agreeing, token) == 0
        stale = ana.post(f"{path}/sign-off", data={**seen, "note": "all agreed"})
        assert stale.status_code == 409 and REPLACED in stale.text
        assert "Signed off by" not in ana.get(path).text
        signed = ana.post(f"{path}/sign-off", data={**page_form(ana, path), "note": "all agreed"})
        assert signed.status_code == 303 and "Signed off by" in ana.get(path).text


def test_a_resolve_form_that_does_not_say_which_breaks_resolves_none(settling: tuple[Gateway, str]) -> None:
    """The page's form says whether it means the breaks ticked or every open break the filter
    shows; one saying neither (hand-made, or from an older page) is refused, not taken for all."""
    gateway, month = settling
    path = f"/console/settlement/{month}/reconciliations/wallet-pay"
    records = "reference,amount\nconversion:c2,40.00\nconversion:x3,1.00\n"
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as ana:
        close_from_console(ana, month)
        opened = upload(ana, path, records, form_token(ana, "/console/settlement/"))
        assert opened > 0
        form = {**page_form(ana, path), "resolution": "ACCEPT_LEDGER", "reason": "agreed"}
        for scope in ({}, {"scope": "everything"}):
            refused = ana.post(f"{path}/resolve", data={**form, **scope}, headers={"accept-language": "zh-TW"})
            assert refused.status_code == 400 and "請選擇處理哪些差異" in refused.text, scope
        assert open_breaks(ana, path) == str(opened)


def test_a_refused_resolve_form_comes_back_as_it_was_sent(settling: tuple[Gateway, str]) -> None:
    """Refused, the form keeps the breaks ticked, the choice to adjust, its counterparty and
    the reason: sending it again after correcting the counterparty adjusts, and does not fall
    back to accepting the ledger's figure for breaks no longer ticked."""
    gateway, month = settling
    path = f"/console/settlement/{month}/reconciliations/formosa-air"
    records = "reference,amount\nconversion:c3,-30.00\nconversion:c4,24.51\nconversion:x9,1.25\n"
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as ana:
        close_from_console(ana, month)
        assert upload(ana, path, records, form_token(ana, "/console/settlement/")) == 2
        ticked = re.findall(r'name="break" value="(\d+)"', ana.get(path).text)[:1]
        form = {**page_form(ana, path), "scope": "selected", "break": ticked, "resolution": "ADJUST"}
        sent = {**form, "adjust_against": "fresh-mrat", "reason": "c4 a cent over"}
        refused = ana.post(f"{path}/resolve", data=sent)
        page = re.sub(r"\s+", " ", refused.text)
        assert refused.status_code == 400 and "Counterparty of the adjustments: no such program" in page
        assert f'value="{ticked[0]}" id="break-{ticked[0]}" checked' in page
        assert 'name="resolution" value="ADJUST" checked' in page
        assert 'name="resolution" value="ACCEPT_LEDGER" checked' not in page
        assert 'name="adjust_against" value="fresh-mrat"' in page and 'value="c4 a cent over"' in page
        assert open_breaks(ana, path) == "2"


def test_a_refused_resolve_form_keeps_the_filter_it_was_sent_under(settling: tuple[Gateway, str]) -> None:
    """Every open break the filter shows, refused for want of a reason: the page shown lists
    the filter's breaks and its form keeps that filter, so that sent again with a reason it
    resolves them, not every open break of every class."""
    gateway, month = settling
    path = f"/console/settlement/{month}/reconciliations/wallet-pay"
    records = "reference,amount\nconversion:c1,-100.00\nconversion:c2,39.00\nconversion:x1,2.00\n"
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as ana:
        close_from_console(ana, month)
        assert upload(ana, path, records, form_token(ana, "/console/settlement/")) == 3
        form = {**page_form(ana, path), "scope": "filter", "resolution": "ACCEPT_LEDGER", "reason": ""}
        refused = ana.post(f"{path}/resolve", data={**form, "kind": "MISSING_IN_LEDGER"})
        assert refused.status_code == 400
        page = re.sub(r"\s+", " ", refused.text)
        assert '<input type="hidden" name="kind" value="MISSING_IN_LEDGER">' in page
        assert '<option value="MISSING_IN_LEDGER" selected>' in page
        assert "conversion:x1" in page and "conversion:c2" not in page, "the filter's breaks"
        again = dict(re.findall(r'<input type="hidden" name="(kind|counterparty)" value="([^"]*)">', page))
        resolved = ana.post(f"{path}/resolve", data={**form, **again, "reason": "not ours"})
        assert resolved.status_code == 303 and "resolved%3A1" in resolved.headers["location"]
        assert open_breaks(ana, path) == "2"


def language_link(page: str, tag: str) -> str:
    found = re.search(rf'href="([^"]*)" lang="{tag}"', page)
    assert found is not None
    return found[1].replace("&amp;", "&")


def test_a_refused_forms_language_links_lead_to_its_page(settling: tuple[Gateway, str]) -> None:
    """A refused form is shown at the address it was sent to, which answers only its POST: the
    page's language links lead to the page the form is on (the periods; the reconciliation,
    under the filter it was sent under), in the language chosen."""
    gateway, month = settling
    path = f"/console/settlement/{month}/reconciliations/formosa-air"
    records = "reference,amount\nconversion:c3,-30.00\nconversion:x9,1.25\n"
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as ana:
        close_from_console(ana, month)  # in English: following a language link keeps the language chosen
        token = form_token(ana, "/console/settlement/")
        not_over = ana.post("/console/settlement/close", data={"csrf_token": token, "period": "2999-01"})
        assert not_over.status_code == 400
        periods = ana.get(language_link(not_over.text, "zh-TW"))
        assert periods.status_code == 200 and "<h1>結算期間</h1>" in periods.text
        assert upload(ana, path, records, token) > 0
        form = {**page_form(ana, path), "scope": "filter", "resolution": "ACCEPT_LEDGER", "reason": ""}
        refused = ana.post(f"{path}/resolve", data={**form, "kind": "MISSING_IN_LEDGER"})
        assert refused.status_code == 400
        link = language_link(refused.text, "zh-TW")
        assert link.startswith(f"{path}?")
        shown = ana.get(link)
        assert shown.status_code == 200 and '<option value="MISSING_IN_LEDGER" selected>' in shown.text
        assert "conversion:x9" in shown.text and "conversion:c3" not in shown.text
