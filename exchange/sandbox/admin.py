"""The sandbox's admin API, under ``/_sandbox``: fault knobs, the operation log, balances, the
trace context callers sent.

It needs no token: a sandbox is a test and demo tool that listens on loopback. Nothing here
is part of the partner contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from exchange.connectors.contract import Eligibility
from exchange.sandbox.auth import TokenIssuer
from exchange.sandbox.faults import FaultInjector, FaultSettings
from exchange.sandbox.member_sign_in import MemberSignIn
from exchange.sandbox.points import MemberState, PointsSystem
from exchange.sandbox.tracing import TraceHeaders

PREFIX = "/_sandbox"


class NewMember(BaseModel):
    model_config = ConfigDict(extra="forbid")

    balance: StrictInt = 0
    tier: StrictStr | None = None
    verification: StrictStr = "0000"
    name: StrictStr | None = None
    eligibility: Eligibility = Eligibility.ELIGIBLE


class SignInSettings(BaseModel):
    """Who the member sign-in page signs assertions for: the partner's client id at the
    exchange and the exchange's return URLs."""

    model_config = ConfigDict(extra="forbid")

    client_id: StrictStr
    return_urls: list[StrictStr]


class RestartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    down_ms: StrictInt = 0


def _member(state: MemberState) -> dict[str, Any]:
    return {
        "member_ref": state.member_ref,
        "balance": state.balance,
        "opening_balance": state.opening_balance,
        "tier": state.tier,
        "own_tier": state.own_tier,
        "tier_expires_at": None if state.tier_expires_at is None else state.tier_expires_at.isoformat(),
    }


def _invalid(exc: ValidationError) -> JSONResponse:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return JSONResponse({"error": f"{where}: {first['msg']}"}, status_code=400)


def routes(
    *,
    program_id: str,
    points: PointsSystem,
    faults: FaultInjector,
    issuer: TokenIssuer,
    sign_in: MemberSignIn,
    traces: TraceHeaders,
    restart: Callable[[float], None] | None,
) -> list[Route]:
    async def info(_: Request) -> Response:
        return JSONResponse(
            {
                "program": program_id,
                "data_file": str(points.storage.path),
                "faults": faults.settings.model_dump(mode="json"),
                "token_ttl_seconds": int(issuer.ttl.total_seconds()),
            }
        )

    async def get_faults(_: Request) -> Response:
        return JSONResponse(faults.settings.model_dump(mode="json"))

    async def set_faults(request: Request) -> Response:
        try:
            settings = FaultSettings.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            return _invalid(exc)
        faults.configure(settings)
        return JSONResponse(faults.settings.model_dump(mode="json"))

    async def operations(_: Request) -> Response:
        log = await points.operation_log()
        return JSONResponse(
            {"operations": [{"seq": seq, **op.model_dump(mode="json", exclude={"target"})} for seq, op in log]}
        )

    async def trace_headers(_: Request) -> Response:
        return JSONResponse({"requests": list(traces.seen)})

    async def members(_: Request) -> Response:
        states = await points.members()
        return JSONResponse(
            {
                "members": [_member(state) for state in states],
                "total_points": sum(state.balance for state in states),
                "total_opening_points": sum(state.opening_balance for state in states),
            }
        )

    async def add_member(request: Request) -> Response:
        try:
            body = NewMember.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            return _invalid(exc)
        tier = body.tier or points.program.tiers[0].name
        state = await points.add_member(
            request.path_params["member_ref"], body.balance, tier, body.verification, body.name, body.eligibility
        )
        return JSONResponse(_member(state), status_code=201)

    async def assertion_key(_: Request) -> Response:
        return JSONResponse(sign_in.key.as_dict(private=False))

    async def set_sign_in(request: Request) -> Response:
        try:
            body = SignInSettings.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            return _invalid(exc)
        sign_in.client_id = body.client_id
        sign_in.return_urls = frozenset(body.return_urls)
        return JSONResponse({"client_id": sign_in.client_id, "return_urls": sorted(sign_in.return_urls)})

    async def revoke_tokens(_: Request) -> Response:
        return JSONResponse({"revoked": issuer.revoke_all()})

    async def restart_server(request: Request) -> Response:
        if restart is None:
            return JSONResponse({"error": "this sandbox is not run by a server that restarts"}, status_code=409)
        try:
            body = RestartRequest.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            return _invalid(exc)
        restart(body.down_ms / 1000)
        return JSONResponse({"restarting": True}, status_code=202)

    return [
        Route(PREFIX, info, methods=["GET"]),
        Route(f"{PREFIX}/faults", get_faults, methods=["GET"]),
        Route(f"{PREFIX}/faults", set_faults, methods=["POST"]),
        Route(f"{PREFIX}/operations", operations, methods=["GET"]),
        Route(f"{PREFIX}/traces", trace_headers, methods=["GET"]),
        Route(f"{PREFIX}/members", members, methods=["GET"]),
        Route(f"{PREFIX}/members/{{member_ref}}", add_member, methods=["PUT"]),
        Route(f"{PREFIX}/assertion-key", assertion_key, methods=["GET"]),
        Route(f"{PREFIX}/member-sign-in", set_sign_in, methods=["PUT"]),
        Route(f"{PREFIX}/tokens/revoke", revoke_tokens, methods=["POST"]),
        Route(f"{PREFIX}/restart", restart_server, methods=["POST"]),
    ]
