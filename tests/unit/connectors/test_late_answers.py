"""Partners that answer later, as the connector reads them: pending operations, the credits
file it sends and the result file it reads (files are REST whatever the flavour)."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from exchange.connectors import batch_files
from exchange.connectors.batch_files import ResultLine
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


async def test_the_result_file_is_read_line_by_line_with_its_points(
    router: respx.MockRouter, connector: PartnerConnector
) -> None:
    router.get(RESULTS).mock(
        return_value=httpx.Response(
            200, text="operation_id,status,points\r\nc1:credit,applied,1000\r\n\nc2:credit,failed,0250\n"
        )
    )
    assert [line async for line in connector.credit_results("b-1")] == [
        ResultLine("c1:credit", OperationState.APPLIED, 1000, 2),
        ResultLine("c2:credit", OperationState.FAILED, 250, 4),
    ]


async def test_a_result_file_without_points_is_still_read(
    router: respx.MockRouter, connector: PartnerConnector
) -> None:
    router.get(RESULTS).mock(
        return_value=httpx.Response(200, text="operation_id,status\nc1:credit,applied\n\nc2:credit,failed\n")
    )
    assert [line async for line in connector.credit_results("b-1")] == [
        ResultLine("c1:credit", OperationState.APPLIED, None, 2),
        ResultLine("c2:credit", OperationState.FAILED, None, 4),
    ]


@pytest.mark.parametrize(
    "points",
    [
        pytest.param("+1000", id="a sign"),
        pytest.param("-1000", id="a minus"),
        pytest.param("1000.0", id="a decimal point"),
        pytest.param("1e3", id="an exponent"),
        pytest.param(" 1000", id="a space before"),
        pytest.param("1000 ", id="a space after"),
        pytest.param("1 000", id="a space inside"),
        pytest.param("1_000", id="an underscore"),
        pytest.param("\uff11\uff10\uff10\uff10", id="fullwidth digits"),
        pytest.param("\u0661\u0660\u0660\u0660", id="arabic-indic digits"),
        pytest.param("0", id="zero"),
        pytest.param("", id="empty"),
        pytest.param("9007199254740992", id="over the most points"),
    ],
)
async def test_a_result_line_whose_points_are_no_plain_whole_number_is_refused_naming_line_and_column(
    router: respx.MockRouter, connector: PartnerConnector, points: str
) -> None:
    body = f"operation_id,status,points\nc1:credit,applied,1000\nc2:credit,applied,{points}\n"
    router.get(RESULTS).mock(return_value=httpx.Response(200, text=body))
    read: list[ResultLine] = []
    with pytest.raises(PartnerProtocolError, match=r"line 3: points: must be a whole number from 1 to \d+") as refused:
        async for line in connector.credit_results("b-1"):
            read.append(line)
    assert repr(points) in str(refused.value)  # what was written, quoted (escaped, never raw)
    assert read == [ResultLine("c1:credit", OperationState.APPLIED, 1000, 2)]  # the line before it is given


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("operation_id,status,points\nc1:credit,applied\n", id="a line without the header's points"),
        pytest.param("operation_id,status\nc1:credit,applied,1000\n", id="points the header does not name"),
        pytest.param("operation_id,status,points\nc1:credit,applied,1000,1\n", id="a fourth field"),
    ],
)
async def test_a_result_line_with_other_columns_than_its_header_is_refused(
    router: respx.MockRouter, connector: PartnerConnector, body: str
) -> None:
    router.get(RESULTS).mock(return_value=httpx.Response(200, text=body))
    with pytest.raises(PartnerProtocolError, match="line 2: expected operation_id,status"):
        [line async for line in connector.credit_results("b-1")]


async def test_no_result_file_yet_is_nothing(router: respx.MockRouter, connector: PartnerConnector) -> None:
    router.get(RESULTS).mock(return_value=httpx.Response(404, json={"code": "OPERATION_NOT_FOUND"}))
    assert [line async for line in connector.credit_results("b-1")] == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("id,outcome\nc1:credit,applied\n", id="another header"),
        pytest.param("operation_id,points,status\nc1:credit,1000,applied\n", id="columns in another order"),
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
    read: list[ResultLine] = []
    with pytest.raises(PartnerProtocolError, match=f"line 3: longer than {batch_files.MAX_LINE_CHARS} characters"):
        async for line in connector.credit_results("b-1"):
            read.append(line)
    assert read == [ResultLine("c1:credit", OperationState.APPLIED, None, 2)]
    assert body.chunks == 1


async def test_a_compressed_result_file_is_read_as_its_lines_arrive(
    router: respx.MockRouter, connector: PartnerConnector
) -> None:
    """(A result file that is a gzip bomb, over a real connection: test_transport.py.)"""
    head = b"operation_id,status\nc1:credit,applied\n"
    route = router.get(RESULTS).mock(
        return_value=httpx.Response(200, content=gzip.compress(head), headers={"content-encoding": "gzip"})
    )
    assert [line async for line in connector.credit_results("b-1")] == [
        ResultLine("c1:credit", OperationState.APPLIED, None, 2)
    ]
    route.mock(
        return_value=httpx.Response(
            200, content=gzip.compress(head + b"x" * (1 << 20)), headers={"content-encoding": "gzip"}
        )
    )
    with pytest.raises(PartnerProtocolError, match=f"line 3: longer than {batch_files.MAX_LINE_CHARS} characters"):
        [line async for line in connector.credit_results("b-1")]
