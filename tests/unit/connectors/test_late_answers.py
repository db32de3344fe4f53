"""Partners that answer later, as the connector reads them: pending operations, the credits
file it sends and the result file it reads (files are REST whatever the flavour)."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from exchange.connectors import batch_files
from exchange.connectors.connector import Call, PartnerConnector
from exchange.connectors.contract import OperationState
from exchange.connectors.errors import PartnerProtocolError
from tests.unit.connectors.conftest import BASE_URL, MockPartner, operation

RESULTS = f"{BASE_URL}/batches/b-1/results"

pytestmark = pytest.mark.usefixtures("token_route")


async def test_a_credit_accepted_pending_reads_as_pending(partner: MockPartner, connector: PartnerConnector) -> None:
    partner.route(Call.CREDIT).mock(
        return_value=partner.answer(
            operation(kind="credit", status="pending" if partner.kind == "rest" else "PENDING", balance_after=None),
            status=202,
        )
    )
    credited = await connector.credit("op-1", "alice", 100)
    assert (credited.status, credited.balance_after) == (OperationState.PENDING, None)


async def test_the_credits_file_is_streamed_with_the_token_and_sent_again_whole(
    router: respx.MockRouter, connector: PartnerConnector
) -> None:
    route = router.put(f"{BASE_URL}/batches/b-1/credits").mock(
        side_effect=[httpx.Response(503), httpx.Response(202, json={"batch_id": "b-1", "lines": 2})]
    )

    async def lines() -> AsyncIterator[bytes]:
        yield b"operation_id,member_ref,points\n"
        yield b"c1:credit,alice,100\nc2:credit,bob,250\n"

    await connector.send_credits("b-1", lines)
    assert route.call_count == 2  # a 5xx is retried, with the file made afresh
    sent = route.calls.last.request
    assert sent.headers["authorization"] == "Bearer token-1"
    assert sent.headers["content-type"] == "text/csv"
    assert sent.content == b"operation_id,member_ref,points\nc1:credit,alice,100\nc2:credit,bob,250\n"


async def test_the_result_file_is_read_line_by_line(router: respx.MockRouter, connector: PartnerConnector) -> None:
    router.get(RESULTS).mock(
        return_value=httpx.Response(200, text="operation_id,status\nc1:credit,applied\n\nc2:credit,failed\n")
    )
    assert [line async for line in connector.credit_results("b-1")] == [
        ("c1:credit", OperationState.APPLIED),
        ("c2:credit", OperationState.FAILED),
    ]


async def test_no_result_file_yet_is_nothing(router: respx.MockRouter, connector: PartnerConnector) -> None:
    router.get(RESULTS).mock(return_value=httpx.Response(404, json={"code": "OPERATION_NOT_FOUND"}))
    assert [line async for line in connector.credit_results("b-1")] == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("id,outcome\nc1:credit,applied\n", id="another header"),
        pytest.param("operation_id,status\nc1:credit,pending\n", id="a line still pending"),
        pytest.param("operation_id,status\nc1:credit\n", id="a line short of a field"),
    ],
)
async def test_a_malformed_result_file_is_a_protocol_error_naming_the_line(
    router: respx.MockRouter, connector: PartnerConnector, body: str
) -> None:
    router.get(RESULTS).mock(return_value=httpx.Response(200, text=body))
    with pytest.raises(PartnerProtocolError, match="line"):
        [line async for line in connector.credit_results("b-1")]


class EndlessLine(httpx.AsyncByteStream):
    """A result file whose second line never ends: 64 KiB chunks without a line end, counted."""

    def __init__(self) -> None:
        self.chunks = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"operation_id,status\nc1:credit,applied\n"
        while self.chunks < 1024:  # 64 MiB, were it read whole
            self.chunks += 1
            yield b"x" * 65536
        yield b"\n"


async def test_a_result_line_longer_than_any_result_is_refused_unread(
    router: respx.MockRouter, connector: PartnerConnector
) -> None:
    """A line is read up to ``MAX_LINE_CHARS``, not whole: a partner's endless line is a
    protocol error naming the line (the batch's credits wait for the next pass), read no further
    than the limit."""
    body = EndlessLine()
    router.get(RESULTS).mock(return_value=httpx.Response(200, stream=body))
    read: list[tuple[str, OperationState]] = []
    with pytest.raises(PartnerProtocolError, match=f"line 3: longer than {batch_files.MAX_LINE_CHARS} characters"):
        async for line in connector.credit_results("b-1"):
            read.append(line)
    assert read == [("c1:credit", OperationState.APPLIED)]
    assert body.chunks == 1


async def test_a_compressed_result_file_is_read_as_its_lines_arrive(
    router: respx.MockRouter, connector: PartnerConnector
) -> None:
    """(A result file that is a gzip bomb, over a real connection: test_transport.py.)"""
    head = b"operation_id,status\nc1:credit,applied\n"
    route = router.get(RESULTS).mock(
        return_value=httpx.Response(200, content=gzip.compress(head), headers={"content-encoding": "gzip"})
    )
    assert [line async for line in connector.credit_results("b-1")] == [("c1:credit", OperationState.APPLIED)]
    route.mock(
        return_value=httpx.Response(
            200, content=gzip.compress(head + b"x" * (1 << 20)), headers={"content-encoding": "gzip"}
        )
    )
    with pytest.raises(PartnerProtocolError, match=f"line 3: longer than {batch_files.MAX_LINE_CHARS} characters"):
        [line async for line in connector.credit_results("b-1")]
