"""Settings: database URLs pick the async drivers; production refuses laptop defaults."""

from __future__ import annotations

import pytest

from exchange.errors import ConfigurationError
from exchange.settings import Settings, normalize_database_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgres://u@h:5433/db", "postgresql+psycopg://u@h:5433/db"),
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql+psycopg://h/db", "postgresql+psycopg://h/db"),
    ],
)
def test_database_urls_pick_async_drivers(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", "postgresql://db.internal/exchange")
    monkeypatch.setenv("EXCHANGE_PORT", "9000")
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://db.internal/exchange"
    assert settings.port == 9000


def test_production_refuses_the_embedded_database() -> None:
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        Settings(environment="production").check_for_production()
    Settings(environment="production", database_url="postgresql://h/db").check_for_production()
