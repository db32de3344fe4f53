"""Application services: one per capability, each owning its units of work.

A front end — GraphQL (``exchange.api``), the web pages, the ``exchange`` command — builds a
request from its input and calls a service. The service takes plain values (and the caller's
:class:`~exchange.auth.principal.Principal` where what it does depends on who calls), opens the
unit of work, calls the domain, commits, and returns domain rows or small views; never a
GraphQL type. The domain packages keep the rules.

:class:`~exchange.services.container.Services` holds one of each, built by
:func:`~exchange.services.container.build_services`.
"""
