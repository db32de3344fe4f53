"""The GraphQL flavour of the contract (``partners/contract.graphql``).

Each document aliases the partner's camelCase fields to the contract's snake_case names and
the root field to ``result``, so an answer's ``data.result`` reads exactly like the REST
answer and is parsed by the same models. Refusals are GraphQL errors whose
``extensions.code`` is a contract code; any other error means the outcome is unknown.
"""

from __future__ import annotations

from typing import Any

from exchange.connectors.client import HttpRequest, Reply
from exchange.connectors.connector import Call, raise_refusal
from exchange.connectors.contract import wire_text_problem
from exchange.connectors.errors import PartnerProtocolError

_OPERATION = """
fragment OperationFields on Operation {
  operation_id: operationId kind status member_ref: memberRef points
  reversed_points: reversedPoints balance_after: balanceAfter reverses tier
  expires_at: expiresAt created_at: createdAt
}
fragment FullOperation on Operation { ...OperationFields target { ...OperationFields } }
"""

_MOVE = "($operationId: String!, $memberRef: String!, $points: Points!) {{ result: {field}(operationId: $operationId, memberRef: $memberRef, points: $points) {{ ...FullOperation }} }}"

DOCUMENTS: dict[Call, str] = {
    Call.ACCOUNT: """query Account($memberRef: String!) {
  result: member(memberRef: $memberRef) {
    member_ref: memberRef balance tier tier_expires_at: tierExpiresAt
    expiring { points expires_on: expiresOn }
  }
}""",
    Call.VERIFY_MEMBER: """query VerifyMember($memberRef: String!, $verification: String!) {
  result: verifyMember(memberRef: $memberRef, verification: $verification) {
    member_ref: memberRef verified name eligibility
  }
}""",
    Call.OPERATION_STATUS: """query OperationStatus($operationId: String!) {
  result: operation(operationId: $operationId) { ...FullOperation }
}"""
    + _OPERATION,
    Call.DEBIT: "mutation Debit" + _MOVE.format(field="debit") + _OPERATION,
    Call.CREDIT: "mutation Credit" + _MOVE.format(field="credit") + _OPERATION,
    Call.REVERSE: """mutation Reverse($operationId: String!, $reverses: String!, $points: Points) {
  result: reverse(operationId: $operationId, reverses: $reverses, points: $points) { ...FullOperation }
}"""
    + _OPERATION,
    Call.MATCH_TIER: """mutation MatchTier($operationId: String!, $memberRef: String!, $tier: String!, $expiresAt: DateTime!) {
  result: matchTier(operationId: $operationId, memberRef: $memberRef, tier: $tier, expiresAt: $expiresAt) { ...FullOperation }
}"""
    + _OPERATION,
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class GraphQLFlavour:
    def __init__(self, base_url: str) -> None:
        self.endpoint = base_url.rstrip("/") + "/graphql"

    def request(self, call: Call, args: dict[str, Any]) -> HttpRequest:
        variables = {_camel(name): value for name, value in args.items()}
        return HttpRequest("POST", self.endpoint, {"query": DOCUMENTS[call], "variables": variables})

    def result(self, call: Call, reply: Reply) -> Any:
        status = reply.response.status_code
        if not 200 <= status < 300:
            raise reply.error(PartnerProtocolError, f"unexpected status {status}")
        body = reply.json_object()
        errors = body.get("errors")
        data = body.get("data")
        if errors and isinstance(data, dict) and data.get("result") is not None:
            # A refused field is null; a result beside an error says the call both went through
            # and was refused: a write's outcome is unknown, never a clean refusal.
            raise reply.error(PartnerProtocolError, "answer has both data.result and errors")
        if errors:
            first = errors[0] if isinstance(errors, list) and isinstance(errors[0], dict) else {}
            extensions = first.get("extensions")
            extensions = extensions if isinstance(extensions, dict) else {}
            facts = {key: value for key, value in extensions.items() if key != "code"}
            message = str(first.get("message", ""))
            if problem := wire_text_problem(message):  # the refusal's words are kept with the row
                raise reply.error(PartnerProtocolError, f"malformed error: message: {problem}")
            raise_refusal(call, reply, extensions.get("code"), message, facts)
            return None
        if not isinstance(data, dict) or "result" not in data:
            raise reply.error(PartnerProtocolError, "answer has no data.result")
        return data["result"]
