"""People who sign in to the consoles: settlement staff, admins and partners' staff.

Their accounts (Argon2id password hashes, an optional TOTP second factor whose secret is stored
encrypted), sign-in under the same failure limit as the token endpoint, and server-side sessions
whose role and program become the :class:`~exchange.auth.principal.Principal` that GraphQL
resolvers receive too. Members sign in to the portal through their partners instead
(:mod:`exchange.people.portal_sign_in`), into sessions of their own.
"""
