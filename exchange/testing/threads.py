"""Serving an ASGI app from a thread with its own event loop, for synchronous tests.

The browser tests drive Playwright's synchronous API, which cannot run inside an event loop;
the gateway they talk to runs beside them in a thread, on loopback.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.types import ASGIApp

from exchange.serving import BoundedHeadProtocol, RunningServer, start_server


@contextmanager
def serving_in_thread(
    app: ASGIApp, *, port: int = 0, timeout: float = 120, protocol: type[BoundedHeadProtocol] = BoundedHeadProtocol
) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 through ``protocol`` until the block ends; yields its base URL."""
    started = threading.Event()
    stop: asyncio.Event | None = None
    failures: list[BaseException] = []
    urls: list[str] = []

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        try:
            running: RunningServer = await start_server(app, port=port, handle_signals=False, protocol=protocol)
        except BaseException as failure:
            failures.append(failure)
            started.set()
            return
        urls.append(running.url)
        started.set()
        await stop.wait()
        await running.stop()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), name="gateway", daemon=True)
    thread.start()
    if not started.wait(timeout):
        raise RuntimeError(f"the server did not start within {timeout} s")
    if failures:
        thread.join()
        raise RuntimeError("the server failed to start") from failures[0]
    try:
        yield urls[0]
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        loop.close()
