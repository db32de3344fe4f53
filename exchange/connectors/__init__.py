"""Partner connectors: how the exchange reaches each partner's points system.

Use :class:`~exchange.connectors.registry.ConnectorRegistry` to get a
:class:`~exchange.connectors.connector.PartnerConnector` for a program; its failures are the
three kinds in :mod:`exchange.connectors.errors`. The contract partners implement is in
``partners/CONTRACT.md``.
"""
