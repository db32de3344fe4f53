"""Client secrets: generated with 256 bits of entropy, stored only as Argon2id hashes.

Argon2id with OWASP's minimum parameters (19 MiB, 2 passes) costs about 50 ms a check:
slow enough that a stolen table does not yield secrets, cheap enough for a token endpoint
whose clients cache their tokens. The OAuth server verifies off the event loop.

A partner's servers all starting at once ask for tokens with the same right secret, and the
failure limits judge one attempt per client and address at a time
(:mod:`~exchange.auth.ratelimit`): at 50 ms a check, the twentieth waits a second. So a right
client secret is remembered, as a keyed digest, and checked again without Argon2
(:func:`verify_client_secret`). That is safe for client secrets alone: they carry 256 random
bits, so a digest of one (and the process's key, were memory read) yields no secret. People's
passwords are never remembered so.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


def new_client_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """A salted Argon2id hash in the PHC string format (parameters and salt included)."""
    return _HASHER.hash(secret)


def verify_secret(secret_hash: str, secret: str) -> bool:
    """Whether ``secret`` matches; the comparison is constant-time. Text that is not UTF-8 (a
    lone surrogate) matches nothing: no secret or password was ever set to it."""
    try:
        return _HASHER.verify(secret_hash, secret)
    except (VerificationError, InvalidHashError, UnicodeEncodeError):
        return False


@cache
def _decoy_hash() -> str:
    return hash_secret(new_client_secret())


def verify_nobody(secret: str) -> bool:
    """Refuse ``secret`` offered for a name nobody has (an unknown username or client id)
    after the same Argon2 work as a wrong secret for a known name, so the time a refusal takes
    does not tell which names exist. Always ``False``."""
    verify_secret(_decoy_hash(), secret)
    return False


class _RecentlyVerified:
    """Keyed digests of client secrets that matched lately, with the hash they matched: a secret
    reset (a new hash) is checked with Argon2 again. Thread-safe: the OAuth server verifies in
    worker threads."""

    SIZE = 1024

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._digests: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def digest(self, secret_hash: str, secret: str) -> bytes:
        message = f"{secret_hash}\0{secret}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def holds(self, digest: bytes) -> bool:
        with self._lock:
            if digest not in self._digests:
                return False
            self._digests.move_to_end(digest)
            return True

    def add(self, digest: bytes) -> None:
        with self._lock:
            self._digests[digest] = None
            while len(self._digests) > self.SIZE:
                self._digests.popitem(last=False)


_RECENT = _RecentlyVerified()


def verify_client_secret(secret_hash: str, secret: str) -> bool:
    """:func:`verify_secret` for a client secret: one that matched this hash lately matches
    again without Argon2; any other is checked in full."""
    digest = _RECENT.digest(secret_hash, secret)
    if _RECENT.holds(digest):
        return True
    if not verify_secret(secret_hash, secret):
        return False
    _RECENT.add(digest)
    return True
