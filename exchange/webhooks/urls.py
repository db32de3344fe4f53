"""Which URLs a subscription may name.

The rule, in order (the first broken one is reported, by name, as ``extensions.rule``):

* ``absolute``: an absolute URL with a host, at most 2000 characters, no fragment;
* ``no-credentials``: no ``user:password@`` (secrets belong in the signature, not the URL);
* ``https-required``: ``https://``; in development (``EXCHANGE_ENVIRONMENT`` other than
  ``production``) also ``http://`` to a loopback host (``localhost``, ``127.0.0.0/8``, ``::1``),
  for tests and the demo;
* ``public-host`` (production only): not ``localhost`` nor an IP address that is loopback,
  private, link-local, reserved or multicast: the exchange must not be made to call into its
  own network. Names are not resolved here; see docs/WEBHOOKS.md.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from exchange.webhooks.errors import BadWebhookURL
from exchange.webhooks.models import URL_LENGTH


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    address = _ip(host)
    return host == "localhost" or (address is not None and address.is_loopback)


def check_url(url: str, *, production: bool) -> str:
    """``url`` if a subscription may name it, else :class:`BadWebhookURL` naming the rule."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        _ = parts.port  # a port out of range raises ValueError
    except ValueError:
        raise BadWebhookURL(f"{url!r} is not a URL", "absolute") from None
    if len(url) > URL_LENGTH or not parts.scheme or not host or parts.fragment or any(c.isspace() for c in url):
        raise BadWebhookURL(
            f"the URL must be absolute, with a host, without a fragment, at most {URL_LENGTH} characters",
            "absolute",
        )
    if parts.username is not None or parts.password is not None:
        raise BadWebhookURL("the URL must not carry credentials (user:password@)", "no-credentials")
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and not production and is_loopback(host)):
        rule = "https:// is required" + ("" if production else " (http:// only to a loopback host in development)")
        raise BadWebhookURL(rule, "https-required")
    address = _ip(host)
    if production and (
        host == "localhost"
        or (
            address is not None
            and (
                address.is_loopback
                or address.is_private
                or address.is_link_local
                or address.is_reserved
                or address.is_multicast
                or address.is_unspecified
            )
        )
    ):
        raise BadWebhookURL(
            "in production the URL's host must be public, not a local or private address", "public-host"
        )
    return url
