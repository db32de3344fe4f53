"""Partner callbacks' signatures: the Standard Webhooks scheme, checked strictly."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from exchange.connectors.callbacks import CallbackRefused, callback_key, signature, signed_headers, verify
from exchange.errors import BadUserInput

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY = callback_key("sandbox-fresh-mart")
BODY = b'{"operation_id": "c1:credit", "status": "applied"}'


def test_the_signature_is_standard_webhooks_own() -> None:
    # The example of the Standard Webhooks specification (its secret is whsec_ + base64 key).
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    given = signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert given == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_partner_signing_with_the_reference_library_passes_its_secret_in_base64() -> None:
    # CONTRACT.md: the Standard Webhooks libraries take the key base64-encoded, so a partner
    # gives them its client secret's UTF-8 bytes in base64; the raw secret signs with other bytes.
    secret = "sandbox-fresh-mart"
    signer = Webhook(base64.b64encode(secret.encode()).decode())
    headers = {
        "webhook-id": "m1",
        "webhook-timestamp": str(int(NOW.timestamp())),
        "webhook-signature": signer.sign("m1", NOW, BODY.decode()),
    }
    assert verify(callback_key(secret), headers, BODY, now=NOW, tolerance=300) == "m1"
    headers["webhook-signature"] = Webhook(secret).sign("m1", NOW, BODY.decode())
    with pytest.raises(CallbackRefused):
        verify(callback_key(secret), headers, BODY, now=NOW, tolerance=300)


def test_a_callback_signed_with_the_key_within_the_tolerance_is_taken() -> None:
    headers = signed_headers(KEY, "m1", int(NOW.timestamp()) - 200, BODY)
    assert verify(KEY, headers, BODY, now=NOW, tolerance=300) == "m1"


def test_one_matching_signature_among_several_is_enough() -> None:
    headers = signed_headers(KEY, "m1", int(NOW.timestamp()), BODY)
    headers["webhook-signature"] = "v1,bm90IGl0 " + headers["webhook-signature"]
    assert verify(KEY, headers, BODY, now=NOW, tolerance=300) == "m1"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h, b: (h, b + b" "), id="a changed body"),
        pytest.param(lambda h, b: ({**h, "webhook-id": "m2"}, b), id="another message id"),
        pytest.param(
            lambda h, b: (signed_headers(callback_key("forged"), "m1", int(NOW.timestamp()), b), b), id="another key"
        ),
        pytest.param(lambda h, b: (signed_headers(KEY, "m1", int(NOW.timestamp()) - 301, b), b), id="too old"),
        pytest.param(lambda h, b: (signed_headers(KEY, "m1", int(NOW.timestamp()) + 301, b), b), id="from the future"),
        pytest.param(lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b), id="no signature"),
        # A header's bytes past 0x7f arrive as characters that are not ASCII, which compare_digest
        # refused with a TypeError: a 500 for anyone who posted one.
        pytest.param(lambda h, b: ({**h, "webhook-signature": "v1,\xe9"}, b), id="a signature that is not ASCII"),
    ],
)
def test_a_forged_stale_or_unsigned_callback_is_refused(tamper) -> None:  # type: ignore[no-untyped-def]
    headers, body = tamper(signed_headers(KEY, "m1", int(NOW.timestamp()), BODY), BODY)
    with pytest.raises(CallbackRefused):
        verify(KEY, headers, body, now=NOW, tolerance=300)


def test_a_timestamp_that_is_not_unix_seconds_names_the_header() -> None:
    headers = {**signed_headers(KEY, "m1", int(NOW.timestamp()), BODY), "webhook-timestamp": "yesterday"}
    with pytest.raises(BadUserInput) as refused:
        verify(KEY, headers, BODY, now=NOW, tolerance=300)
    assert refused.value.field == "webhook-timestamp"


@pytest.mark.parametrize("stamp", ["9" * 400, "-1796200851", "1_796_200_851", "+1796200851", "١٧٩٦٢٠٠٨٥١"])
def test_a_timestamp_of_anything_but_a_few_ascii_digits_names_the_header(stamp: str) -> None:
    """Hundreds of digits overflowed the comparison's float (a 500 for whoever posted them)."""
    headers = {**signed_headers(KEY, "m1", int(NOW.timestamp()), BODY), "webhook-timestamp": stamp}
    with pytest.raises(BadUserInput) as refused:
        verify(KEY, headers, BODY, now=NOW, tolerance=300)
    assert refused.value.field == "webhook-timestamp"
