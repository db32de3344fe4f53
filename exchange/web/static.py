"""The package's static files under ``/static/``, with cache headers that let browsers keep them.

Pages link to a file through :meth:`StaticAssets.url`, which adds ``?v=`` and the first
characters of the file's SHA-256. A request whose ``v`` is the current file's may be cached for
a year without asking again (the URL changes when the file does); any other request must be
revalidated (``no-cache``, answered ``304`` by its ETag when nothing changed).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import parse_qs

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).with_name("static")
STATIC_PATH = "/static"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


class StaticAssets:
    """The static files and their versioned URLs (files are hashed once, when first linked)."""

    def __init__(self, directory: Path = STATIC_DIR, prefix: str = STATIC_PATH) -> None:
        self.directory = directory
        self.prefix = prefix
        self._versions: dict[str, str] = {}

    def version(self, path: str) -> str:
        if path not in self._versions:
            self._versions[path] = hashlib.sha256((self.directory / path).read_bytes()).hexdigest()[:16]
        return self._versions[path]

    def url(self, path: str) -> str:
        """The URL of ``path`` (relative to the static directory), versioned by its content."""
        return f"{self.prefix}/{path}?v={self.version(path)}"

    def app(self) -> StaticFiles:
        return _VersionedStaticFiles(self)


class _VersionedStaticFiles(StaticFiles):
    def __init__(self, assets: StaticAssets) -> None:
        super().__init__(directory=assets.directory)
        self._assets = assets

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        path = Path(full_path).relative_to(self._assets.directory).as_posix()
        requested = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("v", [None])[0]
        current = requested is not None and requested == self._assets.version(path)
        response.headers["Cache-Control"] = IMMUTABLE if current else REVALIDATE
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
