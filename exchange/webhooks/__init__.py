"""Webhooks: partners and staff tools subscribe a URL to the exchange's events, which are
written to an outbox with the change they report and delivered, signed by the Standard
Webhooks rules, by a background worker (see docs/WEBHOOKS.md)."""
