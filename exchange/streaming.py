"""A records upload as the import takes it: what both the partners' records upload
(``PUT /settlement/records/…``) and the settlement console's upload refuse before reading, and
the whole file, taken first (:func:`spooled`)."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import BinaryIO, cast

from exchange.errors import ErrorCode, ExchangeError
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


class RecordsTooLarge(ExchangeError):
    """An upload of a partner's records past the most a file may hold; nothing of it is imported."""

    code = ErrorCode.PAYLOAD_TOO_LARGE

    def __init__(self, most: int) -> None:
        super().__init__(
            f"a records file is at most {most:,} bytes (some ten million lines); nothing was imported",
            field="csv",
        )


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


#: How much of a request body :func:`spooled` keeps in memory before it spills to a temporary file.
SPOOLED_IN_MEMORY = 4 << 20
#: The most a records upload may send: a month of ten million lines fits, and no client can
#: fill the gateway's disk with one.
MAX_RECORDS_BYTES = 1 << 30


@asynccontextmanager
async def spooled(chunks: AsyncIterator[bytes]) -> AsyncIterator[BinaryIO]:
    """A request's whole body, taken before anything reads it, as a file rewound to its start:
    in memory up to :data:`SPOOLED_IN_MEMORY`, on disk past it (written in a worker thread),
    gone when the block ends.

    An import reads its file in a unit of work that holds its partner's position of the period.
    Read as it arrived, a client sending slowly, or stalling half-way, held that lock and a
    database connection for as long as it took, and every other upload, resolution or sign-off
    of the period waited behind it; taken first, a slow client costs only its own request.
    A body past :data:`MAX_RECORDS_BYTES` is refused (:class:`RecordsTooLarge`) as soon as it
    passes it."""
    taken = 0
    with tempfile.SpooledTemporaryFile(max_size=SPOOLED_IN_MEMORY) as spool:
        async for chunk in chunks:
            taken += len(chunk)
            if taken > MAX_RECORDS_BYTES:
                raise RecordsTooLarge(MAX_RECORDS_BYTES)
            await asyncio.to_thread(spool.write, chunk)
        spool.seek(0)
        yield cast(BinaryIO, spool)
