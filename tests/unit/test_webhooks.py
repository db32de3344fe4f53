"""Webhooks' pure rules: which URLs a subscription may name, the retry schedule, and our
Standard Webhooks signature checked against the specification's reference library."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from exchange.api.types.webhooks import WebhookEventType
from exchange.errors import BadUserInput, ConfigurationError
from exchange.webhooks import signing
from exchange.webhooks.delivery import Dispatcher
from exchange.webhooks.egress import PublicOnlyTransport
from exchange.webhooks.errors import BadWebhookURL
from exchange.webhooks.events import Event, EventType
from exchange.webhooks.outbox import committed_before
from exchange.webhooks.schedule import RetrySchedule, retry_after
from exchange.webhooks.subscriptions import check_event_types
from exchange.webhooks.urls import check_url

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.mark.parametrize(
    ("url", "production", "rule"),
    [
        ("ftp://partner.example/hook", False, "https-required"),
        ("http://partner.example/hook", False, "https-required"),
        ("http://127.0.0.1:9000/hook", True, "https-required"),
        ("https://user:pw@partner.example/hook", False, "no-credentials"),
        ("/hook", False, "absolute"),
        ("https://partner.example/hook#fragment", False, "absolute"),
        ("https://partner.example/ho ok", False, "absolute"),
        ("https://partner.example:99999/hook", False, "absolute"),
        ("https://" + "a" * 2000 + ".example/", False, "absolute"),
        # What is not printable, in the host or anywhere else: a zero-width space, a direction mark, DEL
        ("https://partner\u200b.example/hook", False, "absolute"),
        ("https://partner.example/\u202ekooh", False, "absolute"),
        ("https://partner.example/hook\x7f", False, "absolute"),
        # A host the delivery's HTTP client refuses before connecting: every delivery would fail
        ("https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/hook", True, "sendable"),
        ("https://\uff11\uff12\uff17.\uff10.\uff10.\uff11/hook", True, "sendable"),
        ("https://203.0.113.999/hook", False, "sendable"),
        # No name a resolver looks up: an empty label, one over 63 characters, IDNA's xn-- that decodes to nothing
        ("https://a..example/hook", True, "sendable"),
        ("https://" + "a" * 64 + ".example/hook", True, "sendable"),
        ("https://xn--a.example/hook", True, "sendable"),  # IDNA's own error escaped: a 500
        ("https://localhost/hook", True, "public-host"),
        ("https://10.1.2.3/hook", True, "public-host"),
        ("https://169.254.169.254/latest/meta-data", True, "public-host"),
        ("https://[::1]/hook", True, "public-host"),
        # What the resolver reads as an address is one, in any notation; and shared, mapped, NAT64
        ("https://2130706433/hook", True, "public-host"),
        ("https://0x7f.1/hook", True, "public-host"),
        ("https://0251.0376.0251.0376/latest/meta-data", True, "public-host"),
        ("https://100.64.0.1/hook", True, "public-host"),
        ("https://[::ffff:169.254.169.254]/hook", True, "public-host"),
        ("https://[64:ff9b::a9fe:a9fe]/hook", True, "public-host"),
        ("https://[::127.0.0.1]/hook", True, "public-host"),  # IPv4-compatible
        ("https://[::ffff:0:a9fe:a9fe]/hook", True, "public-host"),  # IPv4-translated
        # As the delivery's client sends it: IDNA reads ideographic full stops as dots
        ("https://127\u30020\u30020\u30021/hook", True, "public-host"),
        ("https://api\u3002localhost/hook", True, "public-host"),
        # A fully qualified name's trailing dot changes nothing; names under localhost are loopback
        ("https://localhost./hook", True, "public-host"),
        ("https://LocalHost./hook", True, "public-host"),
        ("https://127.0.0.1./hook", True, "public-host"),
        ("https://0x7f.1./hook", True, "public-host"),
        ("https://api.localhost/hook", True, "public-host"),
        ("https://api.localhost./hook", True, "public-host"),
    ],
)
def test_a_url_that_breaks_the_rule_is_refused_naming_the_rule(url: str, production: bool, rule: str) -> None:
    with pytest.raises(BadWebhookURL) as refused:
        check_url(url, production=production)
    assert refused.value.extensions() == {"code": "BAD_USER_INPUT", "field": "url", "rule": rule}


@pytest.mark.parametrize(
    ("url", "production"),
    [
        ("https://partner.example/hooks/exchange?tenant=1", True),
        ("https://203.0.113.7/hook", False),
        ("http://127.0.0.1:8123/hook", False),
        ("http://localhost/hook", False),
        ("http://[::1]:8000/hook", False),
        ("https://b\u00fccher.example/hook", True),  # a domain name IDNA encodes
        ("https://partner.example./hook", True),  # fully qualified
        ("https://[::8.8.8.8]/hook", True),  # an IPv4-compatible address carrying a public one
        ("https://localhost.partner.example/hook", True),  # a public name that begins with "localhost"
        ("http://localhost.:8000/hook", False),
    ],
)
def test_https_anywhere_and_http_to_loopback_in_development_are_accepted(url: str, production: bool) -> None:
    assert check_url(url, production=production) == url


def test_retries_double_from_the_first_wait_up_to_the_longest_then_give_up_after_three_days() -> None:
    schedule = RetrySchedule()
    assert [schedule.delay(n, draw=0.999999).total_seconds() for n in (1, 2, 3)] == pytest.approx([5, 10, 20])
    assert schedule.delay(1, draw=0.0) == timedelta(seconds=2.5), "jitter takes at most half"
    assert schedule.delay(40, draw=0.999999) <= timedelta(hours=6)
    first = NOW
    assert schedule.next_attempt(first, first + timedelta(days=2), 20, draw=0.0) == first + timedelta(days=2, hours=3)
    assert schedule.next_attempt(first, first + timedelta(days=2, hours=22), 20, draw=0.0) is None


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("120", timedelta(seconds=120)),
        (" 7 ", timedelta(seconds=7)),
        ((NOW + timedelta(minutes=3)).strftime("%a, %d %b %Y %H:%M:%S GMT"), timedelta(minutes=3)),
        (None, None),
        ("0", None),
        ("-5", None),
        ("soon", None),
        ("1" * 5000, None),  # no int of 5000 digits, no overflow
        ((NOW - timedelta(minutes=3)).strftime("%a, %d %b %Y %H:%M:%S GMT"), None),
        ("Tue, 99 Foo 2026 99:99:99 GMT", None),
    ],
)
def test_retry_after_is_read_in_seconds_or_as_a_date_and_anything_else_asks_for_no_wait(
    header: str | None, wait: timedelta | None
) -> None:
    assert retry_after(header, NOW) == wait


def test_our_signature_is_what_the_reference_library_verifies_with_either_secret_of_a_rotation() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    assert len(base64.b64decode(new.removeprefix("whsec_"))) == 32
    event = Event(EventType.CONVERSION_COMPLETED, "conversion:c1", ("a", "b"), {"id": "c1", "pointsIn": 1000}, NOW)
    body = event.body()
    signed_at = datetime.now(UTC)  # the library checks the timestamp against its own clock (±5 min)
    headers = signing.headers([new, old], event.id, signed_at, body)
    assert headers["webhook-signature"].count("v1,") == 2
    for secret in (new, old):
        assert Webhook(secret).verify(body, headers) == json.loads(body)
    assert Webhook(new).sign(event.id, signed_at, body) == headers["webhook-signature"].split()[0]
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body.replace("1000", "1001"), headers)
    assert json.loads(body) == {
        "type": "conversion.completed",
        "timestamp": NOW.isoformat().replace("+00:00", "Z"),
        "data": {"id": "c1", "pointsIn": 1000},
    }


def test_graphql_names_each_event_type_by_the_same_member_as_the_payload_s_dotted_name() -> None:
    assert {member.name: member.value for member in WebhookEventType} == {
        member.name: member.value for member in EventType
    }


def test_an_event_type_is_read_by_its_canonical_dotted_name_or_by_its_graphql_name() -> None:
    assert EventType.named("conversion.completed") is EventType.CONVERSION_COMPLETED
    assert EventType.named("CONVERSION_COMPLETED") is EventType.CONVERSION_COMPLETED
    assert EventType.named("Conversion.Completed") is None
    assert check_event_types(["STATEMENT_READY", "conversion.completed", "CONVERSION_COMPLETED"]) == [
        "conversion.completed",
        "statement.ready",
    ]
    with pytest.raises(
        BadUserInput,
        match=r"unknown event type 'conversion_completed'; the types are conversion\.completed, .*CONVERSION_COMPLETED, also do",
    ):
        check_event_types(["conversion_completed"])


def test_a_secret_sealed_for_one_subscription_opens_only_for_it() -> None:
    secret = signing.new_secret()
    sealed = signing.seal(secret, "k" * 40, "s1", 1)
    assert secret not in sealed
    assert signing.unseal(sealed, "k" * 40, "s1", 1) == secret
    with pytest.raises(ConfigurationError, match="cannot be decrypted"):
        signing.unseal(sealed, "k" * 40, "s2", 1)


@pytest.mark.parametrize(
    "url", ["http://localhost:9/hook", "http://2130706433:9/hook", "http://[::1]:9/hook", "http://[::127.0.0.1]:9/hook"]
)
async def test_the_production_worker_does_not_connect_where_a_host_leads_to_a_non_public_address(url: str) -> None:
    dispatcher = Dispatcher(db=None, clock=None, key_secret="", public_only=True)  # type: ignore[arg-type]
    try:
        with pytest.raises(httpx.ConnectError, match="not a public address"):
            await dispatcher.http.post(url, content=b"{}")
    finally:
        await dispatcher.aclose()


@pytest.mark.parametrize("host", ["a" * 64 + ".example", "a..example"])
async def test_the_production_worker_fails_to_connect_to_a_name_the_resolver_cannot_look_up(host: str) -> None:
    """A label over 63 characters, or an empty one, made the resolver raise UnicodeError, which
    no attempt caught: the delivery pass failed, leaving every delivery claimed with it unsent."""
    dispatcher = Dispatcher(db=None, clock=None, key_secret="", public_only=True)  # type: ignore[arg-type]
    try:
        with pytest.raises(httpx.ConnectError, match="does not resolve"):
            await dispatcher.http.post(f"https://{host}/hook", content=b"{}")
    finally:
        await dispatcher.aclose()


async def test_the_production_worker_sends_to_the_public_address_it_checked_keeping_the_name_for_tls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resolved once, by the worker: the request goes to the checked address, while the Host
    header and the TLS server name (which the certificate is verified against) stay the URL's."""
    loop = asyncio.get_running_loop()
    answers = {"hooks.example": "93.184.215.14", "rebinding.example": "127.0.0.1"}

    async def resolve(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]

    monkeypatch.setattr(loop, "getaddrinfo", resolve)
    sent: list[httpx.Request] = []

    def partner(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=PublicOnlyTransport(httpx.MockTransport(partner))) as http:
        response = await http.post("https://hooks.example:8443/in?x=1", content=b"{}")
        with pytest.raises(httpx.ConnectError, match=r"rebinding\.example resolves to 127\.0\.0\.1"):
            await http.post("https://rebinding.example/in", content=b"{}")
    assert response.status_code == 204
    assert response.request.url == "https://hooks.example:8443/in?x=1"
    [request] = sent
    assert request.url == "https://93.184.215.14:8443/in?x=1"
    assert request.headers["host"] == "hooks.example:8443"
    assert request.extensions["sni_hostname"] == "hooks.example"
    assert request.content == b"{}"


@pytest.mark.parametrize(
    ("xact", "seen"),
    [
        (99, True),  # ended before the oldest unit of work still running
        (101, True),  # between, and not running then
        (100, False),  # running then: it committed after
        (103, False),  # running then
        (105, False),  # started after (at or above xmax)
        (1000, False),
    ],
)
def test_a_snapshot_saw_committed_the_units_of_work_that_ended_before_it(xact: int, seen: bool) -> None:
    assert committed_before(xact, "100:105:100,103") is seen
    assert committed_before(xact, "105:105:") is (xact < 105)
