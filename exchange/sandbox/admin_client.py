"""A client of a sandbox's admin API (``/_sandbox``), for tests, benchmarks and soak runs.

It speaks HTTP, so it works as well with a sandbox in another process
(``exchange sandbox serve``) as with one in this event loop.
"""

from __future__ import annotations

from typing import Any

import httpx

from exchange.sandbox.faults import CallbackFault, CannedAnswer, FaultKind, FaultSettings
from exchange.trust_store import trust_store


class SandboxAdmin:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/_sandbox"

    async def _request(self, method: str, path: str, json: Any = None) -> Any:
        async with httpx.AsyncClient(timeout=10, verify=trust_store()) as http:
            response = await http.request(method, self.url + path, json=json)
        response.raise_for_status()
        return response.json()

    async def set_faults(
        self,
        *,
        latency_ms: int = 0,
        percent: dict[FaultKind, int] | None = None,
        script: list[FaultKind] | None = None,
        seed: int | None = None,
        settle_after_ms: int | None = 0,
        callback: CallbackFault = CallbackFault.ONCE,
        drop_result_lines: int = 0,
        long_result_line: bool = False,
        short_credits: int = 0,
        results_without_points: bool = False,
        decline: int = 0,
        answer: CannedAnswer | None = None,
    ) -> FaultSettings:
        """Replace every fault knob (``set_faults()`` clears them all)."""
        settings = FaultSettings(
            latency_ms=latency_ms,
            percent=percent or {},
            script=script or [],
            seed=seed,
            settle_after_ms=settle_after_ms,
            callback=callback,
            drop_result_lines=drop_result_lines,
            long_result_line=long_result_line,
            short_credits=short_credits,
            results_without_points=results_without_points,
            decline=decline,
            answer=answer,
        )
        return FaultSettings.model_validate(await self._request("POST", "/faults", settings.model_dump(mode="json")))

    async def faults(self) -> FaultSettings:
        return FaultSettings.model_validate(await self._request("GET", "/faults"))

    async def operations(self) -> list[dict[str, Any]]:
        """The operation log, oldest first; each entry has ``seq`` and the operation's fields."""
        answer: list[dict[str, Any]] = (await self._request("GET", "/operations"))["operations"]
        return answer

    async def trace_headers(self) -> list[dict[str, Any]]:
        """The latest contract requests, oldest first: ``method``, ``path`` and the
        ``traceparent`` header they carried (``None``: none)."""
        answer: list[dict[str, Any]] = (await self._request("GET", "/traces"))["requests"]
        return answer

    async def members(self) -> dict[str, Any]:
        """``members`` (each with balance and opening balance), ``total_points``,
        ``total_opening_points``."""
        answer: dict[str, Any] = await self._request("GET", "/members")
        return answer

    async def balance(self, member_ref: str) -> int:
        for member in (await self.members())["members"]:
            if member["member_ref"] == member_ref:
                return int(member["balance"])
        raise KeyError(member_ref)

    async def add_member(
        self,
        member_ref: str,
        *,
        balance: int = 0,
        tier: str | None = None,
        verification: str = "0000",
        name: str | None = None,
        eligibility: str = "eligible",
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"balance": balance, "verification": verification, "eligibility": eligibility}
        if tier is not None:
            body["tier"] = tier
        if name is not None:
            body["name"] = name
        answer: dict[str, Any] = await self._request("PUT", f"/members/{member_ref}", body)
        return answer

    async def assertion_key(self) -> dict[str, Any]:
        """The public JWK the member sign-in page signs assertions with (to register at the exchange)."""
        answer: dict[str, Any] = await self._request("GET", "/assertion-key")
        return answer

    async def set_member_sign_in(self, *, client_id: str, return_urls: list[str]) -> None:
        """Let the member sign-in page sign for ``client_id``, back to ``return_urls`` only."""
        await self._request("PUT", "/member-sign-in", {"client_id": client_id, "return_urls": return_urls})

    async def set_callback_url(self, url: str | None) -> None:
        """Where an async sandbox posts its signed callbacks (``None``: nowhere)."""
        await self._request("PUT", "/callbacks", {"url": url})

    async def sent_callbacks(self) -> list[dict[str, Any]]:
        """The latest callbacks an async sandbox sent, oldest first: ``operation_id``, ``status``
        and the ``answer`` (HTTP status; ``None`` if none came)."""
        answer: list[dict[str, Any]] = (await self._request("GET", "/callbacks"))["sent"]
        return answer

    async def revoke_tokens(self) -> int:
        return int((await self._request("POST", "/tokens/revoke"))["revoked"])

    async def request_restart(self, down_ms: int = 0) -> None:
        """Ask the sandbox to restart itself; returns before it has (poll it to know)."""
        await self._request("POST", "/restart", {"down_ms": down_ms})
