"""Partner callbacks: how a partner signs its late word on an operation, and how it is checked.

A partner that answered a debit or credit "accepted, pending" tells the exchange the outcome
by posting the operation (the contract's operation object) to the exchange's callback URL.
The signature is Standard Webhooks' scheme — headers ``webhook-id``, ``webhook-timestamp``
(Unix seconds) and ``webhook-signature`` (``v1,`` and the base64 HMAC-SHA256 of
``<id>.<timestamp>.<body>``; several, space-separated, while a key rotates) — keyed with the
UTF-8 bytes of the OAuth client secret the partner issued the exchange: a secret both sides
hold already and nobody else does. Both the sandbox partner (signing) and the exchange
(verifying) use this module, so they cannot drift apart.

A callback outside the timestamp tolerance is refused: a replay of an old one, however well
signed, changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime

from exchange.errors import BadUserInput, Unauthenticated
from exchange.text import ascii_digits

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
VERSION = "v1"
#: More digits than any Unix time in seconds for the next billions of years has.
_MAX_STAMP_DIGITS = 20


def callback_key(client_secret: str) -> bytes:
    """The HMAC key of a partner's callbacks: its client secret's UTF-8 bytes. (A Standard
    Webhooks library takes it as ``"whsec_" + base64(key)``.)"""
    return client_secret.encode()


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of one callback."""
    content = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(digest).decode()}"


def signed_headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers a partner sends with a callback."""
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(key, message_id, timestamp, body),
    }


class CallbackRefused(Unauthenticated):
    """A callback without a valid signature, or signed too long ago (or in the future)."""


def verify(key: bytes, headers: Mapping[str, str], body: bytes, *, now: datetime, tolerance: int) -> str:
    """Check a callback's signature and timestamp; return its ``webhook-id``.

    Raises :class:`CallbackRefused` for a missing header, a timestamp further than
    ``tolerance`` seconds from ``now``, or no signature that matches (compared in constant
    time).
    """
    message_id, stamp, signatures = (headers.get(name) for name in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    if not message_id or not stamp or not signatures:
        raise CallbackRefused(f"a callback needs the {ID_HEADER}, {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers")
    # ASCII digits, and few of them: int() also takes a sign, "_" and spaces, and a stamp of
    # hundreds of digits overflows the float the comparison turns it into.
    timestamp = ascii_digits(stamp) if len(stamp) <= _MAX_STAMP_DIGITS else None
    if timestamp is None:
        raise BadUserInput(f"{TIMESTAMP_HEADER} must be whole Unix seconds", field=TIMESTAMP_HEADER)
    if abs(now.timestamp() - timestamp) > tolerance:
        raise CallbackRefused(f"the callback's {TIMESTAMP_HEADER} is more than {tolerance} s from now")
    # Compared as bytes: compare_digest refuses a str that is not ASCII (a TypeError), and a
    # header's bytes past 0x7f arrive as such characters.
    expected = signature(key, message_id, timestamp, body).encode()
    if not any(hmac.compare_digest(expected, given.encode()) for given in signatures.split()):
        raise CallbackRefused("the callback's signature does not match")
    return message_id
