"""Time-based one-time codes (RFC 6238): the optional second factor of a person's sign-in.

Six digits, a new code every 30 seconds, as every authenticator app expects. A code of the
step before or after the current one is accepted too (a phone's clock drifts, a person types
slowly), but a step is accepted once only: the person's row keeps the last step used.
"""

from __future__ import annotations

import hmac
from datetime import datetime

import pyotp

from exchange.keyring.crypto import decrypt_with_secret, encrypt_with_secret

#: How authenticator apps name the account: "<issuer> (<username>)".
ISSUER_NAME = "Coalition points exchange"
DIGITS = 6
#: Steps accepted on either side of the current one.
DRIFT_STEPS = 1


def new_totp_secret() -> str:
    """A fresh base32 secret of 160 bits (RFC 4226's recommended length)."""
    return pyotp.random_base32()


def provisioning_uri(secret: str, username: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads (usually from a QR code)."""
    return pyotp.TOTP(secret, digits=DIGITS).provisioning_uri(name=username, issuer_name=ISSUER_NAME)


def code_at(secret: str, moment: datetime) -> str:
    """The code an authenticator shows at ``moment``."""
    return pyotp.TOTP(secret, digits=DIGITS).at(moment)


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code ``code`` is, within the drift allowed around ``now``, or None."""
    code = code.replace(" ", "").strip()
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS)
    current = totp.timecode(now)
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # Every candidate is compared, so the time taken says nothing about which one matched.
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def _kid(username: str) -> str:
    return f"totp:{username}"


def seal_secret(secret: str, username: str, key_secret: str) -> str:
    """The secret encrypted for storage, bound to its person (a row's sealed secret copied to
    another person's row does not open there)."""
    return encrypt_with_secret(secret, key_secret, _kid(username))


def open_secret(sealed: str, username: str, key_secret: str) -> str:
    return decrypt_with_secret(sealed, key_secret, _kid(username))
