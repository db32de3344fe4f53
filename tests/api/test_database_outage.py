"""While the database is down (an outage, a failover under way), callers are told so with
``SERVICE_UNAVAILABLE``, never an internal error; once it is back, the same gateway serves
them again without a failed request."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from exchange.serving import free_port
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit
from exchange.testing.postgres import ThrowawayCluster
from tests.conftest import SAMPLE_PARTNERS

#: Seconds Prometheus waits for a scrape unless told otherwise (its ``scrape_timeout``).
PROMETHEUS_SCRAPE_TIMEOUT = 10
ME = "{ me { id } }"
PROGRAMS = "{ programs { id } }"


@pytest.fixture
def gateway_settings(own_postgres_cluster: ThrowawayCluster) -> Settings:
    """The gateway on a cluster of this test's own, with no catalog cache: every request
    reads the database."""
    return Settings(
        database_url=own_postgres_cluster.url,
        partners_dir=SAMPLE_PARTNERS,
        port=free_port(),
        catalog_cache_seconds=0,
    )


def refused(response_body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in response_body["errors"]]


async def test_requests_during_an_outage_are_service_unavailable_and_served_once_it_is_over(
    own_postgres_cluster: ThrowawayCluster, kit: ExchangeKit
) -> None:
    member = await kit.member_token("wallet-pay", "alice")
    partner = await kit.partner("wallet-pay")
    assert "errors" not in (await kit.graphql(ME, member)).json()

    own_postgres_cluster.halt()
    # The token is verified against the database before GraphQL runs: the whole request is refused.
    authenticated = await kit.graphql(ME, member, accept="application/graphql-response+json")
    assert authenticated.status_code == 503
    assert authenticated.headers["retry-after"] == "5"
    assert authenticated.headers["content-type"].startswith("application/graphql-response+json")
    assert refused(authenticated.json()) == ["SERVICE_UNAVAILABLE"]
    # A public field meets the outage as it resolves: its error, in an answer GraphQL gave.
    public = await kit.graphql(PROGRAMS)
    assert public.status_code == 200
    assert public.json()["data"] is None and refused(public.json()) == ["SERVICE_UNAVAILABLE"]
    assert "failover" in public.json()["errors"][0]["message"]
    for response in (await kit.http.get("/readyz"), await kit.request_token(partner)):
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        assert refused(response.json()) == ["SERVICE_UNAVAILABLE"]

    own_postgres_cluster.resume()
    assert (await kit.http.get("/readyz")).status_code == 200
    for _ in range(3):
        assert "errors" not in (await kit.graphql(ME, member)).json()
        assert "errors" not in (await kit.graphql(PROGRAMS)).json()
    assert (await kit.request_token(partner)).status_code == 200


def freeze(cluster: ThrowawayCluster, signal_number: signal.Signals) -> None:
    """Send every process of ``cluster`` (its postmaster and backends) ``signal_number``."""
    postmaster = int((cluster.root / "data" / "postmaster.pid").read_text().split()[0])
    children = [int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat") if _parent(stat) == postmaster]
    for pid in (postmaster, *children):
        os.kill(pid, signal_number)


def _parent(stat: Path) -> int | None:
    try:
        return int(stat.read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


async def test_readiness_says_unavailable_while_the_database_hangs_and_liveness_stays_ok(
    own_postgres_cluster: ThrowawayCluster, kit: ExchangeKit
) -> None:
    """A database that stops answering (a host frozen, a network partition) without closing
    its connections: /readyz answers 503 instead of waiting with the database, /healthz 200;
    once it answers again, ready again."""
    assert (await kit.http.get("/readyz")).status_code == 200
    freeze(own_postgres_cluster, signal.SIGSTOP)
    try:
        for _ in range(2):
            ready = await kit.http.get("/readyz", timeout=20)
            assert ready.status_code == 503, ready.text
            assert refused(ready.json()) == ["SERVICE_UNAVAILABLE"]
        live = await kit.http.get("/healthz", timeout=20)
        assert (live.status_code, live.json()) == (200, {"status": "ok"})
    finally:
        freeze(own_postgres_cluster, signal.SIGCONT)
    assert (await kit.http.get("/readyz", timeout=20)).status_code == 200


async def test_a_scrape_while_the_database_hangs_answers_the_recorded_metrics_without_the_figures(
    own_postgres_cluster: ThrowawayCluster, kit: ExchangeKit
) -> None:
    """A scrape answers before Prometheus gives up on it (or it is lost when the metrics
    matter most): the saga figures are left out, and their query is not waited for."""
    assert "exchange_saga_state" in (await kit.http.get("/metrics")).text
    freeze(own_postgres_cluster, signal.SIGSTOP)
    try:
        for _ in range(2):
            scraped = await kit.http.get("/metrics", timeout=PROMETHEUS_SCRAPE_TIMEOUT)
            assert scraped.status_code == 200
            assert "exchange_request_duration_seconds" in scraped.text and "exchange_saga_state" not in scraped.text
    finally:
        freeze(own_postgres_cluster, signal.SIGCONT)
    assert "exchange_saga_state" in (await kit.http.get("/metrics", timeout=20)).text
