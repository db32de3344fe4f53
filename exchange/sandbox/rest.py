"""The REST transport of the contract (``partners/openapi.yaml``)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    StrictInt,
    StrictStr,
    ValidationError,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from exchange.connectors import batch_files
from exchange.connectors.contract import HTTP_STATUS, ContractCode, OperationState
from exchange.sandbox.points import Refusal, Written
from exchange.sandbox.service import PartnerService

PROBLEM = "application/problem+json"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VerifyBody(_Body):
    verification: StrictStr


class MoveBody(_Body):
    operation_id: StrictStr
    member_ref: StrictStr
    points: StrictInt


class ReversalBody(_Body):
    operation_id: StrictStr
    reverses: StrictStr
    points: StrictInt | None = None


class TierMatchBody(_Body):
    operation_id: StrictStr
    member_ref: StrictStr
    tier: StrictStr
    expires_at: AwareDatetime


B = TypeVar("B", bound=_Body)


def problem(code: ContractCode, detail: str, **facts: Any) -> JSONResponse:
    status = HTTP_STATUS[code]
    return JSONResponse(
        {
            "title": code.value.replace("_", " ").capitalize(),
            "status": status,
            "code": code.value,
            "detail": detail,
            **facts,
        },
        status_code=status,
        media_type=PROBLEM,
    )


async def _body(request: Request, model: type[B]) -> B:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise Refusal(ContractCode.INVALID_REQUEST, f"{where}: {first['msg']}") from None


def _written(written: Written) -> JSONResponse:
    pending = written.operation.status is OperationState.PENDING
    status = (202 if pending else 201) if written.created else 200
    return JSONResponse(written.operation.model_dump(mode="json"), status_code=status)


def routes(service: PartnerService) -> list[Route]:
    async def account(request: Request) -> Response:
        result = await service.account(request.path_params["member_ref"])
        return JSONResponse(result.model_dump(mode="json"))

    async def verify(request: Request) -> Response:
        body = await _body(request, VerifyBody)
        result = await service.verify(request.path_params["member_ref"], body.verification)
        return JSONResponse(result.model_dump(mode="json"))

    async def operation(request: Request) -> Response:
        operation_id = request.path_params["operation_id"]
        result = await service.operation(operation_id)
        if result is None:
            return problem(ContractCode.OPERATION_NOT_FOUND, f"no operation {operation_id}")
        return JSONResponse(result.model_dump(mode="json"))

    async def debit(request: Request) -> Response:
        body = await _body(request, MoveBody)
        return _written(await service.debit(body.operation_id, body.member_ref, body.points))

    async def credit(request: Request) -> Response:
        body = await _body(request, MoveBody)
        return _written(await service.credit(body.operation_id, body.member_ref, body.points))

    async def reversal(request: Request) -> Response:
        body = await _body(request, ReversalBody)
        return _written(await service.reverse(body.operation_id, body.reverses, body.points))

    async def tier_match(request: Request) -> Response:
        body = await _body(request, TierMatchBody)
        return _written(await service.match_tier(body.operation_id, body.member_ref, body.tier, body.expires_at))

    async def credits_file(request: Request) -> Response:
        text = (await request.body()).decode()
        rows = text.splitlines()
        if not rows or rows[0] != batch_files.CREDITS_HEADER:
            raise Refusal(ContractCode.INVALID_REQUEST, f"line 1: expected {batch_files.CREDITS_HEADER}")
        try:
            lines = [batch_files.parse_credit(row, number) for number, row in enumerate(rows[1:], start=2)]
        except batch_files.MalformedLine as malformed:
            raise Refusal(ContractCode.INVALID_REQUEST, str(malformed), line=malformed.number) from None
        batch_id = request.path_params["batch_id"]
        count = await service.take_credits_file(batch_id, lines)
        return JSONResponse({"batch_id": batch_id, "lines": count}, status_code=202)

    async def results_file(request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        results = await service.batch_results(batch_id)
        if results is None:
            return problem(ContractCode.OPERATION_NOT_FOUND, f"no batch {batch_id}")
        return PlainTextResponse("".join(results), media_type=batch_files.MEDIA_TYPE)

    return [
        Route("/batches/{batch_id}/credits", credits_file, methods=["PUT"]),
        Route("/batches/{batch_id}/results", results_file, methods=["GET"]),
        Route("/members/{member_ref}", account, methods=["GET"]),
        Route("/members/{member_ref}/verify", verify, methods=["POST"]),
        Route("/operations/{operation_id}", operation, methods=["GET"]),
        Route("/debits", debit, methods=["POST"]),
        Route("/credits", credit, methods=["POST"]),
        Route("/reversals", reversal, methods=["POST"]),
        Route("/tier-matches", tier_match, methods=["POST"]),
    ]


async def refusal_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    return problem(exc.code, exc.detail, **exc.facts)
