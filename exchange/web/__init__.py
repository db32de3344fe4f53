"""The web front end: the consoles (``/console/``) and the members' portal (``/portal/``).

Server-rendered pages (Starlette, Jinja2, htmx) in English and Traditional Chinese, on the
same application services and the same principals as GraphQL. Its static files, the vendored
htmx and GraphiQL among them, are served from the package under ``/static/``.
"""
