"""The demo's banner names its database as README.md does, a URL the CLI takes as printed."""

from __future__ import annotations

from pathlib import Path

from exchange.cli import load_settings
from exchange.demo import database_url
from exchange.settings import normalize_database_url
from tests.conftest import REPO_ROOT


def test_the_banner_names_the_demos_database_as_readme_writes_it(tmp_path: Path) -> None:
    path = (tmp_path / ".demo" / "exchange.db").resolve()
    settings = load_settings(database_url=f"sqlite:///{path}")
    assert settings.database_url.startswith("sqlite+aiosqlite://")  # the driver's spelling, which nobody types
    printed = database_url(settings)
    assert printed == f"sqlite:///{path}"
    assert normalize_database_url(printed) == settings.database_url
    readme = (REPO_ROOT / "README.md").read_text()
    assert "EXCHANGE_DATABASE_URL=sqlite:///.demo/exchange.db" in readme
    assert "sqlite+aiosqlite" not in readme
