"""Member assertions: which keys partners may register, which assertions pass."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, OKPKey, RSAKey

from exchange.auth import assertions
from exchange.auth.errors import AssertionRejected

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
AUDIENCE = "https://exchange.example/oauth/token"


def claims(**overrides: Any) -> dict[str, Any]:
    base = {
        "iss": "wallet-pay-1",
        "sub": "alice",
        "aud": AUDIENCE,
        "iat": int(NOW.timestamp()),
        "exp": int((NOW + timedelta(minutes=5)).timestamp()),
        "jti": "assertion-1",
    }
    return {key: value for key, value in {**base, **overrides}.items() if value is not None}


def sign(key: RSAKey | ECKey | OKPKey | OctKey, alg: str, **overrides: Any) -> str:
    header = {"alg": alg, **({"kid": key.kid} if key.kid else {})}
    return jwt.encode(header, claims(**overrides), key, algorithms=[alg])


def verify(token: str, *keys: RSAKey | ECKey | OKPKey) -> dict[str, Any]:
    return dict(assertions.verify_assertion(token, KeySet(list(keys)), audiences=[AUDIENCE], now=NOW))


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
@pytest.mark.parametrize(
    ("make_key", "alg"),
    [
        (lambda: RSAKey.generate_key(2048, auto_kid=True), "RS256"),
        (lambda: ECKey.generate_key("P-256", auto_kid=True), "ES256"),
        (lambda: OKPKey.generate_key("Ed25519", auto_kid=True), "Ed25519"),
        (lambda: OKPKey.generate_key("Ed25519", auto_kid=True), "EdDSA"),
    ],
)
def test_assertions_signed_with_each_allowed_algorithm_pass(
    make_key: Callable[[], RSAKey | ECKey | OKPKey], alg: str
) -> None:
    key = make_key()
    public = assertions.parse_public_key(json.dumps(key.as_dict(private=False)))
    assert verify(sign(key, alg), public)["sub"] == "alice"


@pytest.fixture(scope="module")
def partner_key() -> ECKey:
    return ECKey.generate_key("P-256", auto_kid=True)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (
            {"exp": int((NOW - timedelta(minutes=2)).timestamp())},
            r"^the assertion has expired \(its exp is more than 60 s before the exchange's clock\): sign a new one as",
        ),
        ({"aud": "https://elsewhere.example"}, f"aud claim must be {AUDIENCE}$"),
        ({"sub": None}, "lacks a claim"),
        ({"jti": None}, "lacks a claim"),
        ({"nbf": int((NOW + timedelta(minutes=5)).timestamp())}, "claims are invalid"),
        ({"exp": int((NOW + timedelta(hours=1, seconds=1)).timestamp())}, "valid for too long"),
    ],
)
def test_assertions_with_bad_claims_are_rejected(partner_key: ECKey, overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(AssertionRejected, match=reason):
        verify(sign(partner_key, "ES256", **overrides), partner_key)


def test_an_assertion_signed_by_another_key_is_rejected(partner_key: ECKey) -> None:
    impostor = ECKey.generate_key("P-256", parameters={"kid": partner_key.kid})
    with pytest.raises(AssertionRejected, match="signature does not verify"):
        verify(sign(impostor, "ES256"), partner_key)


def test_a_tampered_assertion_is_rejected(partner_key: ECKey) -> None:
    header, _payload, signature = sign(partner_key, "ES256").split(".")
    forged = jwt.encode({"alg": "ES256"}, claims(sub="bob"), partner_key).split(".")[1]
    with pytest.raises(AssertionRejected, match="signature does not verify"):
        verify(f"{header}.{forged}.{signature}", partner_key)


@pytest.mark.filterwarnings('ignore:JWS algorithm "none" is deprecated')
def test_unsigned_and_hmac_assertions_are_rejected(partner_key: ECKey) -> None:
    hmac_key = OctKey.import_key(json.dumps(partner_key.as_dict(private=False)).encode())
    unsigned = jwt.encode({"alg": "none"}, claims(), None, algorithms=["none"])
    for token in (unsigned, sign(hmac_key, "HS256")):
        with pytest.raises(AssertionRejected, match="not signed with"):
            verify(token, partner_key)


def test_a_partner_without_keys_is_told_to_register_one() -> None:
    with pytest.raises(AssertionRejected, match="registered no assertion key"):
        assertions.verify_assertion("a.b.c", KeySet([]), audiences=[AUDIENCE], now=NOW)


@pytest.mark.filterwarnings("ignore:Key size should be")
@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (lambda: json.dumps(ECKey.generate_key("P-256").as_dict(private=True)), "private key"),
        (lambda: RSAKey.generate_key(1024).as_pem(private=False).decode(), "under 2048 bits"),
        (lambda: json.dumps(ECKey.generate_key("P-384").as_dict(private=False)), "P-256"),
        (lambda: '{"kty": "oct", "k": "c2VjcmV0"}', "not an RSA"),
        (lambda: "-----BEGIN PUBLIC KEY-----\nnonsense\n-----END PUBLIC KEY-----", "not an RSA"),
        (lambda: "{not json", "neither a JWK nor a PEM"),
    ],
)
def test_unfit_assertion_keys_are_refused(key: Callable[[], str], reason: str) -> None:
    with pytest.raises(assertions.InvalidAssertionKey, match=reason):
        assertions.parse_public_key(key())


def test_a_registered_key_keeps_its_kid_or_gets_its_thumbprint() -> None:
    named = ECKey.generate_key("P-256", parameters={"kid": "wallet-2026"})
    assert assertions.parse_public_key(json.dumps(named.as_dict(private=False))).kid == "wallet-2026"
    anonymous = RSAKey.generate_key(2048)
    pem = anonymous.as_pem(private=False).decode()
    assert assertions.parse_public_key(pem).kid == anonymous.thumbprint()


def test_an_assertion_without_a_kid_is_told_to_name_one_when_the_partner_has_several_keys(partner_key: ECKey) -> None:
    """One key needs no kid; with a second registered (a rotation, a key tried out first), an
    assertion without one was 'malformed, names an unknown kid, or is not signed with …'."""
    other = ECKey.generate_key("P-256", auto_kid=True)
    anonymous = jwt.encode({"alg": "ES256"}, claims(), partner_key)
    assert verify(anonymous, partner_key)["sub"] == "alice"
    with pytest.raises(AssertionRejected, match=r"header names no kid, and the partner has 2 assertion keys regis"):
        verify(anonymous, partner_key, other)


@pytest.mark.parametrize(("kid", "quoted"), [("wallet-2025", "'wallet-2025'"), ("k" * 200, "<a JSON str>")])
def test_an_assertion_naming_a_kid_never_registered_is_told_to_register_it(
    partner_key: ECKey, kid: object, quoted: str
) -> None:
    assertion = jwt.encode({"alg": "ES256", "kid": kid}, claims(), partner_key)
    with pytest.raises(AssertionRejected) as refused:
        verify(assertion, partner_key)
    assert refused.value.message == (
        f"the assertion's kid {quoted} is no assertion key the partner registered: register the signing key's "
        "public half (registerAssertionKey) and put the kid it answers in the header"
    )


def test_an_assertion_signed_with_another_kind_of_key_than_its_alg_names_it(partner_key: ECKey) -> None:
    rsa = RSAKey.generate_key(2048, parameters={"kid": partner_key.kid})
    with pytest.raises(AssertionRejected, match=r"^the assertion is not signed with .*\(its alg is 'RS256'\)"):
        verify(sign(rsa, "RS256"), partner_key)


def test_an_assertion_that_is_no_jwt_is_called_malformed(partner_key: ECKey) -> None:
    with pytest.raises(AssertionRejected, match=r"^the assertion is malformed: send a compact JWT"):
        verify("not-a-jwt", partner_key)
