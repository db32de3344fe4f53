"""``PUT /settlement/records/{partnerId}/{period}``: a partner's records file, streamed.

GraphQL bodies are capped (``EXCHANGE_MAX_REQUEST_BYTES``), so ``importPartnerRecords`` suits
small files only. This route takes a file of any size as ``text/csv``, whole first (spilled to a
temporary file past a few megabytes: :func:`~exchange.streaming.spooled`), and hands it to the
same application service the mutation calls
(:meth:`~exchange.services.settlement.SettlementService.import_records`): the validator reads it
block by block in a worker thread, so the file is never held in memory. It is authorized as the
mutation is (staff with ``settlement:write``, or the partner itself with ``partner:write``) and
answers the reconciliation's summary as JSON; refusals are GraphQL-shaped errors
(``extensions.code``, and ``line`` and ``reason`` for a malformed file).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from exchange.api.authentication import principal_of, www_authenticate
from exchange.api.fields.settlement import IMPORTS_RECORDS
from exchange.api.inputs import ID_LENGTH
from exchange.api.permissions import Rule
from exchange.api.refusals import domain_refusal, refusal
from exchange.auth.principal import Principal
from exchange.errors import ErrorCode, ExchangeError
from exchange.ledger.periods import PERIOD_LENGTH, overlong_period
from exchange.services.settlement import ReconciliationView, SettlementService
from exchange.streaming import records_upload_problem, spooled
from exchange.text import text_problem

#: ``period`` takes the rest of the path, so that a period written with a slash (``11/2026``) is
#: refused saying how a period is written, not as an address that serves nothing.
PATH = "/settlement/records/{partner_id}/{period:path}"


def summary(view: ReconciliationView) -> dict[str, Any]:
    """The reconciliation as the GraphQL type ``Reconciliation`` names its fields."""
    row = view.reconciliation
    return {
        "id": row.id,
        "partnerId": row.partner,
        "period": row.period,
        "sequence": row.sequence,
        "importedAt": row.imported_at.isoformat(),
        "importedBy": row.imported_by,
        "source": row.source,
        "fileSha256": row.file_sha256,
        "lines": row.lines,
        "matched": row.matched,
        "missingInLedger": row.missing_in_ledger,
        "missingInPartner": row.missing_in_partner,
        "amountMismatch": row.amount_mismatch,
        "duplicate": row.duplicate,
        "unresolvedBreaks": view.unresolved,
        **{
            name: {"amount": str(view.currency.from_minor(minor)), "currency": view.currency.code}
            for name, minor in (
                ("recordsTotal", view.totals.records),
                ("ledgerTotal", view.totals.ledger),
                ("totalDifference", view.totals.difference),
            )
        },
    }


def authorized(request: Request, rule: Rule, arguments: dict[str, Any]) -> Principal | Response:
    """The caller of a route that ``rule`` guards, or its refusal, as GraphQL's field rules
    refuse: 401 without a token, 403 without the scope or tenant, saying what to do next."""
    principal = principal_of(request)
    if principal is None:
        return refusal(
            request.headers,
            401,
            "an access token is needed: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": www_authenticate()},
        )
    if not rule.allows(principal, None, arguments):
        return refusal(request.headers, 403, rule.forbidden(principal, None, arguments).message)
    return principal


def path_refusal(request: Request, partner: str, period: str) -> Response | None:
    """The refusal of a ``/{partnerId}/{period}`` path that names nothing the exchange could
    have (``400``, naming the field), or ``None``; a period longer than ``YYYY-MM`` is told the
    form, as the calendar tells it one of the right length."""
    if problem := overlong_period(period):
        return refusal(request.headers, 400, problem, code=ErrorCode.BAD_USER_INPUT, field="period")
    for name, value, limit in (("partnerId", partner, ID_LENGTH), ("period", period, PERIOD_LENGTH)):
        if problem := text_problem(value, limit):
            return refusal(request.headers, 400, f"{name} {problem}", code=ErrorCode.BAD_USER_INPUT, field=name)
    return None


class RecordsUpload:
    """The route's endpoint; ``settlement`` is the service the GraphQL mutation calls too."""

    def __init__(self, settlement: SettlementService) -> None:
        self._settlement = settlement

    async def put(self, request: Request) -> Response:
        partner, period = request.path_params["partner_id"], request.path_params["period"]
        principal = authorized(request, IMPORTS_RECORDS, {"partner_id": partner})
        if isinstance(principal, Response):
            return principal
        if problem := records_upload_problem(request.headers):
            return refusal(request.headers, 415, problem)
        if bad_path := path_refusal(request, partner, period):
            return bad_path
        try:
            async with spooled(request.stream()) as body:
                view = await self._settlement.import_records(partner, period, body, by=principal.client_id)
        except ExchangeError as refused:
            return domain_refusal(request, refused)
        return JSONResponse(summary(view))
