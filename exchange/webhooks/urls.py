"""Which URLs a subscription may name.

The rule, in order (the first broken one is reported, by name, as ``extensions.rule``):

* ``absolute``: an absolute URL with a host, at most 2000 characters, no fragment, no space
  and no character that is not printable (a control, a zero-width space, a direction mark);
* ``no-credentials``: no ``user:password@`` (secrets belong in the signature, not the URL);
* ``https-required``: ``https://``; in development (``EXCHANGE_ENVIRONMENT`` other than
  ``production``) also ``http://`` to a loopback host (``localhost``, ``127.0.0.0/8``, ``::1``),
  for tests and the demo;
* ``public-host`` (production only): not ``localhost`` nor a name under it (RFC 6761 keeps
  them for loopback: ``api.localhost``), nor an IP address that is not public
  (:func:`is_public`): the exchange must not be made to call into its own network. An address
  counts in every form the system's resolver reads as one (``2130706433``, ``0x7f.1``,
  ``127.1`` are 127.0.0.1), and a host counts with or without the trailing dot of a fully
  qualified name (``localhost.``, ``127.0.0.1.``), as written and as the delivery's HTTP
  client sends it (IDNA makes ``127。0。0。1``, with ideographic full stops, 127.0.0.1).
  Names are not resolved here: the delivery worker checks where a name leads each time it
  connects (:mod:`exchange.webhooks.egress`);
* ``sendable``: a URL the delivery's HTTP client can send to: its host a domain name IDNA
  encodes (``ｌｏｃａｌｈｏｓｔ`` is none, nor is a name with an empty label or one over 63
  characters, nor ``xn--a``) or an IP address as the client writes one. Every delivery to
  any other would fail before connecting.
"""

from __future__ import annotations

import ipaddress
import socket

import httpx

from exchange.addresses import Fault, read_address
from exchange.webhooks.errors import BadWebhookURL
from exchange.webhooks.models import URL_LENGTH

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: IPv6 prefixes whose addresses lead to the IPv4 address in their last 32 bits: RFC 6052's
#: well-known NAT64 prefix, RFC 4291's deprecated IPv4-compatible addresses (``::127.0.0.1``)
#: and RFC 2765's IPv4-translated ones (``::ffff:0:127.0.0.1``).
IPV4_CARRIERS = tuple(ipaddress.IPv6Network(prefix) for prefix in ("64:ff9b::/96", "::/96", "::ffff:0:0:0/96"))


def host_address(host: str) -> Address | None:
    """The IP address ``host`` is, in any form the system's resolver takes as an address
    (``inet_aton``'s too: ``2130706433``, ``0x7f.1``, ``127.1``); ``None`` for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def is_public(address: Address) -> bool:
    """Whether ``address`` is on the public internet: globally routable unicast (not loopback,
    private, link-local, shared 100.64/10, reserved, ...), also for an IPv4 address inside an
    IPv6 one (mapped, 6to4, NAT64, IPv4-compatible or -translated)."""
    if address.is_multicast or not address.is_global:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and any(address in carrier for carrier in IPV4_CARRIERS):
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        return inner is None or is_public(inner)
    return True


def is_loopback(host: str) -> bool:
    """Whether ``host`` (lower case, without a trailing dot: :func:`check_url` reads it so) is a
    loopback name or address."""
    address = _ip(host)
    return is_localhost_name(host) or (address is not None and address.is_loopback)


def is_localhost_name(host: str) -> bool:
    """Whether ``host`` (as :func:`is_loopback` takes it) is ``localhost`` or a name under it,
    which RFC 6761 reserves for loopback (resolvers such as systemd's answer 127.0.0.1 for
    ``api.localhost``)."""
    return host == "localhost" or host.endswith(".localhost")


def _ip(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_url(url: str, *, production: bool) -> str:
    """``url`` if a subscription may name it, else :class:`BadWebhookURL` naming the rule."""
    parts, faults = read_address(url)
    if parts is None:
        raise BadWebhookURL(f"{url!r} is not a URL", "absolute")
    if len(url) > URL_LENGTH or faults & {Fault.NOT_ABSOLUTE, Fault.FRAGMENT, Fault.SPACE, Fault.CONTROL}:
        raise BadWebhookURL(
            "the URL must be absolute, with a host, without a fragment, spaces or characters that are not "
            f"printable, at most {URL_LENGTH} characters",
            "absolute",
        )
    if Fault.CREDENTIALS in faults:
        raise BadWebhookURL("the URL must not carry credentials (user:password@)", "no-credentials")
    # Without the one trailing dot that marks a fully qualified name: ``localhost.`` is
    # ``localhost``, and a resolver reads ``127.0.0.1.`` as that address.
    host = (parts.hostname or "").lower().removesuffix(".")
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and not production and is_loopback(host)):
        rule = "https:// is required" + ("" if production else " (http:// only to a loopback host in development)")
        raise BadWebhookURL(rule, "https-required")
    sent = _as_sent(url)
    # The host as written, and as the delivery's client sends it: IDNA maps some characters
    # to others (``127。0。0。1``, with ideographic full stops, is 127.0.0.1).
    hosts = {host} if isinstance(sent, Exception) else {host, sent.host.lower().removesuffix(".")}
    if production and any(_is_local(each) for each in hosts):
        raise BadWebhookURL(
            "in production the URL's host must be public, not a local or private address", "public-host"
        )
    if isinstance(sent, Exception):
        raise BadWebhookURL(f"an HTTP client cannot send to this URL: {sent}", "sendable")
    return url


def _as_sent(url: str) -> httpx.URL | Exception:
    """``url`` as the delivery's HTTP client sends it, or why it cannot: its own refusal, IDNA's
    (``xn--a``), or the resolver's (a name's labels are 1 to 63 characters)."""
    try:
        sent = httpx.URL(url)
        if host_address(sent.host) is None:
            sent.host.encode("idna")  # what the resolver encodes the name with
    except (httpx.InvalidURL, UnicodeError) as unsendable:  # IDNA's errors are UnicodeErrors
        return unsendable
    return sent


def _is_local(host: str) -> bool:
    """Whether ``host`` (as :func:`is_loopback` takes it) is a name kept for loopback or an
    address that is not public."""
    address = host_address(host)
    return is_localhost_name(host) or (address is not None and not is_public(address))
