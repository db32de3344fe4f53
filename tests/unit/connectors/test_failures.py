"""The error taxonomy: refusals, unavailable before sending, unknown outcome; and retries."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
import respx

from exchange.connectors.connector import Call, PartnerConnector
from exchange.connectors.errors import (
    InsufficientPoints,
    InvalidRequest,
    NotReversible,
    OperationConflict,
    OperationVoided,
    OutcomeUnknown,
    PartnerConnectionLost,
    PartnerConnectTimeout,
    PartnerError,
    PartnerProtocolError,
    PartnerRefusal,
    PartnerServerError,
    PartnerTimeout,
    PartnerUnavailable,
    PartnerUnreachable,
    ReversalExceedsOriginal,
    UnknownMember,
    UnknownTier,
)
from exchange.connectors.registry import ConnectorRegistry
from exchange.connectors.transport import MAX_ANSWER_BYTES
from exchange.errors import ErrorCode
from exchange.programs.models import TIER_NAME_LENGTH
from exchange.sagas.state import MESSAGE_LENGTH
from tests.unit.connectors.conftest import (
    PROGRAM,
    MockPartner,
    Sleeps,
    connector_config,
    operation,
)


@pytest.mark.parametrize(
    ("code", "error", "client_code"),
    [
        ("INSUFFICIENT_POINTS", InsufficientPoints, ErrorCode.INSUFFICIENT_POINTS),
        ("UNKNOWN_MEMBER", UnknownMember, ErrorCode.NOT_FOUND),
        ("OPERATION_CONFLICT", OperationConflict, ErrorCode.IDEMPOTENCY_CONFLICT),
        ("OPERATION_VOIDED", OperationVoided, ErrorCode.PARTNER_REFUSED),
        ("REVERSAL_EXCEEDS_ORIGINAL", ReversalExceedsOriginal, ErrorCode.PARTNER_REFUSED),
        ("NOT_REVERSIBLE", NotReversible, ErrorCode.PARTNER_REFUSED),
        ("UNKNOWN_TIER", UnknownTier, ErrorCode.PARTNER_REFUSED),
        ("INVALID_REQUEST", InvalidRequest, ErrorCode.PARTNER_REFUSED),
    ],
)
async def test_each_contract_code_is_a_definite_refusal_and_is_not_retried(
    partner: MockPartner,
    connector: PartnerConnector,
    code: str,
    error: type[PartnerRefusal],
    client_code: ErrorCode,
) -> None:
    route = partner.route(Call.DEBIT).mock(return_value=partner.refuse(code, "no", balance=40))
    with pytest.raises(error) as raised:
        await connector.debit("op-1", "alice", 100)
    assert raised.value.code is client_code
    assert raised.value.facts == {"balance": 40}
    assert raised.value.extensions()["program"] == PROGRAM
    assert route.call_count == 1


async def test_a_refusal_with_a_code_outside_the_contract_is_an_unknown_outcome(
    partner: MockPartner, connector: PartnerConnector
) -> None:
    route = partner.route(Call.DEBIT).mock(return_value=partner.refuse("OUT_OF_CHEESE"))
    with pytest.raises(PartnerProtocolError):
        await connector.debit("op-1", "alice", 100)
    assert route.call_count == 3


@pytest.mark.parametrize("call", [Call.DEBIT, Call.OPERATION_STATUS])
async def test_a_graphql_refusal_beside_a_result_is_an_unknown_outcome(
    router: respx.MockRouter, token_route: respx.Route, registry: ConnectorRegistry, call: Call
) -> None:
    """A GraphQL answer whose ``data.result`` is the operation applied and whose errors carry a
    contract code says both "done" and "refused": the partner may have applied the debit, so it
    is no clean refusal (the saga would end FAILED with the member's points taken)."""
    partner = MockPartner("graphql", router)
    error = {"message": "no", "path": ["result"], "extensions": {"code": "INSUFFICIENT_POINTS"}}
    body = {"data": {"result": operation()}, "errors": [error]}
    partner.route(call).mock(return_value=httpx.Response(200, json=body))
    connector = registry.connector(PROGRAM, connector_config("graphql"))
    with pytest.raises(PartnerProtocolError, match=r"both data\.result and errors"):
        if call is Call.DEBIT:
            await connector.debit("op-1", "alice", 100)
        else:
            await connector.operation_status("op-1")


@pytest.mark.parametrize("code", ["INSUFFICIENT_POINTS", "OUT_OF_CHEESE" * 10_000])
async def test_a_refusal_in_hundreds_of_kilobytes_of_words_carries_their_beginning(
    partner: MockPartner, connector: PartnerConnector, code: str
) -> None:
    """A refusal's words go into API errors, pages, log lines and the row's kept reason: a
    partner answering most of a megabyte of them has their beginning said, whole in the 500
    characters a row keeps. (An answer over a megabyte is not read: ``MAX_ANSWER_BYTES``.)"""
    partner.route(Call.DEBIT).mock(return_value=partner.refuse(code, "<p>" + "no " * 120_000))
    with pytest.raises(PartnerError) as raised:
        await connector.debit("op-1", "alice", 100)
    message = raised.value.message
    assert len(message) <= MESSAGE_LENGTH and message.endswith("…"), len(message)
    assert "<p>no no" in message


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (httpx.Response(200, text="<html>gateway</html>"), "not JSON"),
        (httpx.Response(200, json=[1, 2]), "not an object"),
        (httpx.Response(200, json={"unexpected": True}), "wrong shape"),
    ],
)
async def test_a_malformed_body_is_an_unknown_outcome(
    partner: MockPartner, connector: PartnerConnector, answer: httpx.Response, why: str
) -> None:
    partner.route(Call.DEBIT).mock(return_value=answer)
    with pytest.raises(PartnerProtocolError):
        await connector.debit("op-1", "alice", 100)


@pytest.mark.parametrize("points", [100.0, "100", True])
async def test_points_that_are_not_json_integers_are_malformed(
    partner: MockPartner, connector: PartnerConnector, points: object
) -> None:
    partner.route(Call.DEBIT).mock(return_value=partner.answer(operation(points=points)))
    with pytest.raises(PartnerProtocolError, match="points"):
        await connector.debit("op-1", "alice", 100)


async def test_a_float_balance_is_malformed(partner: MockPartner, connector: PartnerConnector) -> None:
    partner.route(Call.ACCOUNT).mock(
        return_value=partner.answer({"member_ref": "alice", "balance": 10.5, "tier": "Base"})
    )
    with pytest.raises(PartnerProtocolError, match="balance"):
        await connector.account("alice")


async def test_more_points_expiring_than_the_balance_holds_is_malformed(
    partner: MockPartner, connector: PartnerConnector
) -> None:
    """The member is shown the expiring points as part of their balance: 5,000 of a balance of
    10 lapsing is no account, and nothing of it is shown."""
    expiring = [{"points": 4_000, "expires_on": "2026-12-31"}, {"points": 1_000, "expires_on": "2027-01-31"}]
    partner.route(Call.ACCOUNT).mock(
        return_value=partner.answer({"member_ref": "alice", "balance": 4_999, "tier": "Base", "expiring": expiring})
    )
    with pytest.raises(PartnerProtocolError, match="expiring"):
        await connector.account("alice")
    partner.route(Call.ACCOUNT).mock(
        return_value=partner.answer({"member_ref": "alice", "balance": 5_000, "tier": "Base", "expiring": expiring})
    )
    assert sum(item.points for item in (await connector.account("alice")).expiring) == 5_000


async def test_a_tier_name_longer_than_any_program_may_declare_is_malformed(
    partner: MockPartner, connector: PartnerConnector
) -> None:
    """The answer's tier is shown to the member as the partner words it (their accounts, a status
    match's reason): 100,000 characters of it can be no declared tier's name."""
    partner.route(Call.ACCOUNT).mock(
        return_value=partner.answer({"member_ref": "alice", "balance": 10, "tier": "Gold" * 25_000})
    )
    with pytest.raises(PartnerProtocolError, match="tier"):
        await connector.account("alice")
    longest = "G" * TIER_NAME_LENGTH  # a name no program declared, but one it could have: level 0
    partner.route(Call.ACCOUNT).mock(
        return_value=partner.answer({"member_ref": "alice", "balance": 10, "tier": longest})
    )
    assert (await connector.account("alice")).tier == longest


@pytest.mark.parametrize(
    "changed", [{"operation_id": "op-2"}, {"points": 99}, {"member_ref": "bob"}, {"kind": "credit"}]
)
async def test_an_answer_about_another_request_is_malformed(
    partner: MockPartner, connector: PartnerConnector, changed: dict[str, object]
) -> None:
    partner.route(Call.DEBIT).mock(return_value=partner.answer(operation(**changed)))
    with pytest.raises(PartnerProtocolError, match="does not match"):
        await connector.debit("op-1", "alice", 100)


def _reversal(target: dict[str, object], points: int | None = 100) -> dict[str, object]:
    return operation("op-9", "reversal", points=points, reverses="op-1", target=target)


@pytest.mark.parametrize(
    ("asked", "answer"),
    [
        # A whole reversal whose target still stands applied: nothing (or only part) was undone.
        (None, _reversal(operation("op-1"))),
        (None, _reversal(operation("op-1", reversed_points=40), points=40)),
        # A partial reversal of 40 that says it reversed another amount.
        (40, _reversal(operation("op-1", reversed_points=100), points=100)),
        # A voided id (nothing had arrived) with points said to be given back.
        (None, _reversal(operation("op-1", kind=None, status="voided", member_ref=None, points=None))),
    ],
)
async def test_a_reversal_that_did_not_do_what_was_asked_is_malformed(
    partner: MockPartner, connector: PartnerConnector, asked: int | None, answer: dict[str, object]
) -> None:
    """The saga takes a reversal's answer as the reversal done (a debit given back, an id voided):
    one whose own record says otherwise must leave the write in doubt, not settled."""
    partner.route(Call.REVERSE).mock(return_value=partner.answer(answer))
    with pytest.raises(PartnerProtocolError, match="does not match"):
        await connector.reverse("op-9", "op-1", asked)


@pytest.mark.parametrize(
    ("asked", "answer"),
    [
        (None, _reversal(operation("op-1", status="reversed", reversed_points=100))),
        (40, _reversal(operation("op-1", reversed_points=40), points=40)),
        (None, _reversal(operation("op-1", kind=None, status="voided", member_ref=None, points=None), points=0)),
        (40, _reversal(operation("op-1", status="failed"), points=0)),
    ],
)
async def test_a_reversal_that_did_what_was_asked_is_taken(
    partner: MockPartner, connector: PartnerConnector, asked: int | None, answer: dict[str, object]
) -> None:
    partner.route(Call.REVERSE).mock(return_value=partner.answer(answer))
    assert (await connector.reverse("op-9", "op-1", asked)).reverses == "op-1"


def _tier_match(status: str = "applied", expires_at: str | None = "2027-02-25T00:00:00Z") -> dict[str, object]:
    return operation(
        kind="tier_match", status=status, points=None, balance_after=None, tier="Gold", expires_at=expires_at
    )


@pytest.mark.parametrize("status", ["pending", "failed", "voided"])
async def test_a_tier_match_answered_as_not_held_is_malformed(
    partner: MockPartner, connector: PartnerConnector, status: str
) -> None:
    """The status match saga takes a tier match's answer as the tier held (the match ACTIVE, the
    member told so, and counted against their one match a year). A tier match is answered at
    once, applied, or, repeated after it was reverted, reversed: any other state leaves it in
    doubt for recovery to ask the partner's record and withdraw it."""
    partner.route(Call.MATCH_TIER).mock(return_value=partner.answer(_tier_match(status)))
    with pytest.raises(PartnerProtocolError, match="status"):
        await connector.match_tier("op-1", "alice", "Gold", datetime(2027, 2, 25, tzinfo=UTC))


@pytest.mark.parametrize("status", ["applied", "reversed"])
async def test_a_tier_match_answered_applied_or_since_reversed_is_taken(
    partner: MockPartner, connector: PartnerConnector, status: str
) -> None:
    partner.route(Call.MATCH_TIER).mock(return_value=partner.answer(_tier_match(status)))
    answer = await connector.match_tier("op-1", "alice", "Gold", datetime(2027, 2, 25, tzinfo=UTC))
    assert answer.status.value == status


@pytest.mark.parametrize("expires_at", ["2027-02-24T00:00:00Z", "2027-02-25T00:00:01Z", None])
async def test_a_tier_match_answered_with_another_expiry_than_sent_is_malformed(
    partner: MockPartner, connector: PartnerConnector, expires_at: str | None
) -> None:
    """The saga takes the answer as the tier held until the expiry sent (the member is told so):
    a record holding it until another time (or none) is not that match; it is left in doubt, for
    recovery to hold the partner's record against it and revert it."""
    partner.route(Call.MATCH_TIER).mock(return_value=partner.answer(_tier_match(expires_at=expires_at)))
    with pytest.raises(PartnerProtocolError, match="expires_at"):
        await connector.match_tier("op-1", "alice", "Gold", datetime(2027, 2, 25, tzinfo=UTC))


async def test_a_tier_match_answered_with_the_expiry_to_the_second_is_taken(
    partner: MockPartner, connector: PartnerConnector
) -> None:
    """A partner that keeps times to the second drops the fraction of the expiry sent: the same expiry."""
    partner.route(Call.MATCH_TIER).mock(return_value=partner.answer(_tier_match()))
    answer = await connector.match_tier("op-1", "alice", "Gold", datetime(2027, 2, 25, 0, 0, 0, 654321, tzinfo=UTC))
    assert answer.expires_at == datetime(2027, 2, 25, tzinfo=UTC)


async def test_a_5xx_is_an_unknown_outcome_retried_with_backoff(
    partner: MockPartner, connector: PartnerConnector, sleeps: Sleeps
) -> None:
    route = partner.route(Call.DEBIT).mock(return_value=httpx.Response(503))
    with pytest.raises(PartnerServerError) as raised:
        await connector.debit("op-1", "alice", 100)
    assert isinstance(raised.value, OutcomeUnknown)
    assert raised.value.code is ErrorCode.PARTNER_UNAVAILABLE
    assert route.call_count == 3
    assert sleeps.delays == [0.05, 0.1]  # 0.1 * 2**n, times 0.5 with random() = 0


def gzipped(answer: httpx.Response, padding: int = 0) -> httpx.Response:
    """``answer`` as a partner sends it compressed, its JSON object padded with ``padding``
    spaces (which compress to almost nothing)."""
    body = answer.content[:-1] + b" " * padding + answer.content[-1:]
    headers = {name: value for name, value in answer.headers.items() if name != "content-length"}
    return unread(answer.status_code, gzip.compress(body), {**headers, "content-encoding": "gzip"})


def unread(status: int, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """An answer whose body is decoded as it is read (``content=`` would decode it at once)."""
    return httpx.Response(status, stream=httpx.ByteStream(body), headers=headers)


async def test_a_compressed_answer_is_read_decoded_up_to_the_limit(
    partner: MockPartner, connector: PartnerConnector
) -> None:
    """A partner may compress its answers; a small one that inflates beyond
    ``MAX_ANSWER_BYTES`` is not inflated further, and one that is not what its encoding says
    is no answer either: an unknown outcome, like any malformed one."""
    route = partner.route(Call.DEBIT).mock(return_value=gzipped(partner.answer(operation())))
    assert (await connector.debit("op-1", "alice", 100)).points == 100
    route.mock(return_value=gzipped(partner.answer(operation()), padding=8 * MAX_ANSWER_BYTES))
    with pytest.raises(PartnerProtocolError, match=f"answer larger than {MAX_ANSWER_BYTES} bytes"):
        await connector.debit("op-1", "alice", 100)
    route.mock(return_value=unread(200, b"not gzip", {"content-encoding": "gzip"}))
    with pytest.raises(PartnerProtocolError, match="cannot be decoded"):
        await connector.debit("op-1", "alice", 100)


@pytest.mark.parametrize("encoding", ["deflate", "gzip, deflate"])
async def test_deflate_and_stacked_encodings_are_read_and_bounded_too(
    partner: MockPartner, connector: PartnerConnector, encoding: str
) -> None:
    """deflate as RFC 9110 says (zlib-wrapped) or raw, and encodings applied one over the other."""
    body = partner.answer(operation()).content
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    route = partner.route(Call.DEBIT).mock(
        return_value=unread(200, raw.compress(body) + raw.flush(), {"content-encoding": "deflate"})
    )
    assert (await connector.debit("op-1", "alice", 100)).points == 100
    encoded = zlib.compress(body) if encoding == "deflate" else zlib.compress(gzip.compress(body))
    route.mock(return_value=unread(200, encoded, {"content-encoding": encoding}))
    assert (await connector.debit("op-1", "alice", 100)).points == 100
    padded = b"{" + b" " * (2 * MAX_ANSWER_BYTES) + b"}"
    bomb = zlib.compress(padded) if encoding == "deflate" else zlib.compress(gzip.compress(padded))
    route.mock(return_value=unread(200, bomb, {"content-encoding": encoding}))
    with pytest.raises(PartnerProtocolError, match=f"answer larger than {MAX_ANSWER_BYTES} bytes"):
        await connector.debit("op-1", "alice", 100)


async def test_only_the_encodings_offered_are_accepted(partner: MockPartner, connector: PartnerConnector) -> None:
    """The exchange offers gzip and deflate (whatever decoders httpx may have installed); an
    answer in another encoding, or with bytes after its compressed end, is no answer."""
    route = partner.route(Call.DEBIT).mock(return_value=gzipped(partner.answer(operation())))
    await connector.debit("op-1", "alice", 100)
    assert route.calls.last.request.headers["accept-encoding"] == "gzip, deflate"
    route.mock(return_value=unread(200, b"\x1b\x00\x00", {"content-encoding": "br"}))
    with pytest.raises(PartnerProtocolError, match="cannot be decoded"):
        await connector.debit("op-1", "alice", 100)
    route.mock(
        return_value=unread(
            200, gzip.compress(partner.answer(operation()).content) + b"more", {"content-encoding": "gzip"}
        )
    )
    with pytest.raises(PartnerProtocolError, match="cannot be decoded"):
        await connector.debit("op-1", "alice", 100)


async def test_a_retry_after_a_5xx_gets_the_applied_result(partner: MockPartner, connector: PartnerConnector) -> None:
    route = partner.route(Call.DEBIT).mock(side_effect=[httpx.Response(500), partner.answer(operation())])
    assert (await connector.debit("op-1", "alice", 100)).points == 100
    sent = [partner.sent(call.request) for call in route.calls]
    assert sent[0] == sent[1], "a retry resends the same operation id and body"


async def test_a_timeout_is_an_unknown_outcome_and_is_not_retried(
    partner: MockPartner, connector: PartnerConnector
) -> None:
    route = partner.route(Call.DEBIT).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(PartnerTimeout):
        await connector.debit("op-1", "alice", 100)
    assert route.call_count == 1


async def test_a_read_that_times_out_is_not_retried_either(partner: MockPartner, connector: PartnerConnector) -> None:
    route = partner.route(Call.ACCOUNT).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(PartnerTimeout):
        await connector.account("alice")
    assert route.call_count == 1


async def test_a_dropped_connection_is_an_unknown_outcome_and_is_retried(
    partner: MockPartner, connector: PartnerConnector
) -> None:
    route = partner.route(Call.CREDIT).mock(
        side_effect=httpx.RemoteProtocolError("Server disconnected without sending a response.")
    )
    with pytest.raises(PartnerConnectionLost):
        await connector.credit("op-1", "alice", 100)
    assert route.call_count == 3


async def test_connection_refused_is_unavailable_before_sending_and_is_retried(
    partner: MockPartner, connector: PartnerConnector
) -> None:
    route = partner.route(Call.DEBIT).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(PartnerUnreachable) as raised:
        await connector.debit("op-1", "alice", 100)
    assert isinstance(raised.value, PartnerUnavailable)
    assert not isinstance(raised.value, OutcomeUnknown)
    assert route.call_count == 3


async def test_a_connect_timeout_is_unavailable_and_is_not_retried(
    partner: MockPartner, connector: PartnerConnector
) -> None:
    route = partner.route(Call.ACCOUNT).mock(side_effect=httpx.ConnectTimeout("black hole"))
    with pytest.raises(PartnerConnectTimeout):
        await connector.account("alice")
    assert route.call_count == 1


async def test_a_write_that_may_have_applied_stays_unknown_when_retries_cannot_connect(
    partner: MockPartner, connector: PartnerConnector
) -> None:
    partner.route(Call.DEBIT).mock(
        side_effect=[httpx.Response(500), httpx.ConnectError("refused"), httpx.ConnectError("refused")]
    )
    with pytest.raises(OutcomeUnknown) as raised:
        await connector.debit("op-1", "alice", 100)
    assert isinstance(raised.value, PartnerServerError)
    assert isinstance(raised.value.__cause__, PartnerUnreachable)


async def test_a_read_reports_its_last_failure(partner: MockPartner, connector: PartnerConnector) -> None:
    partner.route(Call.ACCOUNT).mock(
        side_effect=[httpx.Response(500), httpx.ConnectError("refused"), httpx.ConnectError("refused")]
    )
    with pytest.raises(PartnerUnreachable):
        await connector.account("alice")


async def test_a_refusal_after_an_unknown_attempt_is_definite(
    partner: MockPartner, connector: PartnerConnector
) -> None:
    """Had the first attempt applied as sent, the repeat would have returned it: the refusal is
    final (a conflict is not: see below)."""
    partner.route(Call.DEBIT).mock(side_effect=[httpx.Response(502), partner.refuse("INSUFFICIENT_POINTS")])
    with pytest.raises(InsufficientPoints):
        await connector.debit("op-1", "alice", 100)


@pytest.mark.parametrize(
    "first",
    [
        httpx.Response(502),
        # Applied otherwise than sent (twice the points) and answered so: no answer to this request.
        "otherwise",
    ],
    ids=["5xx", "answered-otherwise"],
)
async def test_a_conflict_after_an_unknown_attempt_of_a_write_stays_unknown(
    partner: MockPartner, connector: PartnerConnector, first: httpx.Response | str
) -> None:
    """The repeat of a write is refused because the partner holds another request under the
    exchange's own id: the first attempt may well have been applied, otherwise than sent, so
    the call is an unknown outcome (the saga asks the partner's record), not a refusal that
    would end it as if nothing had moved."""
    answered = partner.answer(operation(points=200)) if first == "otherwise" else first
    route = partner.route(Call.DEBIT).mock(side_effect=[answered, partner.refuse("OPERATION_CONFLICT")])
    with pytest.raises(OutcomeUnknown) as raised:
        await connector.debit("op-1", "alice", 100)
    assert isinstance(raised.value.__cause__, OperationConflict)
    assert route.call_count == 2


@pytest.fixture
async def impatient(registry: ConnectorRegistry, kind: str) -> AsyncIterator[PartnerConnector]:
    """A connector whose partner timeout is 50 ms."""
    yield registry.connector("impatient", connector_config(kind, timeout="0.05"))


class NeverEndingBody(httpx.AsyncByteStream):
    """A body that starts and then never finishes: headers arrive, the rest never does."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"operation_id": '
        await asyncio.Event().wait()


async def test_a_body_that_never_finishes_times_out(partner: MockPartner, impatient: PartnerConnector) -> None:
    partner.route(Call.DEBIT).mock(return_value=httpx.Response(200, stream=NeverEndingBody()))
    with pytest.raises(PartnerTimeout):
        await impatient.debit("op-1", "alice", 100)
