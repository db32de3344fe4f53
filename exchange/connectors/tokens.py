"""OAuth 2.0 client-credentials tokens for one partner, fetched over the partner's own client.

The token is cached until ``refresh_margin`` seconds before it expires (at most half its
lifetime, so a short-lived token is not refetched on every call), and fetched once for all
the calls that need it at the same time. A call that gets a 401 invalidates the token it used
and asks again, once. Fetching over the partner's ``httpx.AsyncClient`` keeps every byte to
a partner on one client: one timeout, one connection pool, one thing for respx to mock. Its
answer is read as the contract's are, up to ``MAX_ANSWER_BYTES`` decoded (:func:`read_answer`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote_plus

import httpx
from pydantic import ValidationError

from exchange.connectors.contract import TokenResponse
from exchange.connectors.errors import (
    PartnerAuthenticationFailed,
    PartnerConnectTimeout,
    PartnerError,
    PartnerTokenUnavailable,
    PartnerUnreachable,
    transport_failure,
)
from exchange.connectors.transport import AnswerTooLarge, read_answer


@dataclass(frozen=True)
class ClientCredentials:
    token_url: str
    client_id: str
    client_secret: str
    scope: str | None


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float | None  # timer reading after which it is fetched anew; None: until a 401


def _basic_auth(credentials: ClientCredentials) -> httpx.BasicAuth:
    # RFC 6749 section 2.3.1: id and secret are form-encoded before Basic encoding.
    return httpx.BasicAuth(quote_plus(credentials.client_id), quote_plus(credentials.client_secret))


class TokenCache:
    def __init__(
        self,
        http: httpx.AsyncClient,
        credentials: ClientCredentials,
        *,
        program_id: str,
        timeout: float,
        refresh_margin: float,
        timer: Callable[[], float],
    ) -> None:
        self._http = http
        self._credentials = credentials
        self._program_id = program_id
        self._timeout = timeout
        self._refresh_margin = refresh_margin
        self._timer = timer
        self._token: _Token | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        """A token that is not about to expire; fetched if there is none."""
        async with self._lock:
            token = self._token
            if token is None or (token.refresh_at is not None and self._timer() >= token.refresh_at):
                token = self._token = await self._fetch()
            return token.value

    def invalidate(self, value: str) -> None:
        """The partner refused ``value``; forget it unless another call already replaced it."""
        if self._token is not None and self._token.value == value:
            self._token = None

    async def _fetch(self) -> _Token:
        credentials = self._credentials
        form = {"grant_type": "client_credentials"}
        if credentials.scope:
            form["scope"] = credentials.scope
        started = self._timer()
        try:
            # One deadline for the whole exchange, so a body that trickles in cannot stall it.
            async with asyncio.timeout(self._timeout):
                request = self._http.build_request(
                    "POST", credentials.token_url, data=form, headers={"accept": "application/json"}
                )
                response = await read_answer(await self._http.send(request, auth=_basic_auth(credentials), stream=True))
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise self._failure(PartnerConnectTimeout, "no connection to the token endpoint in time", exc) from exc
        except httpx.ConnectError as exc:
            raise self._failure(PartnerUnreachable, "cannot connect to the token endpoint", exc) from exc
        except (httpx.HTTPError, TimeoutError) as exc:
            raise self._failure(PartnerTokenUnavailable, "the token request failed", exc) from exc
        except AnswerTooLarge as exc:
            raise self._error(PartnerTokenUnavailable, f"the token endpoint's {exc}") from exc
        if response.status_code in (400, 401, 403):
            # RFC 6749 section 5.2: invalid_client, unauthorized_client, invalid_scope, ...
            raise self._error(
                PartnerAuthenticationFailed,
                f"the token endpoint refused the exchange's credentials ({response.status_code})",
            )
        if response.status_code != 200:
            raise self._error(PartnerTokenUnavailable, f"the token endpoint answered {response.status_code}")
        try:
            answer = TokenResponse.model_validate_json(response.content)
        except ValidationError as exc:
            raise self._error(PartnerTokenUnavailable, "the token endpoint's answer is malformed") from exc
        if answer.token_type.lower() != "bearer":
            raise self._error(PartnerTokenUnavailable, f"the token endpoint issued a {answer.token_type!r} token")
        if answer.expires_in is None:
            return _Token(answer.access_token, None)
        margin = min(self._refresh_margin, answer.expires_in / 2)
        return _Token(answer.access_token, started + answer.expires_in - margin)

    def _error(self, kind: type[PartnerError], detail: str) -> PartnerError:
        return kind(f"partner {self._program_id}: {detail}", program_id=self._program_id, call="token")

    def _failure(self, kind: type[PartnerError], detail: str, cause: BaseException) -> PartnerError:
        """The token endpoint could not be talked to (see :func:`transport_failure`)."""
        message = f"partner {self._program_id}: {detail}"
        return transport_failure(kind, message, cause, program_id=self._program_id, call="token")
