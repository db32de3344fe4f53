"""A partner's books: what its points cost it through the exchange, period by period.

Figures are read from the clearing ledger with set-based SQL (``figures``), budgets are
compared and their crossings recorded once (``budget``), and the whole is laid out as one
value that GraphQL, the CSV export and the ``exchange books`` command all show (``report``).
"""
