"""Every response carries the pages' security headers and a request id, those that no page
renders included: a 500 from an exception escaping a route (Starlette answers it outside every
middleware it is given), a 404 for an address no route can hold (a CR or LF in the path), an
API answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from exchange.app import create_app
from exchange.settings import Settings
from exchange.web.security import RelativeRedirects, page_headers

BROWSER = {"accept": "text/html,application/xhtml+xml"}
CLIENT = {"accept": "application/json"}


async def fails(_: Request) -> Response:
    raise RuntimeError("a bug in a route")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The gateway (on a database it never reads for these answers) with one route that fails."""
    database = Path(tmp_path_factory.mktemp("headers")) / "exchange.db"
    app = create_app(Settings(database_url=f"sqlite:///{database}"))
    app.router.routes.insert(0, Route("/fails", fails))
    # Not entered as a context manager, the client starts no lifespan: nothing reads the database.
    unstarted = TestClient(app, raise_server_exceptions=False)
    yield unstarted
    unstarted.close()


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/fails", CLIENT, 500),
        ("/fails", BROWSER, 500),
        ("/console/a%0D%0Ab", CLIENT, 404),
        ("/portal/a%0Ab", CLIENT, 404),
        ("/a%0D%0Ab", CLIENT, 404),
        ("/no-such-address", CLIENT, 404),
        ("/graphql/no-such-address", CLIENT, 404),
        ("/console/a%0D%0Ab", BROWSER, 404),
        ("/healthz", CLIENT, 200),
        ("/console/sign-in", BROWSER, 200),
    ],
)
def test_every_answer_carries_the_security_headers(
    client: TestClient, path: str, headers: dict[str, str], status: int
) -> None:
    response = client.get(path, headers=headers)
    assert response.status_code == status
    for name, value in page_headers(secure=False).items():
        assert response.headers.get(name) == value, name
    assert response.headers.get("x-request-id")


def test_a_header_an_answer_sets_itself_is_kept(client: TestClient) -> None:
    """A stylesheet may be cached; the other security headers come with it all the same."""
    response = client.get("/static/app.css")
    assert response.status_code == 200 and response.headers["cache-control"] != "no-store"
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(
    ("path", "location", "host"),
    [
        ("/console/settlement", "/console/settlement/", "evil.example"),
        ("/console/settlement?lang=zh-TW", "/console/settlement/?lang=zh-TW", "evil.example:8443"),
        ("/graphql/", "/graphql", "evil.example"),
        ("/console/settlement", "/console/settlement/", "evil.example//x"),
    ],
)
def test_a_redirect_names_a_path_on_this_site_not_the_host_the_request_named(
    client: TestClient, path: str, location: str, host: str
) -> None:
    """Starlette sends an address missing its trailing slash (or with one too many) to the right
    one, written whole from the request's ``Host``: a proxy passing on the host a client named,
    or a cache keeping the answer for another client, sent them to that site instead."""
    response = client.get(path, headers={**BROWSER, "host": host}, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == location


def test_a_redirect_whose_path_would_read_as_another_host_keeps_its_own() -> None:
    """``//evil.example/x`` alone is an address on evil.example: a redirect to that path on
    this site stays written whole."""

    async def away(_: Request) -> Response:
        return RedirectResponse("http://testserver//evil.example/x")

    with TestClient(RelativeRedirects(Starlette(routes=[Route("/away", away)]))) as client:
        response = client.get("/away", follow_redirects=False)
    assert response.headers["location"] == "http://testserver//evil.example/x"
