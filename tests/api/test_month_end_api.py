"""A partner's finance team closing last month by partners/SETTLEMENT.md's words alone: its
statement query, its verification code and its upload mutation, run as the document prints
them against a real gateway, and the figures they give agree to the cent."""

from __future__ import annotations

import asyncio
import re
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest

from exchange.auth.scopes import Role
from tests.api.conftest import ExchangeKit
from tests.api.test_settlement_api import close
from tests.conftest import REPO_ROOT

GUIDE = (REPO_ROOT / "partners" / "SETTLEMENT.md").read_text()


def block(language: str, containing: str) -> str:
    """The guide's fenced ``language`` block that holds ``containing``."""
    found = [text for text in re.findall(rf"```{language}\n(.*?)```", GUIDE, re.S) if containing in text]
    assert len(found) == 1, f"one {language} block with {containing!r} in partners/SETTLEMENT.md"
    return found[0]


def verify_as_the_guide_says(issuer: str, period: str, folder: Path) -> None:
    """Run the guide's verification code, with the exchange's address and the period put where
    it says, reading the downloads from ``folder``; it raises if a check fails."""
    code = block("python", "statement-keys.json")
    code = code.replace('ISSUER = "https://exchange.example"', f"ISSUER = {issuer!r}")
    code = code.replace('"fresh-mart", "2026-11"', f'"fresh-mart", {period!r}')
    assert code.count('open(f"statement-') == 2, "the guide opens the two downloads"
    code = code.replace('open(f"statement-', f'open(f"{folder}/statement-')
    exec(compile(code, "partners/SETTLEMENT.md", "exec"), {})  # the guide's own code


async def test_a_partner_gets_verifies_and_reconciles_its_statement_as_the_guide_says(
    kit: ExchangeKit, last_month: str, tmp_path: Path
) -> None:
    await close(kit, last_month)
    token = await kit.partner_token("fresh-mart")
    statement = (await kit.data(block("graphql", "statement(partnerId"), token, period=last_month))["statement"]
    assert statement["netAmount"] == {"amount": "98.00", "currency": "TWD"}
    # The coalition point's liability, as the guide asks for it: points × pointValue, half-even.
    liability = statement["coalitionLiability"]
    value = (liability["points"] * Decimal(liability["pointValue"])).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
    assert liability["liability"] == {"amount": str(value), "currency": "TWD"}
    (tmp_path / f"statement-fresh-mart-{last_month}.jws").write_text(statement["jws"])
    (tmp_path / f"statement-fresh-mart-{last_month}.json").write_bytes(statement["json"].encode())
    await asyncio.to_thread(verify_as_the_guide_says, kit.settings.issuer_url, last_month, tmp_path)

    # One figure a cent off, repeated: the guide's mutation shows where, and that the totals bridge.
    records = "reference,amount\nconversion:c1,98.01\nconversion:c1,98.01\n"
    upload = block("graphql", "importPartnerRecords").replace('"2026-11"', f'"{last_month}"')
    imported = (await kit.data(upload, token, csv=records))["importPartnerRecords"]
    assert [
        (found["kind"], found["line"], found["partnerValue"]["amount"], found["differenceValue"]["amount"])
        for found in imported["breaks"]
    ] == [("AMOUNT_MISMATCH", 2, "98.01", "0.01"), ("DUPLICATE", 3, "98.01", "98.01")]
    assert imported["ledgerTotal"] == statement["netAmount"]
    assert (imported["recordsTotal"]["amount"], imported["totalDifference"]["amount"]) == ("196.02", "98.02")
    assert Decimal(imported["recordsTotal"]["amount"]) - Decimal(imported["ledgerTotal"]["amount"]) == Decimal(
        imported["totalDifference"]["amount"]
    )

    staff = await kit.staff_token(Role.SETTLEMENT)
    seen = await kit.data(
        'query($p: String!) { reconciliation(partnerId: "fresh-mart", period: $p) { recordsTotal { amount } ledgerTotal { amount } totalDifference { amount } } }',
        staff,
        p=last_month,
    )
    assert seen["reconciliation"] == {
        "recordsTotal": {"amount": "196.02"},
        "ledgerTotal": {"amount": "98.00"},
        "totalDifference": {"amount": "98.02"},
    }


@pytest.mark.parametrize("changed", ["a figure", "another month"])
async def test_the_guides_verification_refuses_a_statement_that_is_not_the_one_signed(
    kit: ExchangeKit, last_month: str, tmp_path: Path, changed: str
) -> None:
    await close(kit, last_month)
    token = await kit.partner_token("fresh-mart")
    statement = (await kit.data(block("graphql", "statement(partnerId"), token, period=last_month))["statement"]
    # Another month's statement saved under this month's name verifies, and is still refused.
    asked_for = last_month if changed == "a figure" else "1999-01"
    (tmp_path / f"statement-fresh-mart-{asked_for}.jws").write_text(statement["jws"])
    kept = statement["json"].replace('"98.00"', '"98.01"') if changed == "a figure" else statement["json"]
    (tmp_path / f"statement-fresh-mart-{asked_for}.json").write_bytes(kept.encode())
    with pytest.raises(AssertionError):
        await asyncio.to_thread(verify_as_the_guide_says, kit.settings.issuer_url, asked_for, tmp_path)
