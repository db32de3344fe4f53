"""A listing's pages followed by their next links, as a reader follows them."""

from __future__ import annotations

import html
import re

import httpx


def pages_followed(
    client: httpx.Client, address: str, items: re.Pattern[str], following: re.Pattern[str]
) -> list[list[str]]:
    """What ``items`` finds on each page from ``address`` on, following the link ``following``
    finds (its first group: the next page's address) until a page has none."""
    pages: list[list[str]] = []
    next_address: str | None = address
    while next_address is not None:
        page = client.get(next_address)
        assert page.status_code == 200, page.text
        pages.append(items.findall(page.text))
        link = following.search(page.text)
        next_address = html.unescape(link[1]) if link else None
    return pages


def listed_once(pages: list[list[str]], size: int, ours: set[str]) -> set[str]:
    """Every item the ``pages`` show, checked: at least three pages, every one but the last
    full, no item on two pages, and each of ``ours`` on one."""
    shown = [item for listed in pages for item in listed]
    assert len(pages) > 2 and all(len(listed) == size for listed in pages[:-1]) and 1 <= len(pages[-1]) <= size
    assert len(shown) == len(set(shown)) and ours <= set(shown), "each on one page only"
    return set(shown)
