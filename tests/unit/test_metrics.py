"""The /metrics answer and `exchange serve`'s metrics directory, without a server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families
from starlette.exceptions import HTTPException
from starlette.requests import Request

from exchange.cli import metrics_directory
from exchange.db.availability import DatabaseUnavailable
from exchange.observability.metrics import MULTIPROCESS_DIRECTORY, MetricsEndpoint, SagaFigures, exposition


def families(text: bytes) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    return {
        family.name: {tuple(sorted(sample.labels.items())): sample.value for sample in family.samples}
        for family in text_string_to_metric_families(text.decode())
    }


def scrape(*headers: tuple[str, str]) -> Request:
    """A GET /metrics as the endpoint sees it."""
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/metrics",
            "headers": [(name.encode(), value.encode()) for name, value in headers],
        }
    )


def test_the_saga_figures_are_gauges_by_saga_and_state() -> None:
    served = families(exposition([SagaFigures("conversion", {"PENDING": 3}, oldest_seconds=42.5, backlog=2)]))
    assert served["exchange_saga_state"] == {(("saga", "conversion"), ("state", "PENDING")): 3}
    assert served["exchange_saga_oldest_pending_seconds"] == {(("saga", "conversion"),): 42.5}
    assert served["exchange_recovery_backlog"] == {(("saga", "conversion"),): 2}
    assert "exchange_request_duration_seconds" in served


@pytest.mark.parametrize("failure", [DatabaseUnavailable(), None])
async def test_a_scrape_answers_without_the_figures_when_the_database_cannot_give_them(
    failure: Exception | None,
) -> None:
    async def figures() -> list[SagaFigures]:
        if failure is not None:
            raise failure
        await asyncio.sleep(10)  # longer than the endpoint waits
        return []

    response = await MetricsEndpoint(figures, figures_timeout=0.05).answer(scrape())
    served = families(bytes(response.body))
    assert response.status_code == 200
    assert "exchange_saga_state" not in served and "exchange_errors" in served


@pytest.mark.parametrize("header", ["x-forwarded-for", "forwarded"])
async def test_a_scrape_through_a_reverse_proxy_finds_nothing(header: str) -> None:
    async def figures() -> list[SagaFigures]:
        raise AssertionError("the database is not asked")

    with pytest.raises(HTTPException) as refused:  # the gateway answers it as any address nothing serves
        await MetricsEndpoint(figures).answer(scrape((header, "203.0.113.9")))
    assert refused.value.status_code == 404


def test_several_workers_get_a_fresh_directory_removed_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROCESS_DIRECTORY, raising=False)
    with metrics_directory(2):
        directory = Path(os.environ[MULTIPROCESS_DIRECTORY])
        assert directory.is_dir() and not any(directory.iterdir())
    assert not directory.exists() and MULTIPROCESS_DIRECTORY not in os.environ
    with metrics_directory(1):
        assert MULTIPROCESS_DIRECTORY not in os.environ


def test_a_given_directory_is_emptied_of_an_earlier_runs_figures(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "counter_4242.db").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("kept")
    monkeypatch.setenv(MULTIPROCESS_DIRECTORY, str(tmp_path))
    with metrics_directory(2):
        assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


def test_a_scrape_leaves_out_a_metric_file_another_worker_is_still_creating(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """prometheus-client creates a worker's file empty and sizes it a moment later; a scrape in
    between answered 500. It now counts what the other workers recorded."""
    monkeypatch.setenv(MULTIPROCESS_DIRECTORY, str(tmp_path))
    recorded = MmapedDict(str(tmp_path / "counter_101.db"))
    key = mmap_key("exchange_test", "exchange_test_total", ["worker"], ["101"], "A test counter.")
    recorded.write_value(key, 3.0, 0.0)
    recorded.close()
    (tmp_path / "counter_102.db").touch()  # worker 102's file, not sized yet
    assert families(exposition(None))["exchange_test"] == {(("worker", "101"),): 3.0}


def test_a_scrape_leaves_out_the_live_gauges_of_a_worker_that_was_killed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A killed worker cannot drop its live gauges as one that stops does: its breaker, open when
    it died, was added in (open) at every scrape for as long as the gateway ran."""
    monkeypatch.setenv(MULTIPROCESS_DIRECTORY, str(tmp_path))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True
    )
    for pid in (os.getpid(), int(gone.stdout)):
        recorded = MmapedDict(str(tmp_path / f"gauge_livesum_{pid}.db"))
        key = mmap_key("exchange_partner_breaker_open", "exchange_partner_breaker_open", ["program"], ["p"], "Open.")
        recorded.write_value(key, 1.0, 0.0)
        recorded.close()
    assert families(exposition(None))["exchange_partner_breaker_open"] == {(("program", "p"),): 1.0}
