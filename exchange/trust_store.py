"""The TLS trust store every outgoing HTTP client of this process shares.

httpx and aiohttp each build an ``SSLContext`` for every client (or pool) made without one,
loading the certificate authorities again (some 25 ms each). One context serves every
connection: it holds only settings and the authorities, which no connection changes.
"""

from __future__ import annotations

import ssl
from functools import cache

import httpx


@cache
def trust_store() -> ssl.SSLContext:
    """httpx's default verification (certifi's authorities, hostnames checked), made once."""
    return httpx.create_ssl_context()
