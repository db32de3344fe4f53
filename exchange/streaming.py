"""A request body streamed to code that reads files: what both the partners' records upload
(``PUT /settlement/records/…``) and the settlement console's upload hand to the import."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

CSV_MEDIA_TYPE = "text/csv"


class StreamedBody(io.RawIOBase):
    """A request body as a blocking file, for a worker thread: each ``read`` waits on the
    event loop for the next chunks of the body. Never read it on the event loop itself."""

    def __init__(self, chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._chunks = chunks
        self._loop = loop
        self._buffer = bytearray()
        self._ended = False

    async def _next_chunk(self) -> bytes:
        return await anext(self._chunks, b"")

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        while not self._ended and (size is None or size < 0 or len(self._buffer) < size):
            chunk = asyncio.run_coroutine_threadsafe(self._next_chunk(), self._loop).result()
            self._ended = not chunk  # Starlette's stream ends with one empty chunk
            self._buffer += chunk
        cut = len(self._buffer) if size is None or size < 0 else size
        data = bytes(self._buffer[:cut])
        del self._buffer[:cut]
        return data
