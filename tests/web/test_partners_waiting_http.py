"""The console's page of what waits on partners, over HTTP: a conversion whose credit a partner
keeps failing shows to settlement staff, by the partner's name, with why, in the reader's
language; partner staff are refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col

from exchange.auth.scopes import Role
from exchange.conversions.models import Conversion, ConversionStatus, SagaStep
from exchange.db.database import Database
from tests.web.conftest import PortalGateway, run_async
from tests.web.portal_flows import ask_quote, convert_form
from tests.web.test_console_http import signed_in
from tests.web.test_portal_convert_http import linked_member

PAGE = "/console/partners-waiting"
UNREACHABLE = "partner formosa-air: credit: cannot connect"


@pytest.fixture
def client(portal_gateway: PortalGateway) -> Iterator[httpx.Client]:
    with portal_gateway.gateway.client() as client:
        yield client


def failing_credit(portal_gateway: PortalGateway, conversion_id: str) -> None:
    """Leave the conversion as four attempts at a credit Formosa Air could not be reached for
    leave it, next tried tomorrow (so the gateway's recovery leaves it alone meanwhile)."""

    async def run() -> None:
        db = Database.from_url(portal_gateway.gateway.settings.database_url)
        try:
            async with db.transaction() as session:
                await session.exec(  # type: ignore[call-overload]
                    update(Conversion)
                    .where(col(Conversion.id) == conversion_id)
                    .values(
                        status=ConversionStatus.PENDING,
                        step=SagaStep.CREDIT,
                        attempts=4,
                        last_error=UNREACHABLE,
                        next_attempt_at=datetime.now(UTC) + timedelta(days=1),
                        finished_at=None,
                    )
                )
        finally:
            await db.dispose()

    run_async(run)


def test_staff_see_a_credit_a_partner_keeps_failing_by_name_and_partner_staff_are_refused(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    gateway = portal_gateway.gateway
    linked_member(portal_gateway, client, also_sign_in=False)
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 1_000)
    converted = client.post(quote_page, data=convert_form(client, quote_page))
    conversion_id = converted.headers["location"].rsplit("/", 1)[1]
    failing_credit(portal_gateway, conversion_id)

    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as staff:
        page = staff.get(PAGE)
        assert page.status_code == 200
        failing = page.text.split('id="failing-heading"')[1].split('id="pending-heading"')[0]
        row = failing.split(conversion_id)[1].split("</tr>")[0]
        assert 'Formosa Air Miles <code class="rule-code">formosa-air</code>' in row
        assert '<code class="rule-code">CREDIT</code>' in row and ">4<" in row
        assert UNREACHABLE in row
        assert f'href="{PAGE}"' in staff.get("/console/settlement/").text, "the console's menu leads to it"

        chinese = staff.get(PAGE, headers={"accept-language": "zh-TW"}).text
        assert "<h1>等待合作夥伴</h1>" in chinese
        row = chinese.split(conversion_id)[1].split("</tr>")[0]
        assert f'<span lang="en">{UNREACHABLE}</span>' in row, "the exchange's English detail is marked as such"

    for person in (gateway.person(Role.PARTNER, "formosa-air"), gateway.person(Role.ADMIN)):
        with signed_in(gateway, person) as other:
            assert other.get(PAGE).status_code == 403, person.role
