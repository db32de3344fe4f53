"""The CLI's commands run in the event loop ``exchange serve`` runs the gateway in (uvloop): the
demo and the sandbox partners serve their requests in it."""

from __future__ import annotations

import asyncio

from uvicorn.loops.auto import auto_loop_factory

from exchange.cli import run_async


def test_commands_run_in_the_loop_uvicorn_would_choose() -> None:
    async def running_loop() -> type[asyncio.AbstractEventLoop]:
        return type(asyncio.get_running_loop())

    chosen = auto_loop_factory()()
    try:
        assert run_async(running_loop()) is type(chosen)
    finally:
        chosen.close()
    assert type(chosen).__module__.startswith("uvloop")  # installed with uvicorn[standard]
