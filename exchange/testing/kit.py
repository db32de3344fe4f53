"""Acting on a running gateway as its callers do: partners, staff and members over HTTP.

Tests, the soak and the benchmarks all use it. Clients are created as an operator would (in
the database); tokens come from the gateway's token endpoint, member tokens through the
assertion grant a partner uses. A member token spends only the points of the program that
asserted it: :meth:`ExchangeKit.linked_member` gives a member a token from each of their
programs, :meth:`ExchangeKit.debit_consent` a consent to spend one program's points under
another's token.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey

from exchange.auth import assertions, clients
from exchange.auth.clients import ClientCredentials
from exchange.auth.scopes import Role, Scope
from exchange.db.database import Database
from exchange.settings import Settings

LINK = """mutation($program: ID!, $ref: String!, $verification: String!) {
  linkAccount(programId: $program, memberRef: $ref, verification: $verification) { memberRef } }"""
#: How long :meth:`ExchangeKit.link` asks again while the partner answers too late.
LINK_PATIENCE_SECONDS = 30.0
AUTHORIZE_DEBIT = """mutation($program: ID!, $points: Int!) {
  authorizeDebit(programId: $program, points: $points) { id } }"""


@dataclass
class ExchangeKit:
    """Acts on a running gateway as its callers do: clients are created as an operator would
    (in the database), tokens are obtained over HTTP from the token endpoint."""

    settings: Settings
    http: httpx.AsyncClient
    db: Database
    partner_keys: dict[str, ECKey] = field(default_factory=dict)
    partner_clients: dict[str, ClientCredentials] = field(default_factory=dict)

    @property
    def token_endpoint(self) -> str:
        return f"{self.settings.issuer_url}/oauth/token"

    async def new_client(
        self,
        role: Role,
        program_id: str | None = None,
        scopes: frozenset[Scope] | None = None,
        member_scopes: frozenset[Scope] | None = None,
    ) -> ClientCredentials:
        async with self.db.transaction() as session:
            return await clients.create_client(
                session,
                role=role,
                program_id=program_id,
                scopes=scopes,
                member_scopes=member_scopes,
                now=datetime.now(UTC),
            )

    async def request_token(self, credentials: ClientCredentials, **form: str) -> httpx.Response:
        return await self.http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", **form},
            auth=(credentials.client.client_id, credentials.client_secret),
        )

    async def client_token(self, credentials: ClientCredentials, scope: str | None = None) -> str:
        response = await self.request_token(credentials, **({"scope": scope} if scope else {}))
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    async def partner(self, program_id: str) -> ClientCredentials:
        """The partner's client (one per program, made on first use)."""
        if program_id not in self.partner_clients:
            self.partner_clients[program_id] = await self.new_client(Role.PARTNER, program_id)
        return self.partner_clients[program_id]

    async def partner_token(self, program_id: str, scope: str | None = None) -> str:
        return await self.client_token(await self.partner(program_id), scope)

    async def staff_token(self, role: Role, scope: str | None = None) -> str:
        return await self.client_token(await self.new_client(role), scope)

    async def assertion_key(self, program_id: str) -> ECKey:
        """The key the partner signs member assertions with (registered on first use)."""
        if program_id not in self.partner_keys:
            key = ECKey.generate_key("P-256", auto_kid=True)
            async with self.db.transaction() as session:
                await assertions.register_assertion_key(
                    session, program_id, json.dumps(key.as_dict(private=False)), datetime.now(UTC)
                )
            self.partner_keys[program_id] = key
        return self.partner_keys[program_id]

    async def assertion(self, program_id: str, member_ref: str, **claims: Any) -> str:
        key = await self.assertion_key(program_id)
        client_id = (await self.partner(program_id)).client.client_id
        now = datetime.now(UTC)
        payload = {
            "iss": client_id,
            "sub": member_ref,
            "aud": self.token_endpoint,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(minutes=5)).timestamp()),
            "jti": f"{member_ref}-{now.timestamp()}-{id(claims)}",
            **claims,
        }
        return jwt.encode({"alg": "ES256", "kid": key.kid}, payload, key, algorithms=["ES256"])

    async def request_member_token(self, assertion: str, **form: str) -> httpx.Response:
        return await self.http.post(
            "/oauth/token",
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion, **form},
        )

    async def member_token(self, program_id: str, member_ref: str) -> str:
        response = await self.request_member_token(await self.assertion(program_id, member_ref))
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    async def linked_member(self, member_ref: str, programs: Sequence[str], verification: str) -> dict[str, str]:
        """A token for ``member_ref`` from each of ``programs``, by program: ``programs[0]``
        vouches for the member, who links their accounts at the others (their partners check
        ``verification``); then each of those partners asserts the member too."""
        first = await self.member_token(programs[0], member_ref)
        for program in programs[1:]:
            await self.link(first, program, member_ref, verification)
        return {programs[0]: first} | {
            program: await self.member_token(program, member_ref) for program in programs[1:]
        }

    async def link(self, token: str, program: str, member_ref: str, verification: str) -> None:
        """Link the account ``member_ref`` at ``program`` under ``token``, asked again while the
        partner answers too late for the gateway (``PARTNER_UNAVAILABLE``): on a busy machine a
        sandbox may miss a short timeout, and the partner's check of the member is a read, so
        asking again is safe. Any other refusal fails at once."""
        deadline = time.monotonic() + LINK_PATIENCE_SECONDS
        while True:
            response = await self.graphql(LINK, token, program=program, ref=member_ref, verification=verification)
            body = response.json()
            codes = {error.get("extensions", {}).get("code") for error in body.get("errors", [])}
            if codes != {"PARTNER_UNAVAILABLE"} or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert response.status_code == 200 and "errors" not in body, body

    async def debit_consent(self, token: str, program: str, points: int) -> str:
        """The id of a consent to one debit of ``points`` of ``program``, given under ``token``
        (which ``program`` must have asserted)."""
        return str((await self.data(AUTHORIZE_DEBIT, token, program=program, points=points))["authorizeDebit"]["id"])

    async def graphql(
        self, query: str, token: str | None = None, *, accept: str = "application/json", **variables: Any
    ) -> httpx.Response:
        headers = {
            "accept": accept,
            "content-type": "application/json",
            **({"authorization": f"Bearer {token}"} if token else {}),
        }
        # json.dumps escapes what is not ASCII, so tests can send any string, lone surrogates too.
        body = json.dumps({"query": query, "variables": variables})
        return await self.http.post("/graphql", content=body, headers=headers)

    async def data(self, query: str, token: str | None = None, **variables: Any) -> dict[str, Any]:
        """The data of a query that must succeed whole."""
        response = await self.graphql(query, token, **variables)
        body = response.json()
        assert response.status_code == 200 and "errors" not in body, body
        return dict(body["data"])
