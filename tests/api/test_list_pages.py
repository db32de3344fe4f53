"""Lists a client can make grow come a page at a time: ``first`` of them after a cursor, ``first``
from 1 to its documented most (the most is taken, one more is ``BAD_USER_INPUT`` on ``first``)."""

from __future__ import annotations

from typing import Any

from exchange.auth.scopes import Role
from exchange.testing.kit import ExchangeKit


def refused_first(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(error["extensions"]["code"], error["extensions"].get("field")) for error in body["errors"]]


async def test_clients_come_in_pages_by_client_id(kit: ExchangeKit) -> None:
    admin = await kit.staff_token(Role.ADMIN)
    for program in ("wallet-pay", "formosa-air", "fresh-mart"):
        await kit.partner(program)
    every = [client["clientId"] for client in (await kit.data("{ clients { clientId } }", admin))["clients"]]
    assert len(every) >= 4 and every == sorted(every)
    walked: list[str] = []
    after = None
    while True:
        page = (
            await kit.data(
                "query($after: String) { clients(first: 2, after: $after) { clientId } }", admin, after=after
            )
        )["clients"]
        walked += [client["clientId"] for client in page]
        if len(page) < 2:
            break
        after = page[-1]["clientId"]
    assert walked == every
    most = await kit.data("{ clients(first: 500) { clientId } }", admin)
    assert [client["clientId"] for client in most["clients"]] == every
    body = (await kit.graphql("{ clients(first: 501) { clientId } }", admin)).json()
    assert body["data"] == {"clients": None} and refused_first(body) == [("BAD_USER_INPUT", "first")]
