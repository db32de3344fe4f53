"""Settings: database URLs pick the async drivers; production refuses laptop defaults."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from exchange.app import create_app
from exchange.cli import CommandFailed, load_settings
from exchange.db.migrate import ensure_writable_folder
from exchange.errors import ConfigurationError
from exchange.services.container import build_services
from exchange.settings import Settings, normalize_database_url

PRODUCTION = {
    "environment": "production",
    "database_url": "postgresql://h/db",
    "issuer": "https://exchange.example",
    "key_encryption_secret": "k" * 32,
}


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


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "postgresql://u:p@db1:5432,db2:5433/exchange?target_session_attrs=read-write",
            "postgresql+psycopg://u:p@/exchange?host=db1:5432&host=db2:5433&target_session_attrs=read-write",
        ),
        ("postgres://db1,db2/exchange", "postgresql+psycopg:///exchange?host=db1&host=db2"),
        ("postgresql+psycopg://db1:1,db2:2/x", "postgresql+psycopg:///x?host=db1:1&host=db2:2"),
    ],
)
def test_a_url_naming_several_hosts_as_libpq_does_is_put_in_sqlalchemy_form(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_a_multi_host_url_reaches_libpq_with_every_host_in_order() -> None:
    url = make_url(
        normalize_database_url(
            "postgresql://u:s%40cret@10.0.0.1:5432,10.0.0.2:6432/exchange?target_session_attrs=read-write"
        )
    )
    _, connect = url.get_dialect()().create_connect_args(url)
    assert connect["host"] == "10.0.0.1,10.0.0.2"
    assert connect["port"] == "5432,6432"
    assert (connect["user"], connect["password"], connect["dbname"]) == ("u", "s@cret", "exchange")
    assert connect["target_session_attrs"] == "read-write"


@pytest.mark.parametrize("url", ["mysql://u@h/db", "postgresql+asyncpg://h/db", "sqlite+pysqlite:///x.db"])
def test_a_database_or_driver_the_exchange_does_not_run_on_is_refused_by_name(url: str) -> None:
    with pytest.raises(ValidationError, match=r"runs on PostgreSQL .* or SQLite .*, not "):
        Settings(database_url=url)


@pytest.mark.parametrize("url", ["postgresql://u:s3cr3t-pw@db:fivefourthreetwo/x", "sqlite+aiosqlite://h:port/x"])
def test_a_database_url_that_cannot_be_parsed_is_refused_as_a_setting(url: str) -> None:
    """Refused with the other settings (``exchange serve`` says which variable is wrong), not
    when the first connection is made (a worker's traceback)."""
    with pytest.raises(ValidationError, match="port a number") as refused:
        Settings(database_url=url)
    assert "s3cr3t-pw" not in str(refused.value)


@pytest.mark.parametrize(
    "settings",
    [
        {"database_url": "exchange:s3cr3t-pw@db.internal/exchange"},
        {"database_url": "mysql://exchange:s3cr3t-pw@db.internal/exchange"},
        {"database_url": "postgresql://exchange:s3cr3t-pw@[::1]:5432,[::2]:5432/exchange"},
        {"key_encryption_secret": ["s3cr3t-pw"]},
    ],
)
def test_a_refused_setting_is_not_repeated_in_the_error(settings: dict[str, object]) -> None:
    """The error reaches tracebacks and logs (a worker that builds its settings from the
    environment): it names the setting and the rule, never the value, which may hold a password."""
    with pytest.raises(ValidationError) as refused:
        Settings(**settings)  # type: ignore[arg-type]  # what a misconfigured environment gives
    assert "s3cr3t-pw" not in str(refused.value)
    assert next(iter(settings)) in str(refused.value)


def test_a_multi_host_url_with_a_bracketed_address_is_refused() -> None:
    with pytest.raises(ValidationError, match="by name or IPv4 address"):
        Settings(database_url="postgresql://[::1]:5432,[::2]:5432/exchange")


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", "postgresql://db.internal/exchange")
    monkeypatch.setenv("EXCHANGE_PORT", "9000")
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://db.internal/exchange"
    assert settings.port == 9000


def test_production_refuses_the_embedded_database() -> None:
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        Settings(**{**PRODUCTION, "database_url": "sqlite:///x.db"}).check_for_production()
    Settings(**PRODUCTION).check_for_production()


@pytest.mark.parametrize("issuer", [None, "http://exchange.example"])
def test_production_needs_an_https_issuer(issuer: str | None) -> None:
    with pytest.raises(ConfigurationError, match="EXCHANGE_ISSUER"):
        Settings(**{**PRODUCTION, "issuer": issuer}).check_for_production()


@pytest.mark.parametrize("secret", [None, "too short"])
def test_production_refuses_the_development_or_a_short_key_encryption_secret(
    secret: str | None,
) -> None:
    settings = {**PRODUCTION, "key_encryption_secret": secret}
    if secret is None:
        del settings["key_encryption_secret"]
    with pytest.raises(ConfigurationError, match="EXCHANGE_KEY_ENCRYPTION_SECRET"):
        Settings(**settings).check_for_production()


@pytest.mark.parametrize("host", ["", " ", " 0.0.0.0", "127.0.0.1 "])
def test_an_empty_or_spaced_host_is_refused_naming_its_variable(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    """An empty one was taken, and ``exchange serve`` bound every interface of the machine."""
    monkeypatch.setenv("EXCHANGE_HOST", host)
    with pytest.raises(CommandFailed, match=r"^EXCHANGE_HOST: name the address to bind, without spaces: "):
        load_settings()
    monkeypatch.setenv("EXCHANGE_HOST", "0.0.0.0")
    assert load_settings().host == "0.0.0.0"


def test_the_issuer_defaults_to_this_servers_address_and_names_the_audience() -> None:
    settings = Settings(host="127.0.0.1", port=8123)
    assert settings.issuer_url == "http://127.0.0.1:8123"
    assert settings.audience == "http://127.0.0.1:8123/graphql"
    assert Settings(issuer="https://exchange.example/").issuer_url == "https://exchange.example"


@pytest.mark.parametrize("issuer", ["exchange.example", "ftp://exchange.example", "https://x.example/?a=1"])
def test_an_issuer_that_is_not_a_base_url_is_refused(issuer: str) -> None:
    with pytest.raises(ValueError, match="issuer"):
        Settings(issuer=issuer)


def test_statements_are_kept_seven_years_at_least(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().statement_retention_years == 7
    monkeypatch.setenv("EXCHANGE_STATEMENT_RETENTION_YEARS", "10")
    assert Settings().statement_retention_years == 10
    with pytest.raises(ValidationError, match="greater than or equal to 7"):
        Settings(statement_retention_years=6)


def test_migrating_checks_the_folder_of_an_sqlite_file_and_leaves_a_multi_host_url_to_libpq() -> None:
    ensure_writable_folder("postgresql://u@127.0.0.1:5432,127.0.0.1:5433/exchange?target_session_attrs=read-write")
    with pytest.raises(ConfigurationError, match="does not exist: create it"):
        ensure_writable_folder("sqlite+aiosqlite:////no-such-folder-here/exchange.db")


@pytest.mark.parametrize("lease", ["0", "-5", "0.5", "nan", "inf", "86400", "thirty"])
def test_a_saga_lease_that_is_not_a_second_to_an_hour_is_refused_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, lease: str
) -> None:
    monkeypatch.setenv("EXCHANGE_SAGA_LEASE_SECONDS", lease)
    with pytest.raises(CommandFailed, match=r"^EXCHANGE_SAGA_LEASE_SECONDS: Input should be "):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "seconds"),
    [
        *(
            ("EXCHANGE_CLOSING_GRACE_SECONDS", grace)
            for grace in ["0", "-1", "0.5", "nan", "inf", "86401", "ten minutes"]
        ),
        *(
            ("EXCHANGE_SETTLEMENT_JOB_STALE_SECONDS", stale)
            for stale in ["0", "4.9", "nan", "inf", "3601", "two minutes"]
        ),
    ],
)
def test_a_settlement_time_out_of_its_bounds_is_refused_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, seconds: str
) -> None:
    """The closing grace is a second to a day; the time a close job's runner may be silent, five
    seconds (four heartbeats, each a database write) to an hour."""
    monkeypatch.setenv(variable, seconds)
    with pytest.raises(CommandFailed, match=rf"^{variable}: Input should be "):
        load_settings()


async def test_every_saga_holds_its_rows_for_the_lease_the_setting_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Conversions, redemptions and status matches (and a hold that staff approve) all lease
    their rows for ``EXCHANGE_SAGA_LEASE_SECONDS``."""
    assert Settings().saga_lease_seconds == 30
    monkeypatch.setenv("EXCHANGE_SAGA_LEASE_SECONDS", "2.5")
    services = build_services(load_settings(database_url=f"sqlite:///{tmp_path / 'x.db'}"))
    try:
        sagas = [*services.sagas, services.risk.review.conversions.saga, services.risk.review.redemptions.saga]
        assert {saga.policy.lease for saga in sagas} == {timedelta(seconds=2.5)}
    finally:
        await services.aclose()


FLOAT_SETTINGS = [name for name, field in Settings.model_fields.items() if field.annotation is float]


@pytest.mark.parametrize("name", FLOAT_SETTINGS)
@pytest.mark.parametrize("value", ["inf", "1e999", "-inf", "nan"])
def test_no_setting_takes_a_number_that_is_not_finite(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """``inf`` was taken by every duration without an upper bound: some stopped each worker's
    start with an OverflowError's trace, the others silently meant "never"."""
    variable = f"EXCHANGE_{name.upper()}"
    monkeypatch.setenv(variable, value)
    with pytest.raises(CommandFailed, match=rf"^{variable}: Input should be a finite number"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "largest"),
    [
        ("pending_poll_first_seconds", 86400),
        ("pending_poll_longest_seconds", 604800),
        ("webhook_first_retry_seconds", 3600),
        ("webhook_longest_retry_seconds", 604800),
        ("token_failure_window", 86400),
    ],
)
def test_a_wait_too_long_to_be_a_duration_is_refused_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, largest: int
) -> None:
    """These were taken up to any size, and a value past what a ``timedelta`` holds (1e20)
    stopped every worker's start with an OverflowError's trace."""
    variable = f"EXCHANGE_{name.upper()}"
    monkeypatch.setenv(variable, str(largest + 1))
    with pytest.raises(CommandFailed, match=rf"^{variable}: Input should be less than or equal to {largest}$"):
        load_settings()
    monkeypatch.setenv(variable, str(largest))
    assert getattr(load_settings(), name) == largest


async def test_the_gateway_is_built_on_every_wait_at_its_longest_and_its_back_offs_hold(tmp_path: Path) -> None:
    """At their largest allowed values the waits build the gateway, and their back-offs,
    doubled as often as they ever are, stay within what a ``timedelta`` holds."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'x.db'}",
        pending_poll_first_seconds=86400,
        pending_poll_longest_seconds=604800,
        webhook_first_retry_seconds=3600,
        webhook_longest_retry_seconds=604800,
        token_failure_window=86400,
    )
    services = create_app(settings).state.services
    try:
        schedule = services.webhooks.dispatcher.schedule
        assert schedule.delay(10**6, draw=0.999) <= schedule.longest == timedelta(weeks=1)
        policy = services.sagas[0].policy
        assert policy.poll_backoff(10**6) == policy.longest_poll == timedelta(weeks=1)
    finally:
        await services.aclose()
