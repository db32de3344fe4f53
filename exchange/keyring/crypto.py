"""The algorithm every key of the exchange signs with, and how private keys are kept at rest.

RS256 (RSA 2048): RFC 9068 makes RS256 the one algorithm every JWT access-token verifier
must support, so partners' stock JOSE libraries verify our tokens and statements; and
verifying, which happens on every request, costs about 40 µs against ES256's 100 µs. (Signing
is dearer, but happens once per token or statement.)

A private key is stored as a JWE (A256KW + A256GCM) under a key derived from
``EXCHANGE_KEY_ENCRYPTION_SECRET``, so the database alone never yields a signing key.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateNumbers, RSAPublicNumbers
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import OctKey, RSAKey
from joserfc.util import base64_to_int

from exchange.errors import ConfigurationError
from exchange.keyring.models import StoredKey

ALGORITHM = "RS256"
RSA_KEY_BITS = 2048

_KEY_ENCRYPTION = {"alg": "A256KW", "enc": "A256GCM"}


def generate_key() -> RSAKey:
    """A new private key with a kid (its JWK thumbprint)."""
    return RSAKey.generate_key(RSA_KEY_BITS, parameters={"alg": ALGORITHM, "use": "sig"}, auto_kid=True)


def key_encryption_key(secret: str) -> OctKey:
    """The AES key that wraps private keys, derived from the configured secret."""
    derived = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"coalition-exchange signing keys").derive(
        secret.encode()
    )
    return OctKey.import_key(derived)


def encrypt_with_secret(plaintext: str, secret: str, kid: str) -> str:
    """A compact JWE of ``plaintext`` under the key derived from ``secret``. ``kid`` names what
    it holds; the header is authenticated, so :func:`decrypt_with_secret` can insist on it."""
    return jwe.encrypt_compact({**_KEY_ENCRYPTION, "kid": kid}, plaintext, key_encryption_key(secret))


def decrypt_with_secret(token: str, secret: str, kid: str) -> str:
    """The plaintext of :func:`encrypt_with_secret`'s ``token``, which must name ``kid``.

    Raises :class:`ConfigurationError` when ``secret`` is not the one it was encrypted with
    (or the token was made for something else).
    """
    try:
        decrypted = jwe.decrypt_compact(token, key_encryption_key(secret))
    except (JoseError, ValueError):
        decrypted = None
    if decrypted is None or decrypted.plaintext is None or decrypted.protected.get("kid") != kid:
        raise ConfigurationError(
            f"{kid!r} cannot be decrypted: EXCHANGE_KEY_ENCRYPTION_SECRET is not the secret it was stored with"
        )
    return decrypted.plaintext.decode()


def encrypt_private_key(key: RSAKey, secret: str) -> str:
    return encrypt_with_secret(json.dumps(key.as_dict(private=True)), secret, str(key.kid))


def decrypt_private_key(row: StoredKey, secret: str) -> RSAKey:
    """The private half of ``row``, or a :class:`ConfigurationError` naming the secret."""
    return _own_private_key(json.loads(decrypt_with_secret(row.encrypted_private_key, secret, row.kid)))


def _own_private_key(jwk: dict[str, Any]) -> RSAKey:
    """The RSA key of ``jwk``, a private key this exchange generated (:func:`generate_key`),
    written whole by :func:`encrypt_private_key` and read back through an authenticated
    decryption. Its numbers are taken as they are: cryptography's check that they make a valid
    key, meant for keys from elsewhere, tests the primes and costs about a hundred times the
    import itself (some 40 ms), at every start and after every rotation."""
    RSAKey.validate_dict_key(jwk)
    public = RSAPublicNumbers(base64_to_int(jwk["e"]), base64_to_int(jwk["n"]))
    numbers = RSAPrivateNumbers(
        p=base64_to_int(jwk["p"]),
        q=base64_to_int(jwk["q"]),
        d=base64_to_int(jwk["d"]),
        dmp1=base64_to_int(jwk["dp"]),
        dmq1=base64_to_int(jwk["dq"]),
        iqmp=base64_to_int(jwk["qi"]),
        public_numbers=public,
    )
    return RSAKey(numbers.private_key(unsafe_skip_rsa_key_validation=True), jwk)
