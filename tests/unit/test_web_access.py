"""Who may open which page: the web front end's rules, deny by default."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from exchange.app import create_app
from exchange.auth.principal import Principal
from exchange.auth.scopes import ROLE_SCOPES, Role, Scope
from exchange.errors import ConfigurationError
from exchange.settings import Settings
from exchange.web.access import NOBODY, PUBLIC, Page, requires, roles
from exchange.web.frontend import WebFrontEnd
from tests.web.pages import web_pages


def principal(role: Role, scopes: frozenset[Scope] | None = None, program_id: str | None = None) -> Principal:
    return Principal(
        role=role,
        subject="someone",
        client_id="console:someone",
        scopes=ROLE_SCOPES[role] if scopes is None else scopes,
        token_id="t",
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        program_id=program_id,
    )


async def endpoint(_: Request) -> Response:
    return PlainTextResponse("page")


def test_a_page_without_a_rule_refuses_everyone() -> None:
    page = Page("/x", endpoint)
    assert page.rule is NOBODY
    assert not page.rule.allows(None)
    assert not any(page.rule.allows(principal(role)) for role in Role)


def test_a_role_rule_admits_its_roles_only_and_nobody_signed_out() -> None:
    rule = roles(Role.SETTLEMENT, Role.ADMIN)
    assert rule.allows(principal(Role.SETTLEMENT)) and rule.allows(principal(Role.ADMIN))
    assert not rule.allows(principal(Role.PARTNER, program_id="formosa-air"))
    assert not rule.allows(principal(Role.MEMBER))
    assert not rule.allows(None) and not rule.is_public


def test_a_scope_rule_needs_one_of_its_scopes() -> None:
    rule = requires(Scope.SETTLEMENT_WRITE, Scope.ADMIN_WRITE)
    assert rule.allows(principal(Role.ADMIN))
    assert not rule.allows(principal(Role.SETTLEMENT, scopes=frozenset({Scope.SETTLEMENT_READ})))
    assert not rule.allows(None)


def test_rules_combine_with_and_and_or() -> None:
    partner_writer = roles(Role.PARTNER) & requires(Scope.PARTNER_WRITE)
    assert partner_writer.allows(principal(Role.PARTNER, program_id="p"))
    assert not partner_writer.allows(principal(Role.PARTNER, frozenset({Scope.PARTNER_READ}), "p"))
    either = roles(Role.ADMIN) | requires(Scope.SETTLEMENT_READ)
    assert either.allows(principal(Role.ADMIN)) and either.allows(principal(Role.SETTLEMENT))
    assert not either.allows(principal(Role.PARTNER, program_id="p"))
    assert PUBLIC.allows(None) and PUBLIC.is_public


def test_the_web_front_end_accepts_only_pages_with_their_rules() -> None:
    web = WebFrontEnd.__new__(WebFrontEnd)
    with pytest.raises(ConfigurationError, match="declares who may open it"):
        web.guarded([Route("/unguarded", endpoint)], sign_in_path="/console/sign-in", layout="console/layout.html")


def test_every_page_of_the_front_end_declares_a_rule_that_admits_someone() -> None:
    pages = web_pages(create_app(Settings()))
    assert {(path, method) for path, method, _page in pages} >= {
        ("/console/", "GET"),
        ("/console/sign-in", "GET"),
        ("/console/sign-in", "POST"),
        ("/console/sign-out", "POST"),
        ("/portal/", "GET"),
        ("/portal/sign-in", "GET"),
    }
    for path, _method, page in pages:
        assert page.rule is not NOBODY, path
