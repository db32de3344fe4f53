"""Client secrets: generated with 256 bits of entropy, stored only as Argon2id hashes.

Argon2id with OWASP's minimum parameters (19 MiB, 2 passes) costs about 50 ms a check:
slow enough that a stolen table does not yield secrets, cheap enough for a token endpoint
whose clients cache their tokens. The OAuth server verifies off the event loop.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


def new_client_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """A salted Argon2id hash in the PHC string format (parameters and salt included)."""
    return _HASHER.hash(secret)


def verify_secret(secret_hash: str, secret: str) -> bool:
    """Whether ``secret`` matches; the comparison is constant-time."""
    try:
        return _HASHER.verify(secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False
