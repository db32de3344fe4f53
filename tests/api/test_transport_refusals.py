"""What the transport refuses before GraphQL runs is answered in GraphQL's shape, with a code
and the right status: bodies that are not a JSON object, oversized bodies, wrong methods and
media types. Large partner files have a streamed route of their own."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from exchange import streaming
from exchange.auth.scopes import Role
from exchange.connectors.callbacks import callback_key, signed_headers
from exchange.testing.kit import ExchangeKit

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
MIB = 1 << 20


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/"), response.headers
    body = response.json()
    assert [error["extensions"]["code"] for error in body["errors"]] == [code], body
    return dict(body["errors"][0])


NOT_JSON_OBJECTS = [
    b'"hello"',
    b"null",
    b"[]",
    b"5",
    b"true",
    b"\xff\xfe{}",
    b"{not json",
    b'{"query": NaN}',
    b"",
    b"[" * 50_000 + b"]" * 50_000,  # deeper than Python's JSON reader recurses
    b'{"query": "{ programs { id } }", "variables": {"n": ' + b"9" * 5_000 + b"}}",  # past int()'s digits
]
WRONG_JSON_TYPES: list[Any] = [
    {"query": 5},
    {"query": "{ programs { id } }", "variables": "x"},
    {"query": "{ programs { id } }", "operationName": 5},
]


async def test_a_body_that_is_not_a_json_object_is_a_bad_request(client: httpx.AsyncClient) -> None:
    for accept in ("application/json", GRAPHQL_RESPONSE_JSON):
        for body in NOT_JSON_OBJECTS:
            headers = {"content-type": "application/json", "accept": accept}
            response = await client.post("/graphql", content=body, headers=headers)
            refused(response, 400, "BAD_REQUEST")
            assert response.headers["content-type"].startswith(accept)
    for payload in WRONG_JSON_TYPES:
        refused(await client.post("/graphql", json=payload), 400, "BAD_REQUEST")


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (
            b'{"query": "{ programs { id } }", "query": "mutation { closePeriod(period: \\"2026-01\\") { period } }"}',
            "query",
        ),
        (b'{"query": "query($p: String!) { program(id: $p) { id } }", "variables": {"p": "a", "p": "b"}}', "p"),
        (b'{"query": "{ __typename }", "extensions": {"x": [{"k": 1, "k": 2}]}}', "k"),
    ],
    ids=["query", "variables", "nested"],
)
async def test_a_body_with_a_key_twice_at_any_depth_is_refused_naming_it(
    client: httpx.AsyncClient, body: bytes, key: str
) -> None:
    """A proxy that reads the first of two keys and the gateway that read the last would see
    two different operations: neither is taken."""
    response = await client.post("/graphql", content=body, headers={"content-type": "application/json"})
    message = refused(response, 400, "BAD_REQUEST")["message"]
    assert message == f"the request body is not JSON: the key {key!r} appears more than once in an object"
    got = await client.get("/graphql", params={"query": "{ __typename }", "variables": '{"a": 1, "a": 2}'})
    assert refused(got, 400, "BAD_REQUEST")["message"] == (
        "the `variables` parameter is not JSON: the key 'a' appears more than once in an object"
    )


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("variables", "{not json", "the `variables` parameter is not JSON"),
        ("variables", '{"n": NaN}', "the `variables` parameter is not JSON: NaN is not a JSON value"),
        ("variables", "[1]", "the `variables` parameter must be a JSON object"),
        ("extensions", '"x"', "the `extensions` parameter must be a JSON object"),
    ],
)
async def test_a_get_parameter_that_is_not_a_json_object_is_refused_by_its_name(
    client: httpx.AsyncClient, name: str, value: str, says: str
) -> None:
    """A GET has no body: its refusal names the parameter, not "the request body"."""
    response = await client.get("/graphql", params={"query": "{ programs { id } }", name: value})
    assert refused(response, 400, "BAD_REQUEST")["message"].startswith(says)
    used = "query($skip: Boolean!) { __typename @skip(if: $skip) }"
    fine = await client.get("/graphql", params={"query": used, "variables": '{"skip": false}'})
    assert fine.json() == {"data": {"__typename": "Query"}}


async def test_transport_refusals_carry_a_code_and_their_status(client: httpx.AsyncClient) -> None:
    query = "{ programs { id } }"
    json_headers = {"content-type": "application/json"}
    new_media_type = {"accept": GRAPHQL_RESPONSE_JSON}
    refused(
        await client.post("/graphql", content=query, headers={"content-type": "text/plain"}),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    refused(await client.post("/graphql", data={"query": query}), 415, "UNSUPPORTED_MEDIA_TYPE")
    shouted = {"content-type": "Application/JSON; charset=UTF-8"}  # media types are case-insensitive
    assert (
        await client.post("/graphql", content=b'{"query": "{ programs { id } }"}', headers=shouted)
    ).status_code == 200
    mutation = await client.get("/graphql", params={"query": 'mutation { closePeriod(period: "2026-01") { status } }'})
    refused(mutation, 405, "METHOD_NOT_ALLOWED")
    assert mutation.headers["allow"] == "POST"
    for method in ("PUT", "DELETE", "PATCH"):
        response = await client.request(method, "/graphql", json={"query": query})
        refused(response, 405, "METHOD_NOT_ALLOWED")
        assert response.headers["allow"] == "GET, HEAD, POST"
    refused(await client.get("/graphql", headers={"accept": "application/json"}), 400, "BAD_REQUEST")
    unknown = {"query": "query A { programs { id } } query B { coalition { currency } }", "operationName": "C"}
    refused(await client.post("/graphql", json=unknown), 400, "BAD_REQUEST")
    refused(await client.post("/graphql", json=[{"query": query}, {"query": query}]), 400, "BAD_REQUEST")
    # Several operations and no operationName: none runs (Strawberry alone would run the first).
    ambiguous = {"query": "query A { programs { id } } query B { __typename }"}
    refused(await client.post("/graphql", json=ambiguous, headers=new_media_type), 400, "GRAPHQL_VALIDATION_FAILED")
    named = (await client.post("/graphql", json={**ambiguous, "operationName": "B"})).json()
    assert named == {"data": {"__typename": "Query"}}
    # An unknown operation's name is quoted back, a lone surrogate too (escaped, as JSON allows).
    surrogate = b'{"query": "{ programs { id } }", "operationName": "\\ud800"}'
    error = refused(await client.post("/graphql", content=surrogate, headers=json_headers), 400, "BAD_REQUEST")
    assert "\ud800" in error["message"]
    callback = refused(await client.post("/partners/%00/callbacks", content=b"{}"), 400, "BAD_USER_INPUT")
    assert callback["extensions"]["field"] == "programId"


async def test_head_is_answered_as_get_would_be_without_a_body(client: httpx.AsyncClient) -> None:
    """As every address that serves GET: the status and headers the GET would have, no body."""
    params = {"query": "{ programs { id } }"}
    got = await client.get("/graphql", params=params)
    head = await client.head("/graphql", params=params)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == got.headers["content-length"] != "0"
    # What the GET refuses, the HEAD refuses with the same status: a mutation takes POST only.
    mutation = {"query": 'mutation { closePeriod(period: "2026-01") { status } }'}
    refused_head = await client.head("/graphql", params=mutation)
    assert (refused_head.status_code, refused_head.headers["allow"], refused_head.content) == (405, "POST", b"")
    page = await client.head("/graphql", headers={"accept": "text/html"})
    assert (page.status_code, page.content) == (200, b"")
    assert page.headers["content-type"].startswith("text/html")


async def test_hostile_partner_callbacks_are_refused_naming_what_is_wrong(client: httpx.AsyncClient) -> None:
    """Each was a 500: a timestamp of hundreds of digits overflowed the float it was compared
    as, an operation id with a NUL, signed by the partner itself, reached PostgreSQL, and a
    signature of bytes past 0x7f (no ASCII) was compared as text."""
    key = callback_key("sandbox-fresh-mart")  # fresh-mart's declared connector secret
    operation = {
        "kind": "credit",
        "status": "applied",
        "member_ref": "m",
        "points": 1,
        "created_at": "2026-12-01T00:00:00Z",
    }

    async def post(operation_id: str, stamp: str | None = None) -> httpx.Response:
        body = json.dumps({"operation_id": operation_id, **operation}).encode()
        headers = signed_headers(key, "hostile-1", int(time.time()), body)
        return await client.post(
            "/partners/fresh-mart/callbacks",
            content=body,
            headers={**headers, **({"webhook-timestamp": stamp} if stamp else {})},
        )

    stale = refused(await post("c1:credit", stamp="9" * 400), 400, "BAD_USER_INPUT")
    assert stale["extensions"]["field"] == "webhook-timestamp"
    for hostile in ("c1\x00:credit", "c1:credit\n", "", "c" * 129):
        error = refused(await post(hostile), 400, "BAD_USER_INPUT")
        assert error["extensions"]["field"] == "operation_id", (hostile, error)
    refused(await post("c1:credit"), 404, "NOT_FOUND")  # well formed, and names nothing of fresh-mart's
    body = json.dumps({"operation_id": "c1:credit", **operation}).encode()
    not_ascii = {**signed_headers(key, "hostile-3", int(time.time()), body), "webhook-signature": b"v1,\xe9"}
    refused(
        await client.post("/partners/fresh-mart/callbacks", content=body, headers=not_ascii), 401, "UNAUTHENTICATED"
    )
    # Signed, but saying "applied" and "failed" at once: which one the partner meant is a guess.
    twice = json.dumps({"operation_id": "c1:credit", **operation})[:-1].encode() + b', "status": "failed"}'
    headers = signed_headers(key, "hostile-2", int(time.time()), twice)
    said_twice = refused(
        await client.post("/partners/fresh-mart/callbacks", content=twice, headers=headers), 400, "BAD_USER_INPUT"
    )
    assert said_twice["message"] == "the callback is not JSON: the key 'status' appears more than once in an object"


async def test_an_address_or_method_no_route_serves_is_refused_in_the_apis_shape(client: httpx.AsyncClient) -> None:
    """Starlette alone answers these in plain text; under the API's paths even a browser gets JSON."""
    missing = refused(await client.get("/oauth/authorize", headers={"accept": "text/html"}), 404, "NOT_FOUND")
    assert missing["message"] == "nothing is served at /oauth/authorize"
    refused(await client.get("/nowhere"), 404, "NOT_FOUND")
    wrong = await client.get("/oauth/token")
    assert refused(wrong, 405, "METHOD_NOT_ALLOWED")["message"] == "GET is not allowed here; this address takes POST"
    assert wrong.headers["allow"] == "POST"
    refused(await client.delete("/healthz"), 405, "METHOD_NOT_ALLOWED")
    # /metrics is for the cluster alone: through a reverse proxy it is an address nothing serves.
    hidden = refused(await client.get("/metrics", headers={"x-forwarded-for": "203.0.113.9"}), 404, "NOT_FOUND")
    assert hidden["message"] == "nothing is served at /metrics"


def _padded(size: int) -> bytes:
    """A valid GraphQL request of about ``size`` bytes (a long comment in its query)."""
    return b'{"query": "{ programs { id } }#' + b"x" * size + b'"}'


async def _chunks(body: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), chunk):
        yield body[start : start + chunk]


async def test_bodies_over_the_cap_are_refused_unread_and_under_it_executed(client: httpx.AsyncClient) -> None:
    json_headers = {"content-type": "application/json"}
    refused(await client.post("/graphql", content=_padded(2 * MIB), headers=json_headers), 413, "PAYLOAD_TOO_LARGE")
    chunked = await client.post("/graphql", content=_chunks(_padded(2 * MIB)), headers=json_headers)
    refused(chunked, 413, "PAYLOAD_TOO_LARGE")
    under = await client.post("/graphql", content=_padded(MIB - 1024), headers=json_headers)
    assert under.status_code == 200 and len(under.json()["data"]["programs"]) == 7
    under_chunked = await client.post("/graphql", content=_chunks(_padded(MIB - 1024)), headers=json_headers)
    assert under_chunked.status_code == 200, under_chunked.text


UPLOAD = "/settlement/records/fresh-mart/{period}"


def _records(lines: int) -> Iterator[bytes]:
    """A partner file of ``lines`` records, made as it is sent."""
    yield b"reference,amount,counterparty\nconversion:c1,98.00,wallet-pay\n"
    for number in range(2, lines + 1):
        yield f"conversion:x{number:08d},1.00,wallet-pay\n".encode()


async def _streamed(lines: int) -> AsyncIterator[bytes]:
    batch: list[bytes] = []
    for line in _records(lines):
        batch.append(line)
        if len(batch) == 2000:
            yield b"".join(batch)
            batch = []
    yield b"".join(batch)


async def test_a_large_partner_file_streams_into_the_same_import_as_the_mutation(
    kit: ExchangeKit, last_month: str
) -> None:
    staff = await kit.staff_token(Role.SETTLEMENT)
    await kit.data("mutation($p: String!) { closePeriod(period: $p) { status } }", staff, p=last_month)
    partner = await kit.partner_token("fresh-mart")
    lines = 60_000  # about 2 MiB: over the GraphQL cap
    response = await kit.http.put(
        UPLOAD.format(period=last_month),
        content=_streamed(lines),
        headers={"authorization": f"Bearer {partner}", "content-type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["lines"] == lines and summary["matched"] == 1
    assert summary["missingInLedger"] == lines - 1 and summary["partnerId"] == "fresh-mart"
    read = 'query($p: String!) { reconciliation(partnerId: "fresh-mart", period: $p) { id lines matched } }'
    reconciliation = (await kit.data(read, partner, p=last_month))["reconciliation"]
    assert reconciliation == {"id": summary["id"], "lines": lines, "matched": 1}


async def test_the_streamed_upload_refuses_as_the_mutation_does(kit: ExchangeKit, last_month: str) -> None:
    staff = await kit.staff_token(Role.SETTLEMENT)
    await kit.data("mutation($p: String!) { closePeriod(period: $p) { status } }", staff, p=last_month)
    url = UPLOAD.format(period=last_month)
    csv = {"content-type": "text/csv"}
    good = b"reference,amount\nconversion:c1,98.00\n"
    refused(await kit.http.put(url, content=good, headers=csv), 401, "UNAUTHENTICATED")
    other = await kit.partner_token("wallet-pay")
    foreign = refused(
        await kit.http.put(url, content=good, headers={**csv, "authorization": f"Bearer {other}"}), 403, "FORBIDDEN"
    )
    assert foreign["message"].endswith(
        "a partner's token reaches its own program's data only (this one's is wallet-pay)"
    )
    reader = await kit.partner_token("fresh-mart", scope="partner:read")
    read_only = refused(
        await kit.http.put(url, content=good, headers={**csv, "authorization": f"Bearer {reader}"}), 403, "FORBIDDEN"
    )
    assert (
        "; request a token with scope partner:write (`scope` at /oauth/token; this one holds partner:read)"
        in read_only["message"]
    ), "the refusal says what to do next, as GraphQL's do"
    partner = {"authorization": f"Bearer {await kit.partner_token('fresh-mart')}"}
    refused(
        await kit.http.put(url, content=good, headers={**partner, "content-type": "application/json"}),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    for charset in ("utf-16", '"UTF-16LE"', "windows-1252"):
        declared = {**partner, "content-type": f"text/csv; charset={charset}"}
        other_charset = refused(
            await kit.http.put(url, content=good.decode().encode("utf-16"), headers=declared),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        )
        assert other_charset["message"].startswith(
            f"the records are read as UTF-8, not in the charset {charset.strip(chr(34)).lower()!r} the content type "
        ), other_charset
    compressed = {**partner, **csv, "content-encoding": "gzip"}
    gzipped = refused(
        await kit.http.put(url, content=gzip.compress(good), headers=compressed), 415, "UNSUPPORTED_MEDIA_TYPE"
    )
    assert gzipped["message"].startswith("the records are read as sent, not decoded from the Content-Encoding 'gzip'")
    broken = good + b"conversion:c2,1.5.0\n"
    error = refused(await kit.http.put(url, content=broken, headers={**partner, **csv}), 400, "BAD_USER_INPUT")
    assert error["extensions"]["line"] == 3 and "amount" in error["extensions"]["reason"]
    refused(
        await kit.http.put(UPLOAD.format(period="0001-01"), content=good, headers={**partner, **csv}),
        400,
        "BAD_USER_INPUT",
    )
    refused(
        await kit.http.put(UPLOAD.format(period="2099-01"), content=good, headers={**partner, **csv}),
        409,
        "PERIOD_NOT_CLOSED",
    )
    utf8 = {"content-type": 'text/csv; Charset="UTF-8"', "content-encoding": "identity"}
    accepted = await kit.http.put(url, content=good, headers={**staff_headers(staff), **utf8})
    assert accepted.status_code == 200 and accepted.json()["matched"] == 1, accepted.text


async def test_an_upload_still_arriving_holds_up_no_other_import_of_its_period(
    kit: ExchangeKit, last_month: str
) -> None:
    """An upload is taken whole before its import begins: one that stalls half-way holds neither
    its partner's position of the period nor a database connection, so another upload of that
    period meanwhile is imported at once; the stalled one, once it ends, is imported after it."""
    staff = await kit.staff_token(Role.SETTLEMENT)
    await kit.data("mutation($p: String!) { closePeriod(period: $p) { status } }", staff, p=last_month)
    url = UPLOAD.format(period=last_month)
    headers = {"authorization": f"Bearer {await kit.partner_token('fresh-mart')}", "content-type": "text/csv"}
    rest = asyncio.Event()
    started = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"reference,amount\n"
        started.set()
        await rest.wait()
        yield b"conversion:c1,98.00\nconversion:c-unknown,1.00\n"  # another file: not a repeat of the second

    first = asyncio.create_task(kit.http.put(url, content=stalled(), headers=headers))
    await started.wait()
    second = await kit.http.put(url, content=b"reference,amount\nconversion:c1,98.00\n", headers=headers)
    assert second.status_code == 200 and second.json()["matched"] == 1, second.text
    assert not first.done()
    rest.set()
    imported = await first
    assert imported.status_code == 200 and imported.json()["matched"] == 1, imported.text
    sequences = text("SELECT sequence FROM reconciliation WHERE partner = 'fresh-mart' ORDER BY sequence")
    async with kit.db.transaction() as session:
        assert (await session.exec(sequences)).all() == [(1,), (2,)]  # type: ignore[call-overload]


async def test_an_upload_past_the_most_a_records_file_may_hold_is_refused_and_imports_nothing(
    kit: ExchangeKit, last_month: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upload is taken whole before it is imported: one past the cap is refused as it passes
    it (413, naming the cap), not written to the gateway's disk without end."""
    monkeypatch.setattr(streaming, "MAX_RECORDS_BYTES", 1_000)
    staff = await kit.staff_token(Role.SETTLEMENT)
    await kit.data("mutation($p: String!) { closePeriod(period: $p) { status } }", staff, p=last_month)
    headers = {"authorization": f"Bearer {await kit.partner_token('fresh-mart')}", "content-type": "text/csv"}
    too_large = refused(
        await kit.http.put(UPLOAD.format(period=last_month), content=b"".join(_records(100)), headers=headers),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    assert (
        too_large["message"] == "a records file is at most 1,000 bytes (some ten million lines); nothing was imported"
    )
    async with kit.db.transaction() as session:
        assert (await session.exec(text("SELECT count(*) FROM reconciliation"))).one() == (0,)  # type: ignore[call-overload]


async def test_an_import_meeting_its_period_held_is_refused_as_busy_after_a_short_wait(
    kit: ExchangeKit, last_month: str
) -> None:
    """An import waits a few seconds at most for the partner's position of the period that another
    unit of work holds (a resolution of its breaks, a sign-off, an import of a big file), then
    is refused saying why and when to ask again, rather than holding a connection queued behind it."""
    staff = await kit.staff_token(Role.SETTLEMENT)
    await kit.data("mutation($p: String!) { closePeriod(period: $p) { status } }", staff, p=last_month)
    headers = {"authorization": f"Bearer {await kit.partner_token('fresh-mart')}", "content-type": "text/csv"}
    held = text(
        "SELECT participant FROM settlement_position WHERE participant = 'fresh-mart' AND period = :period FOR UPDATE"
    )
    async with kit.db.transaction() as session:
        assert (await session.exec(held, params={"period": last_month})).all()  # type: ignore[call-overload]
        answer = await kit.http.put(UPLOAD.format(period=last_month), content=b"reference,amount\n", headers=headers)
    assert answer.headers["retry-after"] == "5", "busy for now: a client is told when to ask again"
    busy = refused(answer, 503, "SERVICE_UNAVAILABLE")
    assert busy["extensions"]["reason"] == "POSITION_BUSY" and "is busy" in busy["message"], busy


def staff_headers(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
