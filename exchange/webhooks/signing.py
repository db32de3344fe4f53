"""Subscription secrets and the Standard Webhooks signature.

A secret is ``whsec_`` and the base64 of 32 random bytes, as the Standard Webhooks
specification writes them. The exchange must sign with it on every delivery, so it cannot be
kept hashed: it is stored as a JWE under ``EXCHANGE_KEY_ENCRYPTION_SECRET``
(:mod:`exchange.keyring.crypto`), and shown once, when it is made.

``webhook-signature`` is ``v1,`` and the base64 HMAC-SHA256, keyed with the secret's bytes, of
``<webhook-id>.<webhook-timestamp>.<body>``; during a rotation the header carries one such
signature per secret, separated by spaces, which the specification allows and receivers'
libraries accept when any one matches.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime

from exchange.keyring.crypto import decrypt_with_secret, encrypt_with_secret

PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _kid(subscription_id: str, version: int) -> str:
    return f"webhook-secret:{subscription_id}:{version}"


def seal(secret: str, key_secret: str, subscription_id: str, version: int) -> str:
    """``secret`` encrypted at rest, bound to its subscription and version."""
    return encrypt_with_secret(secret, key_secret, _kid(subscription_id, version))


def unseal(sealed: str, key_secret: str, subscription_id: str, version: int) -> str:
    return decrypt_with_secret(sealed, key_secret, _kid(subscription_id, version))


def signature(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """One ``v1,<base64>`` signature of the message with ``secret``."""
    key = base64.b64decode(secret.removeprefix(PREFIX))
    digest = hmac.new(key, f"{message_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets_: Sequence[str], message_id: str, sent_at: datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt, signed with every secret in ``secrets_``."""
    timestamp = int(sent_at.timestamp())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(secret, message_id, timestamp, body) for secret in secrets_),
        "content-type": "application/json",
    }
