"""A request body streamed to code that reads files: what both the partners' records upload
(``PUT /settlement/records/…``) and the settlement console's upload hand to the import."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Mapping

from exchange.text import quoted

CSV_MEDIA_TYPE = "text/csv"
#: The charsets a records upload may declare: the file is read as UTF-8 (``utf8`` is a common
#: spelling of it); none declared is read so too.
CSV_CHARSETS = frozenset({"utf-8", "utf8"})
#: Why a records upload declared in another charset is refused; ``{got}`` is the charset, quoted.
UNREAD_CHARSET = (
    "the records are read as UTF-8, not in the charset {got} the content type declares: "
    'save the file as "CSV UTF-8" and send it with charset=utf-8 or none'
)
#: Why a records upload sent compressed is refused; ``{got}`` is its Content-Encoding, quoted.
ENCODED = "the records are read as sent, not decoded from the Content-Encoding {got}: send the file as it is"


def records_upload_problem(headers: Mapping[str, str]) -> str | None:
    """Why a records upload sent with ``headers`` is not read, or ``None``.

    The file is read as UTF-8, and its ``fileSha256`` is that of the bytes sent, which a finance
    team compares with its own file's: a file declared in another charset (``charset=utf-16``,
    ``charset=windows-1252``) is refused naming the parameter, rather than read as UTF-8 against
    its declaration or converted into bytes whose digest is not the file's; so is one declared
    compressed (``Content-Encoding: gzip``), which would be read as the compressed bytes."""
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        return ENCODED.format(got=quoted(encoding))
    media_type, *parameters = headers.get("content-type", "").split(";")
    if media_type.strip().lower() != CSV_MEDIA_TYPE:
        return f"send the records as {CSV_MEDIA_TYPE}"
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in CSV_CHARSETS:
            return UNREAD_CHARSET.format(got=quoted(charset))
    return None


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
