"""The REST flavour of the contract (``partners/openapi.yaml``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from exchange.connectors.client import HttpRequest, Reply
from exchange.connectors.connector import Call, raise_refusal
from exchange.connectors.contract import Problem
from exchange.connectors.errors import PartnerProtocolError


def _segment(value: str) -> str:
    return quote(value, safe="")


class RestFlavour:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def request(self, call: Call, args: dict[str, Any]) -> HttpRequest:
        base = self.base_url
        match call:
            case Call.ACCOUNT:
                return HttpRequest("GET", f"{base}/members/{_segment(args['member_ref'])}")
            case Call.VERIFY_MEMBER:
                return HttpRequest(
                    "POST",
                    f"{base}/members/{_segment(args['member_ref'])}/verify",
                    {"verification": args["verification"]},
                )
            case Call.OPERATION_STATUS:
                return HttpRequest("GET", f"{base}/operations/{_segment(args['operation_id'])}")
            case Call.DEBIT:
                return HttpRequest("POST", f"{base}/debits", args)
            case Call.CREDIT:
                return HttpRequest("POST", f"{base}/credits", args)
            case Call.REVERSE:
                return HttpRequest("POST", f"{base}/reversals", args)
            case Call.MATCH_TIER:
                return HttpRequest("POST", f"{base}/tier-matches", args)
        raise AssertionError(call)

    def result(self, call: Call, reply: Reply) -> Any:
        status = reply.response.status_code
        if 200 <= status < 300:
            return reply.json_object()
        if 400 <= status < 500:
            problem = reply.parse(Problem, reply.json_object())
            facts = {
                key: value
                for key, value in problem.model_dump().items()
                if key not in ("code", "title", "status", "detail", "type", "instance")
            }
            raise_refusal(call, reply, problem.code, problem.detail or problem.title or "", facts)
            return None
        raise reply.error(PartnerProtocolError, f"unexpected status {status}")
