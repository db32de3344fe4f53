"""The sandbox partner: a small points system that implements the partner connector contract.

One rule core (:mod:`~exchange.sandbox.points`) on its own SQLite file serves both transports
of the contract, REST and GraphQL, behind an OAuth token endpoint of its own; fault knobs
(:mod:`~exchange.sandbox.faults`) make it slow, failing, hanging or forgetful on demand, and
an admin API under ``/_sandbox`` sets them and shows its operation log and balances.
"""
