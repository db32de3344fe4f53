"""Runtime settings: one typed object, read from ``EXCHANGE_*`` environment variables.

The settings object is built once at the boundary (the CLI or a test) and passed in;
nothing in the package reads the environment on its own.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from exchange.errors import ConfigurationError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///exchange.db"

#: Encrypts signing keys on laptops and in tests; production refuses to start with it.
DEVELOPMENT_KEY_ENCRYPTION_SECRET = "development-only key-encryption secret, never in production"
MINIMUM_SECRET_LENGTH = 32
#: Statements are business records: kept, and verifiable, for seven years at the least.
MINIMUM_STATEMENT_RETENTION_YEARS = 7
#: The longest an access token may be valid (seconds): a day.
MAX_ACCESS_TOKEN_LIFETIME = 86400
#: The longest the longest wait between two tries (a partner asked about a pending debit or
#: credit, a webhook sent again) may be set to, in seconds: a week. The waits are ``timedelta``s,
#: which hold at most about 10**14 seconds; a setting beyond stopped every worker's start with a
#: trace. A first wait is bounded lower (a day, an hour): it doubles up to 2**20 times (a
#: partner's poll) or 2**30 (a webhook) before the longest caps it.
LONGEST_RETRY_WAIT_SECONDS = 7 * 86400
#: How long a running settlement job's runner may be silent before another runner takes the
#: job again (seconds), unless EXCHANGE_SETTLEMENT_JOB_STALE_SECONDS says otherwise.
DEFAULT_SETTLEMENT_JOB_STALE_SECONDS = 120


def normalize_database_url(url: str) -> str:
    """Pick the async driver the exchange runs on for a plain database URL.

    ``postgresql://`` and ``postgres://`` mean psycopg 3; ``sqlite://`` means aiosqlite.
    A URL that already names one of those drivers is kept as it is; any other database or
    driver (``mysql://``, ``postgresql+asyncpg://``) is refused here, by name, rather than
    failing later with a missing module's traceback. A PostgreSQL URL naming several
    hosts as libpq writes them (``postgresql://u@h1:5432,h2:5432/db?target_session_attrs=read-write``,
    as ``pg_autoctl show uri`` prints it) is rewritten into the form SQLAlchemy parses,
    ``postgresql+psycopg://u@/db?host=h1:5432&host=h2:5432&target_session_attrs=read-write``;
    libpq then tries the hosts in turn (see deploy/postgresql-failover.md).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("not a database URL: postgresql://user:password@host/database or sqlite:///file.db")
    if scheme in ("postgresql", "postgres"):
        return _hosts_into_query(f"postgresql+psycopg://{rest}")
    if scheme == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if scheme == "postgresql+psycopg":
        return _hosts_into_query(url)
    if scheme == "sqlite+aiosqlite":
        return url
    raise ValueError(
        f"the exchange runs on PostgreSQL (postgresql://user:password@host/database) or SQLite "
        f"(sqlite:///file.db), not {scheme}://"
    )


def _hosts_into_query(url: str) -> str:
    """``url`` with a comma-separated list of hosts moved into ``host=`` query parameters."""
    parts = urlsplit(url)
    user, at, host_list = parts.netloc.rpartition("@")
    hosts = host_list.split(",")
    if len(hosts) == 1:
        return url
    if not all(hosts) or any(host.startswith("[") for host in hosts):
        raise ValueError(f"name each host of a multi-host URL by name or IPv4 address, got {host_list!r}")
    query = "&".join([*(f"host={host}" for host in hosts), *([parts.query] if parts.query else [])])
    return f"{parts.scheme}://{user}{at}{parts.path}?{query}"


class Settings(BaseSettings):
    """Every runtime setting of the exchange, with its environment variable and default."""

    #: A refused value is left out of the error, which reaches tracebacks and logs: a database
    #: URL holds a password, and the key encryption secret is one. No setting is a number that
    #: is not one (``nan``) or infinite (``inf``, ``1e999``): each is a count or a duration that
    #: has a finite meaning, and ``0`` says "never" where a duration can.
    model_config = SettingsConfigDict(
        env_prefix="EXCHANGE_", extra="ignore", hide_input_in_errors=True, allow_inf_nan=False
    )

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL of the store; postgresql://… for production, an SQLite file by default.",
    )
    database_idle_in_transaction_seconds: float = Field(
        default=300,
        ge=0,
        # PostgreSQL takes idle_in_transaction_session_timeout in milliseconds up to 2**31 - 1: a
        # longer limit was refused at every connection, which the gateway reported as an outage.
        le=2147483,
        description="PostgreSQL ends a session of the exchange idle inside a transaction this long, so a "
        "process that froze mid-unit-of-work does not hold the ledger's locks for hours (0: never; at most "
        "2147483, about 24 days).",
    )
    partners_dir: Path = Field(
        default=Path("partners"),
        description="Directory of program declarations (*.toml) and coalition.toml.",
    )
    host: str = Field(default="127.0.0.1", description="Address `exchange serve` binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port `exchange serve` binds.")
    max_connections: int = Field(
        default=1000,
        ge=2,
        le=100_000,
        description="Connections each gateway worker holds open at once, and requests it serves at once; a "
        "request arriving beyond either is answered 503 at once, not queued. Keep it below the process's "
        "open-files limit (`ulimit -n`), less the database pool and the partners' connections.",
    )
    environment: Literal["development", "production"] = Field(
        default="development",
        description="`production` refuses development defaults (such as the SQLite store).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level of the gateway."
    )
    log_format: Literal["text", "json"] | None = Field(
        default=None,
        description="`json`: one JSON object per log line (time, level, logger, message, request_id, "
        "conversion_id, …), for a log collector; `text`: one readable line. Default: json in production, "
        "text in development.",
    )
    metrics: bool = Field(
        default=True,
        description="Serve Prometheus metrics at /metrics (counts and latencies by operation, partner, "
        "error code and saga; no member, id or query text). Keep the path to the cluster: it shows "
        'partners\' volumes (see README.md, "Observability").',
    )
    settlement_timezone: str = Field(
        default="Asia/Taipei",
        description="IANA time zone whose calendar bounds settlement periods and daily/monthly caps.",
    )
    settlement_period_months: Literal[1, 2, 3, 4, 6, 12] = Field(
        default=1,
        description="Length of a settlement period in calendar months (1: monthly, 3: quarterly, …); "
        "a period is named by its first month. Choose it before the first posting.",
    )
    ledger_shards: int = Field(
        default=8,
        ge=1,
        le=16,
        description="How many hash chains ledger postings spread over, each with its own lock (1 to 16): "
        "concurrent postings wait for one another only within a shard. Changing it is safe at any time.",
    )
    quote_ttl_seconds: int = Field(
        default=60, ge=5, le=3600, description="How long a conversion quote holds its price."
    )
    debit_consent_seconds: int = Field(
        default=300,
        ge=10,
        le=3600,
        description="How long a member's consent to one debit of a program's points (`authorizeDebit`) stays usable.",
    )
    catalog_cache_seconds: float = Field(
        default=5,
        ge=0,
        description="How long each process keeps programs and tiers in memory; a `partners load` "
        "reaches every process within this time.",
    )
    balance_cache_seconds: float = Field(
        default=5,
        ge=0,
        description="How long a partner's balance answer may be shown again (never across a "
        "conversion of that member).",
    )
    tier_cache_seconds: float = Field(
        default=60,
        ge=0,
        description=(
            "How long a partner's tier answer serves tier-bonus lookups; never across a status match "
            "of that member (conversions and redemptions change balances, not tiers)."
        ),
    )
    recovery_interval_seconds: float = Field(
        default=5,
        ge=0,
        description="How often each gateway process looks for conversions left in doubt, and for holds "
        "whose review time has passed (0: never).",
    )
    saga_lease_seconds: float = Field(
        default=30,
        ge=1,
        le=3600,
        allow_inf_nan=False,
        description="How long a request (or a recovery pass) that is driving a conversion, redemption or "
        "status match keeps it from the recovery worker (1 to 3600). A gateway process that dies holds its "
        "rows this long: shorter, and recovery takes them up sooner after a crash; longer than a request's "
        "partner calls take, or recovery may call the partner again while the request still waits for it.",
    )
    pending_poll_first_seconds: float = Field(
        default=60,
        gt=0,
        le=86400,
        description="How soon the exchange first asks a partner about a debit or credit it answered "
        "'accepted, pending' (or a credit queued for a batch partner's file), when no callback came (at most a day).",
    )
    pending_poll_longest_seconds: float = Field(
        default=3600,
        gt=0,
        le=LONGEST_RETRY_WAIT_SECONDS,
        description="The longest wait between two such questions (at most a week): the back-off doubles up to it.",
    )
    callback_tolerance_seconds: int = Field(
        default=300,
        ge=1,
        description="How far a partner callback's webhook-timestamp may be from the exchange's clock "
        "before the callback is refused as stale (a replay) or from the future.",
    )
    batch_interval_seconds: float = Field(
        default=0,
        ge=0,
        description="How often each gateway process sends batch-mode partners the credits waiting for "
        "them and applies the result files they have answered (0: never; run "
        "'exchange batches run' from a daily scheduler instead).",
    )
    status_match_expiry_interval_seconds: float = Field(
        default=60,
        ge=0,
        description="How often each gateway process reverts status matches past their expiry at the "
        "target partner, and finishes matches left in doubt (0: never).",
    )
    redemption_interval_seconds: float = Field(
        default=5,
        ge=0,
        description="How often each gateway process reverses undelivered rewards and finishes "
        "redemptions left in doubt (0: never).",
    )
    coalition_expiry_interval_seconds: float = Field(
        default=3600,
        ge=0,
        description="How often each gateway process expires coalition points whose lots are due "
        "and posts their breakage (0: never; `exchange coalition expire` does it on demand).",
    )
    settlement_job_interval_seconds: float = Field(
        default=1,
        ge=0,
        description="How often each gateway process looks for settlement jobs staff queued in the "
        "console, such as closing a period, and for periods left CLOSING (or CLOSED with statements "
        "not issued) longer than the closing grace (0: never).",
    )
    settlement_job_stale_seconds: float = Field(
        default=DEFAULT_SETTLEMENT_JOB_STALE_SECONDS,
        ge=5,
        le=3600,
        allow_inf_nan=False,
        description="How long a running settlement job's runner may give no sign of life before another "
        "gateway process takes the job again (5 to 3600): it is taken to have died. A live runner beats "
        "the job's heartbeat four times as often, however long one step of the close takes, so only a "
        "runner that stopped (its process killed, its machine gone, its database out of reach for that "
        "long) loses its job.",
    )
    closing_grace_seconds: float = Field(
        default=600,
        ge=1,
        le=86400,
        allow_inf_nan=False,
        description="How long a settlement period may stay CLOSING (or CLOSED with statements not issued) "
        "before the gateway's settlement job finishes closing it itself, as 'exchange recover' does (1 to 86400): its closer (a 'settle close' "
        "command, a closePeriod request, a console job) is taken to have died. Finishing early does no harm "
        "(a closer still netting holds the period and a finisher waits for it, then finds it closed); the "
        "grace keeps gateways from doing a live closer's work beside it.",
    )
    reward_delivery_days: int = Field(
        default=14,
        ge=1,
        le=365,
        description="Days a publisher has to confirm delivery of a direct reward before the redemption is reversed.",
    )
    webhook_interval_seconds: float = Field(
        default=1,
        ge=0,
        description="How often each gateway process sends the webhook deliveries that are due (0: never; "
        "`exchange webhooks deliver` then does it).",
    )
    webhook_timeout_seconds: float = Field(
        default=10, gt=0, le=60, description="How long one webhook delivery may take, connecting included."
    )
    webhook_concurrency: int = Field(
        default=8, ge=1, le=100, description="Most webhook deliveries each gateway process sends at once."
    )
    webhook_subscription_concurrency: int = Field(
        default=2,
        ge=1,
        le=100,
        description="Most webhook deliveries to one subscription in flight at once, across every gateway "
        "process: a receiver that hangs until the timeout holds that many sending slots, never the rest.",
    )
    webhook_first_retry_seconds: float = Field(
        default=5,
        gt=0,
        le=3600,
        description="Wait before the first retry of a failed webhook delivery (at most an hour); doubles for each next one.",
    )
    webhook_longest_retry_seconds: float = Field(
        default=21600,
        gt=0,
        le=LONGEST_RETRY_WAIT_SECONDS,
        description="Longest wait between two tries of a webhook delivery (6 hours; at most a week).",
    )
    webhook_retry_hours: float = Field(
        default=72,
        gt=0,
        le=720,
        description="How long a webhook delivery is retried before it is dead-lettered (three days).",
    )
    webhook_secret_overlap_hours: float = Field(
        default=24,
        ge=0,
        le=720,
        description="After a webhook secret is rotated, how long deliveries are signed with the old secret too.",
    )
    webhook_retention_days: int = Field(
        default=90,
        ge=1,
        le=3650,
        description="How long ended webhook deliveries (and their attempts and events) are kept; a dead "
        "letter is replayable that long.",
    )
    retention_interval_seconds: float = Field(
        default=3600,
        ge=0,
        description="How often each gateway process prunes what is past its keeping (0: never; `exchange prune` "
        "then does it).",
    )
    webhook_max_subscriptions: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Most live webhook subscriptions a partner (or the staff tools together) may hold.",
    )
    max_query_depth: int = Field(default=10, ge=1, description="Deepest GraphQL selection a request may nest.")
    max_query_tokens: int = Field(default=2000, ge=1, description="Most tokens a GraphQL document may hold.")
    max_query_aliases: int = Field(default=15, ge=1, description="Most aliases a GraphQL document may use.")
    max_query_fields: int = Field(
        default=5000,
        ge=1,
        description="Most fields a GraphQL document may select, each fragment counted as often as it is spread.",
    )
    max_request_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        description="Largest body a GraphQL request may have, in bytes; a larger one is answered 413 unread.",
    )
    partner_retry_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="Most tries of one partner call when a retry can help (1: never retry).",
    )
    partner_retry_backoff_seconds: float = Field(
        default=0.1,
        ge=0,
        le=10,
        description="Wait before the first retry of a partner call; doubles for each next one.",
    )
    partner_breaker_failure_threshold: int = Field(
        default=5,
        ge=1,
        description="Consecutive failed calls to a partner that open its circuit breaker.",
    )
    partner_breaker_cooldown_seconds: float = Field(
        default=10,
        gt=0,
        description="How long an open circuit fails calls at once before one probe may pass.",
    )
    partner_token_refresh_margin_seconds: float = Field(
        default=30,
        ge=0,
        description="Fetch a partner's access token anew this long before it expires.",
    )
    issuer: str | None = Field(
        default=None,
        description="Issuer URL of the OAuth 2.0 authorization server: the exchange's public "
        "base URL (tokens carry it as `iss`, endpoints hang below it). Default "
        "http://HOST:PORT; production needs https.",
    )
    access_token_lifetime: int = Field(
        default=3600, ge=60, le=MAX_ACCESS_TOKEN_LIFETIME, description="Seconds an access token stays valid."
    )
    key_encryption_secret: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_KEY_ENCRYPTION_SECRET),
        description="Secret that encrypts the private signing keys (tokens' and statements') in the database; "
        f"production refuses the development default and anything under {MINIMUM_SECRET_LENGTH} "
        "characters.",
    )
    statement_retention_years: int = Field(
        default=MINIMUM_STATEMENT_RETENTION_YEARS,
        ge=MINIMUM_STATEMENT_RETENTION_YEARS,
        le=100,
        description="Years partners keep settlement statements: a retired statement-signing key "
        "stays published this long after the last statement it signed, so that every statement "
        f"verifies with the published keys for as long as it is kept (at least "
        f"{MINIMUM_STATEMENT_RETENTION_YEARS}).",
    )
    token_failure_limit: int = Field(
        default=10,
        ge=1,
        description="Failed client authentications per client, within the window, after which "
        "the OAuth endpoints answer 429 to that client.",
    )
    token_failure_address_limit: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="Failed client authentications and console sign-ins from one address (an IPv6 /64), over "
        "every client id and username together, within the window, after which the OAuth endpoints and the "
        "sign-in page answer 429 to that address for every one: each may have cost an Argon2 check (about "
        "50 ms of a core), an unknown id's too, so this bounds what one address makes the gateway spend "
        "(at most 100000).",
    )
    token_failure_window: int = Field(
        default=60,
        ge=1,
        le=86400,
        description="Seconds over which failed client authentications count (at most a day).",
    )
    session_idle_seconds: int = Field(
        default=1800,
        ge=60,
        le=86400,
        description="A console session unused for this many seconds ends: its person signs in again.",
    )
    session_lifetime_seconds: int = Field(
        default=43200,
        ge=300,
        le=604800,
        description="A console session ends this many seconds after sign-in, however busy.",
    )

    @field_validator("database_url")
    @classmethod
    def _normalize_url(cls, value: str) -> str:
        url = normalize_database_url(value)
        try:
            make_url(url)
        except (ArgumentError, ValueError):
            raise ValueError(
                "not a database URL: postgresql://user:password@host:port/database, the port a number"
            ) from None
        return url

    @field_validator("host")
    @classmethod
    def _an_address(cls, value: str) -> str:
        """An empty address binds every interface of the machine (a variable set from an unset
        one, ``EXCHANGE_HOST=${HOST}``, gave one): the gateway, and its /metrics, were served
        to every network it could reach, unasked."""
        if not value or value != "".join(value.split()):
            raise ValueError("name the address to bind, without spaces: 127.0.0.1, or 0.0.0.0 for every interface")
        return value

    @field_validator("settlement_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone such as Asia/Taipei") from None
        return value

    @property
    def chosen_log_format(self) -> Literal["text", "json"]:
        """The log format: the setting, or JSON in production and text in development."""
        return self.log_format or ("json" if self.environment == "production" else "text")

    @property
    def served_over_https(self) -> bool:
        """Whether browsers reach the exchange over HTTPS: everywhere but on a developer's machine
        (its cookies are then ``Secure``, and its answers carry ``Strict-Transport-Security``)."""
        return self.environment != "development"

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.settlement_timezone)

    @property
    def quote_ttl(self) -> timedelta:
        return timedelta(seconds=self.quote_ttl_seconds)

    @property
    def debit_consent_ttl(self) -> timedelta:
        return timedelta(seconds=self.debit_consent_seconds)

    @property
    def reward_delivery_window(self) -> timedelta:
        return timedelta(days=self.reward_delivery_days)

    @field_validator("issuer")
    @classmethod
    def _issuer_is_a_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        if parts.query or parts.fragment:
            raise ValueError("must have no query or fragment")
        return value.rstrip("/")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def issuer_url(self) -> str:
        """The issuer identifier: the configured one, or this server's own address."""
        return self.issuer or f"http://{self.host}:{self.port}"

    @property
    def audience(self) -> str:
        """What access tokens are for (their ``aud``): the GraphQL API."""
        return f"{self.issuer_url}/graphql"

    def check_for_production(self) -> None:
        """Refuse to run production on defaults that only suit a laptop."""
        if self.environment != "production":
            return
        if self.is_sqlite:
            raise ConfigurationError("EXCHANGE_ENVIRONMENT=production needs EXCHANGE_DATABASE_URL to name PostgreSQL")
        if self.issuer is None or not self.issuer.startswith("https://"):
            raise ConfigurationError(
                "EXCHANGE_ENVIRONMENT=production needs EXCHANGE_ISSUER, the exchange's public https:// URL"
            )
        secret = self.key_encryption_secret.get_secret_value()
        if secret == DEVELOPMENT_KEY_ENCRYPTION_SECRET or len(secret) < MINIMUM_SECRET_LENGTH:
            raise ConfigurationError(
                "EXCHANGE_ENVIRONMENT=production needs EXCHANGE_KEY_ENCRYPTION_SECRET: a random "
                f"secret of at least {MINIMUM_SECRET_LENGTH} characters, kept out of the database"
            )
