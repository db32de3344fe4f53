"""Walking the portal's sign-in over HTTP as a browser would: the portal, the partner's page,
and back."""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from sqlalchemy import create_engine, inspect, text, update
from sqlmodel import SQLModel, col

from exchange.db.database import Database
from exchange.db.migrate import sync_database_url
from exchange.pricing import rates
from tests.web.conftest import Gateway, PortalGateway, run_async
from tests.web.portal_partners import PIN

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
HIDDEN = re.compile(r'<input type="hidden" name="(state|redirect_uri)" value="([^"]+)">')
BACK_FORM = re.compile(r'<form id="back" method="post" action="([^"]+)">')
BACK_FIELD = re.compile(r'<input type="hidden" name="(state|assertion|error)" value="([^"]+)">')
LANGUAGE_LINK = re.compile(r'<a href="([^"]+)" lang="([^"]+)" hreflang=')


def language_link(page: str, tag: str) -> str:
    """The address ``page``'s language link for ``tag`` leads to, as a browser follows it."""
    links = {language: html.unescape(href) for href, language in LANGUAGE_LINK.findall(page)}
    return links[tag]


def csrf_token(client: httpx.Client, path: str = "/portal/sign-in") -> str:
    match = CSRF_FIELD.search(client.get(path).text)
    assert match is not None, path
    return match[1]


def partner_page(client: httpx.Client, program_id: str, *, token_path: str = "/portal/sign-in") -> str:
    """Start a sign-in through ``program_id``; the partner's sign-in page address."""
    client.get(token_path)  # the page with the link, as a browser would have it open
    started = client.get(f"/portal/sign-in/{program_id}")
    assert started.status_code == 303, started.text
    return started.headers["location"]


def answer_partner(client: httpx.Client, page_url: str, member_ref: str, pin: str = PIN) -> httpx.Response:
    """Fill in the partner's sign-in page; its answer (a redirect back, or the page again)."""
    page = client.get(page_url)
    assert page.status_code == 200, page.text
    hidden = dict(HIDDEN.findall(page.text))
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(page_url))
    return client.post(
        f"{origin}/member-sign-in", data={**hidden, "member": member_ref, "pin": pin, "action": "sign-in"}
    )


@dataclass(frozen=True)
class PostBack:
    """What the partner's page posts back to the portal."""

    url: str
    fields: dict[str, str]

    def send(self, client: httpx.Client, **changes: str) -> httpx.Response:
        return client.post(self.url, data={**self.fields, **changes})


def post_back(response: httpx.Response) -> PostBack:
    """The form the partner's answer posts back to the exchange."""
    assert response.status_code == 200, response.text
    action = BACK_FORM.search(response.text)
    assert action is not None, response.text
    return PostBack(
        html.unescape(action[1]), {name: html.unescape(value) for name, value in BACK_FIELD.findall(response.text)}
    )


def sign_in(
    client: httpx.Client, program_id: str, member_ref: str, *, token_path: str = "/portal/sign-in", pin: str = PIN
) -> None:
    """Sign in (or, signed in already, sign in through one more partner) as ``member_ref``."""
    back = post_back(answer_partner(client, partner_page(client, program_id, token_path=token_path), member_ref, pin))
    landed = back.send(client)
    assert landed.status_code == 200 and 'id="continue"' in landed.text, landed.text


def linked_member(
    portal: PortalGateway,
    client: httpx.Client,
    *,
    points: int = 5_000,
    miles: int = 4_000,
    air_tier: str | None = None,
    csrf_page: str = "/portal/",
) -> str:
    """A member signed in through FreshMart (``points``) with a Formosa Air account linked
    (``miles``, at ``air_tier``, the partner's default if none), the link's form read from
    ``csrf_page``."""
    member_ref = portal.partners.new_member("fresh-mart", balance=points)
    portal.partners.add_member("formosa-air", member_ref, balance=miles, tier=air_tier)
    sign_in(client, "fresh-mart", member_ref)
    form = {"csrf_token": csrf_token(client, csrf_page), "program": "formosa-air", "member_ref": member_ref}
    assert client.post("/portal/accounts/link", data={**form, "verification": PIN}).status_code == 303
    return member_ref


CONTINUE_LINK = re.compile(r'<a href="([^"]+)" id="continue">')


def sign_in_by_link(client: httpx.Client, page: str, program_id: str, member_ref: str) -> str:
    """Follow ``page``'s link to sign in through ``program_id`` to the end, as a member does;
    the page the portal then goes on to."""
    link = re.search(rf'href="(/portal/sign-in/{re.escape(program_id)}(?:\?[^"]*)?)"', page)
    assert link is not None, page
    started = client.get(html.unescape(link[1]))
    assert started.status_code == 303, started.text
    landed = post_back(answer_partner(client, started.headers["location"], member_ref)).send(client)
    going_on = CONTINUE_LINK.search(landed.text)
    assert landed.status_code == 200 and going_on is not None, landed.text
    return html.unescape(going_on[1])


QUOTE_PATH = re.compile(r"^/portal/convert/quotes/([0-9a-f-]{36})$")
IDEMPOTENCY_FIELD = re.compile(r'name="idempotency_key" value="([^"]+)"')


def ask_quote(client: httpx.Client, from_program: str, to_program: str, points: int) -> str:
    """The address of a new quote's page."""
    form = {
        "csrf_token": csrf_token(client, "/portal/convert"),
        "from_program": from_program,
        "to_program": to_program,
        "points": str(points),
    }
    asked = client.post("/portal/convert", data=form)
    assert asked.status_code == 303, asked.text
    location = asked.headers["location"]
    assert QUOTE_PATH.match(location), location
    return str(location)


def convert_form(client: httpx.Client, quote_page: str) -> dict[str, str]:
    """The convert form of a quote's page, as rendered (its idempotency key included)."""
    page = client.get(quote_page).text
    key = IDEMPOTENCY_FIELD.search(page)
    token = CSRF_FIELD.search(page)
    assert key is not None and token is not None
    return {"csrf_token": token[1], "idempotency_key": key[1]}


def rows_per_table(database_url: str) -> dict[str, int]:
    """How many rows each table holds (a refusal must leave them all as they were)."""
    engine = create_engine(sync_database_url(database_url))
    try:
        with engine.connect() as connection:
            tables = inspect(connection).get_table_names()
            return {table: connection.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one() for table in tables}
    finally:
        engine.dispose()


@contextlib.contextmanager
def pair_limits(database_url: str, source: str, target: str, **limits: int | None) -> Iterator[None]:
    """The rate in force from ``source`` into ``target`` with its own ``limits`` (as a partner's
    rate sets them) while the block runs; as it was after."""

    async def set_to(values: dict[str, int | None]) -> dict[str, int | None]:
        db = Database.from_url(database_url)
        try:
            async with db.transaction() as session:
                version = await rates.version_at(session, source, target, datetime.now(UTC))
                before = {name: getattr(version, name) for name in values}
                for name, value in values.items():
                    setattr(version, name, value)
                session.add(version)
                return before
        finally:
            await db.dispose()

    before = run_async(lambda: set_to(limits))
    try:
        yield
    finally:
        run_async(lambda: set_to(before))


def recorded_as(gateway: Gateway, model: type[SQLModel], row_id: str, **values: object) -> None:
    """The ``model`` row ``row_id`` (a conversion, a redemption) rewritten with ``values``, as
    the saga leaves it in a case a sandbox cannot be made to play from the portal."""

    async def rewrite() -> None:
        db = Database.from_url(gateway.settings.database_url)
        try:
            async with db.transaction() as session:
                await session.exec(  # type: ignore[call-overload]
                    update(model).where(col(model.id) == row_id).values(**values)  # type: ignore[attr-defined]
                )
        finally:
            await db.dispose()

    run_async(rewrite)
