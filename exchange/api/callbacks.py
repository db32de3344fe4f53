"""``POST /partners/{programId}/callbacks``: a partner's signed word on a write it left pending.

The route carries no bearer token: the signature (:mod:`exchange.connectors.callbacks`) is
the partner's credential. It only translates: the body (at most 64 KiB, read whole: it is one
operation object) and the headers go to :class:`~exchange.services.late.LateOutcomes`, whose
answer is the saga row as it now stands; refusals are GraphQL-shaped errors with
``extensions.code`` — 401 for a forged or stale callback, 404 for an operation the program
does not have at the exchange, 409 for one whose own answer has not reached the exchange yet
(to be sent again), 400 for a malformed one — and change nothing.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from exchange.api.inputs import ID_LENGTH
from exchange.api.refusals import domain_refusal, refusal
from exchange.errors import ErrorCode, ExchangeError
from exchange.services.late import LateOutcomes
from exchange.text import text_problem

PATH = "/partners/{program_id}/callbacks"
MAX_BYTES = 64 * 1024


class PartnerCallbacks:
    def __init__(self, late: LateOutcomes) -> None:
        self._late = late

    async def post(self, request: Request) -> Response:
        program_id = request.path_params["program_id"]
        if problem := text_problem(program_id, ID_LENGTH):
            return refusal(
                request.headers, 400, f"programId {problem}", code=ErrorCode.BAD_USER_INPUT, field="programId"
            )
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BYTES:
                return refusal(request.headers, 413, f"a callback is at most {MAX_BYTES} bytes")
        try:
            concluded = await self._late.callback(program_id, request.headers, body)
        except ExchangeError as refused:
            return domain_refusal(request, refused)
        return JSONResponse(
            {"saga": concluded.saga, "id": concluded.row_id, "status": concluded.status, "step": concluded.step}
        )
