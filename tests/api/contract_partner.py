"""The smallest partner points system the exchange can convert points into and out of, written
from partners/CONTRACT.md and partners/openapi.yaml alone (not from the sandbox partner).

It issues the exchange client-credential tokens, serves member lookup and verification, and
applies debits, credits and reversals keyed by the exchange's operation id, in memory. It keeps
every request it was sent, so a test can hold the exchange to what the documents say it sends.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

OPERATION_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
MEMBER_REF = re.compile(r"[A-Za-z0-9._:@+-]{1,128}")
MOST_POINTS = 2**53 - 1


@dataclass
class Member:
    balance: int
    tier: str
    verification: str
    name: str | None = None


@dataclass
class Seen:
    """One request the exchange sent: what a test compares with the documents."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Refusal(Exception):
    """A contract refusal: an RFC 9457 problem document with the contract ``code``."""

    def __init__(self, status: int, code: str, detail: str, **facts: int) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.facts = status, code, detail, facts

    def response(self) -> Response:
        body = {"title": self.code, "status": self.status, "code": self.code, "detail": self.detail, **self.facts}
        return JSONResponse(body, status_code=self.status, media_type="application/problem+json")


@dataclass
class ContractPartner:
    """A partner's points system for one program, whose client at it is ``client_id``."""

    client_id: str
    client_secret: str
    members: dict[str, Member] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    seen: list[Seen] = field(default_factory=list)
    #: Member refs whose credits are refused (404 UNKNOWN_MEMBER): a definite failure at step 3.
    closed_to_credits: set[str] = field(default_factory=set)
    #: Kinds of write ("debit", ...) whose next one is applied and then answered 500, as by a
    #: partner that fails after committing.
    fail_after_applying: set[str] = field(default_factory=set)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/oauth/token", self.token, methods=["POST"]),
                Route("/members/{member_ref}", self.member, methods=["GET"]),
                Route("/members/{member_ref}/verify", self.verify, methods=["POST"]),
                Route("/debits", self.debit, methods=["POST"]),
                Route("/credits", self.credit, methods=["POST"]),
                Route("/reversals", self.reverse, methods=["POST"]),
                Route("/operations/{operation_id}", self.operation, methods=["GET"]),
            ]
        )

    def seen_at(self, path: str) -> list[Seen]:
        return [request for request in self.seen if request.path == path]

    async def _record(self, request: Request) -> bytes:
        body = await request.body()
        self.seen.append(Seen(request.method, request.url.path, dict(request.headers), body))
        return body

    async def token(self, request: Request) -> Response:
        await self._record(request)
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            user = password = ""
        if scheme.lower() != "basic" or (unquote_plus(user), unquote_plus(password)) != (
            self.client_id,
            self.client_secret,
        ):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = await request.form()
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if form.get("scope") != "points":
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    async def _authorized(self, request: Request) -> Any:
        """The request's JSON body (None for a GET) once its bearer token is checked."""
        body = await self._record(request)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in self.tokens:
            raise Refusal(401, "INVALID_TOKEN", "no valid bearer token")
        return None if request.method == "GET" else _json(body)

    def _member(self, member_ref: str) -> Member:
        if member_ref not in self.members:
            raise Refusal(404, "UNKNOWN_MEMBER", f"no member {member_ref}")
        return self.members[member_ref]

    async def member(self, request: Request) -> Response:
        try:
            await self._authorized(request)
            ref = request.path_params["member_ref"]
            member = self._member(ref)
        except Refusal as refusal:
            return _refused(refusal)
        account = {"member_ref": ref, "balance": member.balance, "tier": member.tier}
        return JSONResponse(account | {"tier_expires_at": None, "expiring": []})

    async def verify(self, request: Request) -> Response:
        try:
            body = await self._authorized(request)
            ref = request.path_params["member_ref"]
            member = self._member(ref)
            if not isinstance(body, dict) or not isinstance(body.get("verification"), str):
                raise Refusal(400, "INVALID_REQUEST", "verification: a string is required")
        except Refusal as refusal:
            return _refused(refusal)
        verified = secrets.compare_digest(body["verification"], member.verification)
        return JSONResponse(
            {
                "member_ref": ref,
                "verified": verified,
                "name": member.name if verified else None,
                "eligibility": "eligible",
            }
        )

    async def debit(self, request: Request) -> Response:
        return await self._movement(request, "debit")

    async def credit(self, request: Request) -> Response:
        return await self._movement(request, "credit")

    async def _movement(self, request: Request, kind: str) -> Response:
        try:
            body = await self._authorized(request)
            operation_id, ref, points = _movement_fields(body)
            if (repeat := self._repeat(operation_id, body | {"kind": kind})) is not None:
                return repeat
            member = self._member(ref)
            if kind == "credit" and ref in self.closed_to_credits:
                raise Refusal(404, "UNKNOWN_MEMBER", f"member {ref} takes no credits")
            if kind == "debit" and member.balance < points:
                raise Refusal(
                    422, "INSUFFICIENT_POINTS", f"{ref} has {member.balance}, {points} asked", balance=member.balance
                )
        except Refusal as refusal:
            return _refused(refusal)
        member.balance += points if kind == "credit" else -points
        operation = _operation(operation_id, kind, ref, points, member.balance)
        return self._applied(operation_id, body | {"kind": kind}, operation)

    async def reverse(self, request: Request) -> Response:
        try:
            body = await self._authorized(request)
            if not isinstance(body, dict) or set(body) - {"operation_id", "reverses", "points"}:
                raise Refusal(400, "INVALID_REQUEST", "a reversal is operation_id, reverses and points")
            operation_id, reverses = _id(body.get("operation_id")), _id(body.get("reverses"))
            points = None if body.get("points") is None else _points(body["points"])
            if (repeat := self._repeat(operation_id, body | {"kind": "reversal"})) is not None:
                return repeat
            target = self.operations.get(reverses)
            if target is None:
                # An id never seen is voided: if it arrives later, it is refused.
                target = _operation(reverses, None, None, None, None) | {"status": "voided"}
                self.operations[reverses] = target
                self.requests[reverses] = {"voided": True}
                reversed_points, balance, ref = 0, None, None
            else:
                if target["kind"] == "reversal":
                    raise Refusal(422, "NOT_REVERSIBLE", f"{reverses} is a reversal")
                left = target["points"] - target["reversed_points"]
                reversed_points = left if points is None else points
                if reversed_points > left or left == 0:
                    raise Refusal(422, "REVERSAL_EXCEEDS_ORIGINAL", f"{left} left", reversible_points=left)
                ref = target["member_ref"]
                member = self.members[ref]
                sign = 1 if target["kind"] == "debit" else -1
                if member.balance + sign * reversed_points < 0:
                    raise Refusal(422, "INSUFFICIENT_POINTS", f"{ref} spent it", balance=member.balance)
                member.balance += sign * reversed_points
                balance = member.balance
                target["reversed_points"] += reversed_points
                if target["reversed_points"] == target["points"]:
                    target["status"] = "reversed"
        except Refusal as refusal:
            return _refused(refusal)
        operation = _operation(operation_id, "reversal", ref, reversed_points, balance) | {"reverses": reverses}
        return self._applied(operation_id, body | {"kind": "reversal"}, operation)

    async def operation(self, request: Request) -> Response:
        try:
            await self._authorized(request)
            operation_id = request.path_params["operation_id"]
            if operation_id not in self.operations:
                raise Refusal(404, "OPERATION_NOT_FOUND", f"no operation {operation_id}")
        except Refusal as refusal:
            return _refused(refusal)
        return JSONResponse(self._as_it_stands(operation_id))

    def _as_it_stands(self, operation_id: str) -> dict[str, Any]:
        operation = dict(self.operations[operation_id])
        if operation["reverses"] is not None:
            operation["target"] = dict(self.operations[operation["reverses"]])
        return operation

    def _repeat(self, operation_id: str, request: dict[str, Any]) -> Response | None:
        """The recorded answer to a repeat; a refusal for a voided id or another request."""
        if operation_id not in self.requests:
            return None
        if self.requests[operation_id] == {"voided": True}:
            raise Refusal(409, "OPERATION_VOIDED", f"{operation_id} was voided by a reversal")
        if self.requests[operation_id] != request:
            raise Refusal(409, "OPERATION_CONFLICT", f"{operation_id} was used for another request")
        return JSONResponse(self._as_it_stands(operation_id), status_code=200)

    def _applied(self, operation_id: str, request: dict[str, Any], operation: dict[str, Any]) -> Response:
        self.operations[operation_id], self.requests[operation_id] = operation, request
        if operation["kind"] in self.fail_after_applying:
            self.fail_after_applying.discard(operation["kind"])
            return Response("crashed", status_code=500)
        return JSONResponse(self._as_it_stands(operation_id), status_code=201)


def _operation(
    operation_id: str, kind: str | None, ref: str | None, points: int | None, balance: int | None
) -> dict[str, Any]:
    return {
        "operation_id": operation_id,
        "kind": kind,
        "status": "applied",
        "member_ref": ref,
        "points": points,
        "reversed_points": 0,
        "balance_after": balance,
        "reverses": None,
        "target": None,
        "tier": None,
        "expires_at": None,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as error:
        raise Refusal(400, "INVALID_REQUEST", "the body is not JSON") from error


def _movement_fields(body: Any) -> tuple[str, str, int]:
    if not isinstance(body, dict) or set(body) != {"operation_id", "member_ref", "points"}:
        raise Refusal(400, "INVALID_REQUEST", "a debit or credit is operation_id, member_ref and points")
    ref = body["member_ref"]
    if not isinstance(ref, str) or not MEMBER_REF.fullmatch(ref):
        raise Refusal(400, "INVALID_REQUEST", "member_ref: not a member reference")
    return _id(body["operation_id"]), ref, _points(body["points"])


def _id(value: Any) -> str:
    if not isinstance(value, str) or not OPERATION_ID.fullmatch(value):
        raise Refusal(400, "INVALID_REQUEST", "operation_id: 1 to 128 of A-Z a-z 0-9 . _ : @ -")
    return value


def _points(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MOST_POINTS:
        raise Refusal(400, "INVALID_REQUEST", "points: a JSON integer from 1 to 2^53 - 1")
    return value


def _refused(refusal: Refusal) -> Response:
    response = refusal.response()
    if refusal.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response
