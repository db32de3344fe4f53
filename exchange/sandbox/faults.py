"""Fault knobs: make the sandbox slow, failing, hanging or forgetful, on demand or at random.

A fault is decided once per contract call, in this order:

1. a **magic amount** — a debit or credit of exactly one of :data:`MAGIC_POINTS` always
   meets its fault (the apply-first ones only when the operation is newly applied, so the
   exchange's retry of the same id gets the recorded answer);
2. the **script** — faults queued through the admin API, one used by each write call
   (debit, credit, reverse, match_tier), for tests that need "the next credit applies and
   then the connection drops";
3. **random faults** — each kind with its percentage, drawn from the sandbox's RNG
   (seed it for reproducible runs). These hit reads too.

Latency is added to every contract call. Faults that apply first commit the operation and
then lose or garble the answer; ``misapply`` commits another write than the one asked (a
partner's bug: twice the points of a debit or credit, another tier than the one matched) and
answers it; the others fail before anything is applied. The transport-level part (answer 500,
drop the connection, hang, answer a 200 that is no operation) is done by
:class:`FaultMiddleware` around both transports, told what to do through a per-request slot.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

T = TypeVar("T")


class FaultKind(StrEnum):
    ERROR = "error"  # answer 500; nothing applied
    HANG = "hang"  # never answer; nothing applied
    APPLY_THEN_ERROR = "apply_then_error"  # apply, then answer 500
    APPLY_THEN_DROP = "apply_then_drop"  # apply, then drop the connection mid-answer
    APPLY_THEN_HANG = "apply_then_hang"  # apply, then never answer
    APPLY_THEN_GARBLE = "apply_then_garble"  # apply, then answer 200 with a body that is not the contract's
    MISAPPLY = "misapply"  # apply otherwise than asked (a partner's bug), and answer what it applied
    ANSWER = "answer"  # apply nothing; answer the knobs' ``answer`` (a hostile or broken partner's reply)

    @property
    def applies_first(self) -> bool:
        return self.value.startswith("apply_then_")


#: Debit or credit amounts that always meet a fault (documented in partners/CONTRACT.md).
MAGIC_POINTS: dict[int, FaultKind] = {
    11_000: FaultKind.ERROR,
    13_000: FaultKind.HANG,
    14_000: FaultKind.APPLY_THEN_HANG,
    17_000: FaultKind.APPLY_THEN_ERROR,
    19_000: FaultKind.APPLY_THEN_DROP,
}

Percent = Annotated[int, Field(ge=0, le=100, strict=True)]


class CallbackFault(StrEnum):
    """What becomes of the signed callback an async sandbox sends when it settles an operation."""

    ONCE = "once"  # sent once, as a partner should
    NEVER = "never"  # never sent: the exchange must poll
    TWICE = "twice"  # sent twice: the second must change nothing
    FORGED = "forged"  # signed with a wrong key: the exchange must refuse it


class CannedAnswer(BaseModel):
    """What the ``answer`` fault answers in place of the call's own reply, byte for byte: any
    status and any body, such as a refusal whose words hold a NUL (``\\u0000`` in the JSON), an
    unpaired surrogate, a megabyte of text or markup — a hostile or broken partner's."""

    model_config = ConfigDict(extra="forbid")

    status: Annotated[int, Field(ge=200, le=599, strict=True)]
    body: str
    """Sent as UTF-8; write what JSON escapes (a NUL, a lone surrogate) as its escape."""
    content_type: str = "application/json"


class FaultSettings(BaseModel):
    """The knobs, as the admin API reads and writes them (``POST /_sandbox/faults``)."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: Annotated[int, Field(ge=0, le=60_000, strict=True)] = 0
    percent: dict[FaultKind, Percent] = Field(default_factory=dict)
    script: list[FaultKind] = Field(default_factory=list)
    seed: int | None = None
    settle_after_ms: Annotated[int, Field(ge=0, strict=True)] | None = 0
    """An async sandbox settles a pending operation this long after accepting it (null: never,
    until the knob changes)."""
    callback: CallbackFault = CallbackFault.ONCE
    decline: Annotated[int, Field(ge=0, strict=True)] = 0
    """The next operations settled later (async or batch) are declined, this many: status ``failed``."""
    drop_result_lines: Annotated[int, Field(ge=0, strict=True)] = 0
    """A batch result file leaves out its last lines, this many (the exchange must poll for them)."""
    long_result_line: bool = False
    """A batch result file's second line is two megabytes long (the exchange must refuse the
    file there, its first line settled, the rest waiting)."""
    short_credits: Annotated[int, Field(ge=0, strict=True)] = 0
    """The next credits taken from a file, this many, are a partner's bug: recorded and applied
    at a tenth of their points (at least one), and the result file says so (the exchange must
    not post what it sent)."""
    results_without_points: bool = False
    """Batch result files are written without their ``points`` column, as partners wrote them
    before it (``operation_id,status``)."""
    answer: CannedAnswer | None = None
    """What the ``answer`` fault answers; required when that fault can be drawn."""

    @model_validator(mode="after")
    def _percentages_fit(self) -> FaultSettings:
        if sum(self.percent.values()) > 100:
            raise ValueError("the fault percentages add up to more than 100")
        if self.answer is None and (FaultKind.ANSWER in self.script or FaultKind.ANSWER in self.percent):
            raise ValueError("the answer fault needs an answer")
        return self


class FaultInjected(Exception):
    """A contract call met a fault before applying anything; the middleware answers for it."""


@dataclass
class FaultSlot:
    """What the middleware must do with the current request's answer."""

    fault: FaultKind | None = None
    answer: CannedAnswer | None = None


_current_slot: contextvars.ContextVar[FaultSlot | None] = contextvars.ContextVar("sandbox_fault_slot", default=None)


def _signal(fault: FaultKind, answer: CannedAnswer | None = None) -> None:
    slot = _current_slot.get()
    if slot is not None:
        slot.fault, slot.answer = fault, answer


class FaultInjector:
    """The knobs of one sandbox; they outlive restarts of its server."""

    def __init__(
        self, settings: FaultSettings | None = None, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        self._sleep = sleep
        self._random = random.Random()
        self.settings = FaultSettings()
        self.configure(settings or FaultSettings())

    def configure(self, settings: FaultSettings) -> None:
        """Replace every knob; a seed restarts the RNG so a run can be replayed."""
        self.settings = settings.model_copy(deep=True)
        if settings.seed is not None:
            self._random.seed(settings.seed)

    def _draw(self, *, write: bool, points: int | None) -> tuple[FaultKind | None, bool]:
        """The fault for one call, and whether it came from a magic amount."""
        if points is not None and points in MAGIC_POINTS:
            return MAGIC_POINTS[points], True
        if write and self.settings.script:
            return self.settings.script.pop(0), False
        if self.settings.percent:
            roll = self._random.random() * 100
            for kind, percent in self.settings.percent.items():
                if roll < percent:
                    return kind, False
                roll -= percent
        return None, False

    def declines(self) -> bool:
        """Whether the operation being settled later is declined (uses up one ``decline``)."""
        if self.settings.decline:
            self.settings.decline -= 1
            return True
        return False

    def shorts(self) -> bool:
        """Whether the credit taken from a file is applied short (uses up one ``short_credits``)."""
        if self.settings.short_credits:
            self.settings.short_credits -= 1
            return True
        return False

    async def run(
        self,
        action: Callable[[], Awaitable[tuple[T, bool]]],
        *,
        write: bool,
        points: int | None = None,
        misapplied: Callable[[], Awaitable[tuple[T, bool]]] | None = None,
    ) -> T:
        """Run a contract call under the knobs; ``action`` returns (result, newly applied).
        ``misapplied``: the call as a partner's bug makes it (``misapply``); a call without one
        meets no fault when that fault is drawn."""
        fault, magic = self._draw(write=write, points=points)
        if self.settings.latency_ms:
            await self._sleep(self.settings.latency_ms / 1000)
        if fault is FaultKind.MISAPPLY:
            result, _ = await (misapplied or action)()
            return result
        if fault is not None and not fault.applies_first:
            _signal(fault, self.settings.answer)
            raise FaultInjected(fault.value)
        applied = False
        try:
            result, applied = await action()
        finally:
            if fault is not None and (applied or not magic):
                _signal(fault)
        return result


_FAILURE = json.dumps(
    {"title": "Injected failure", "status": 500, "code": "SANDBOX_FAULT", "detail": "a fault knob"}
).encode()


#: What ``apply_then_garble`` answers with a 200: cut-off JSON that is no operation (a
#: partner's broken release).
_GARBLED = b'{"ok": true, "result": "done"'


class FaultMiddleware:
    """Does at the HTTP level what the injector decided: a 500, a dropped connection, a hang, a
    ``200`` whose body is not the contract's.

    The answer is held back until the call has finished, then sent, or replaced by the
    fault. A hang lasts until the client gives up or ``released`` is set (the sandbox is
    stopping), and then the connection is dropped.
    """

    def __init__(self, app: ASGIApp, *, released: asyncio.Event) -> None:
        self.app = app
        self.released = released

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        slot = FaultSlot()
        token = _current_slot.set(slot)
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        try:
            await self.app(scope, receive, hold)
        finally:
            _current_slot.reset(token)
        match slot.fault:
            case None:
                for message in held:
                    await send(message)
            case FaultKind.ERROR | FaultKind.APPLY_THEN_ERROR:
                await _answer(send, 500, b"application/problem+json", _FAILURE)
            case FaultKind.APPLY_THEN_DROP:
                await _drop(send)
            case FaultKind.APPLY_THEN_GARBLE:
                await _answer(send, 200, b"application/json", _GARBLED)
            case FaultKind.ANSWER:
                assert slot.answer is not None, "the knobs refuse the answer fault without an answer"
                await _answer(send, slot.answer.status, slot.answer.content_type.encode(), slot.answer.body.encode())
            case FaultKind.HANG | FaultKind.APPLY_THEN_HANG:
                if not await self._client_gave_up(receive):
                    await _drop(send)

    async def _client_gave_up(self, receive: Receive) -> bool:
        """Wait until the client disconnects (True) or the sandbox stops (False)."""

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        waiting = asyncio.ensure_future(disconnected())
        released = asyncio.ensure_future(self.released.wait())
        done, pending = await asyncio.wait({waiting, released}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return waiting in done


async def _answer(send: Send, status: int, content_type: bytes, body: bytes) -> None:
    """Answer ``body`` in place of what the call answered."""
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _drop(send: Send) -> None:
    """Start an answer and never finish it: the server closes the connection mid-answer."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1024")]})
