"""The members' portal (``/portal/``): a member signs in through a partner, sees their accounts,
converts points, asks for status matches and redeems rewards.

Pages call the application services directly, as GraphQL's resolvers do, with the principal a
member token would carry (:mod:`exchange.web.portal.members`); each group of pages is a module
of its own.
"""

from __future__ import annotations

from typing import Protocol

from exchange.services.container import Services
from exchange.web.access import Page
from exchange.web.portal.accounts import AccountPages
from exchange.web.portal.convert import ConvertPages
from exchange.web.portal.matches import StatusMatchPages
from exchange.web.portal.members import LAYOUT, PORTAL_PATH, SIGN_IN_PATH
from exchange.web.portal.rewards import RewardPages
from exchange.web.portal.sign_in import SignInPages
from exchange.web.security import CookiePolicy
from exchange.web.templating import Pages

__all__ = ["LAYOUT", "PORTAL_PATH", "SIGN_IN_PATH", "Portal"]


class PageGroup(Protocol):
    """A set of the portal's pages."""

    def routes(self) -> list[Page]: ...


class Portal:
    def __init__(self, *, services: Services, pages: Pages, cookies: CookiePolicy) -> None:
        self.sessions = services.portal
        self.groups: list[PageGroup] = [
            SignInPages(sessions=services.portal, pages=pages, cookies=cookies),
            AccountPages(services=services, pages=pages),
            ConvertPages(services=services, pages=pages),
            RewardPages(services=services, pages=pages),
            StatusMatchPages(services=services, pages=pages),
        ]

    def routes(self) -> list[Page]:
        return [page for group in self.groups for page in group.routes()]
