"""Signing keys the exchange keeps for itself: generated, stored encrypted, one active at a time,
rotated, published as a JWK Set, and cached in each process.

Two kinds of key share this machinery and nothing else: the OAuth server's token-signing keys
(:mod:`exchange.auth.keys`, table ``signing_key``) and settlement's statement-signing keys
(:mod:`exchange.settlement.keys`, table ``statement_key``). Each kind has its own table, its
own active key, its own rotation and its own published document, so that a key of one kind
never verifies what the other signs; they differ in how long a retired key stays published.
"""
