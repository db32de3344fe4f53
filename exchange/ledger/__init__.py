"""The double-entry clearing ledger: who owes whom, in money and in points."""
