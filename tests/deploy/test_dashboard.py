"""The Grafana dashboard (deploy/grafana/exchange.json) asks only for the metrics the gateway
serves, by their labels, and shows every one of them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from exchange.observability.metrics import served_metrics
from tests.conftest import REPO_ROOT

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "exchange.json"

#: The Prometheus metrics the gateway serves at /metrics, as its code declares them: name → (type,
#: labels). tests/api/test_metrics.py checks that a running gateway serves each of them.
METRICS = served_metrics()
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
#: PromQL words that are neither metrics nor functions.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


def series_of(name: str) -> tuple[str, frozenset[str]] | None:
    """The metric a series name belongs to, and the labels it may be asked by (a histogram's
    buckets add `le`); None if it is none of METRICS' series."""
    for metric, (kind, labels) in METRICS.items():
        if kind != "histogram" and name == metric:
            return metric, labels
        if kind == "histogram" and name in (metric + suffix for suffix in HISTOGRAM_SERIES):
            return metric, labels | {"le"} if name.endswith("_bucket") else labels
    return None


def metric_of(name: str) -> str:
    found = series_of(name)
    assert found is not None, f"{name} is not one of the gateway's metrics"
    return found[0]


def read_expression(expression: str) -> tuple[set[str], set[str]]:
    """The series names and the label names a PromQL expression uses."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)  # label values and strings
    labels: set[str] = set()
    for grouping in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        labels |= {label.strip() for label in grouping.split(",") if label.strip()}
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    for matchers in re.findall(r"\{([^}]*)\}", text):
        labels |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)  # matchers, ranges ($__rate_interval)
    names = {
        word
        for word, call in re.findall(r"(?<![\w$.])([A-Za-z_:][\w:]*)\s*(\()?", text)
        if not call and word not in KEYWORDS
    }
    return names, labels


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every PromQL expression of the dashboard, named by where it is: panels' targets, and the
    template variables' queries (label_values(series, label) read as `series` by `label`)."""

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            yield item
            yield from panels(item.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            found = re.fullmatch(r"label_values\(\s*([\w:]+)\s*,\s*(\w+)\s*\)", query)
            assert found, f"variable {variable['name']}: {query}"
            yield f"variable {variable['name']!r}", f"{found.group(1)} by ({found.group(2)})"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_every_expression_asks_only_for_the_metrics_and_labels_the_gateway_serves(dashboard: dict[str, Any]) -> None:
    checked = 0
    for where, expression in expressions(dashboard):
        names, labels = read_expression(expression)
        assert names, f"{where}: no metric in {expression}"
        allowed: set[str] = set()
        for name in names:
            found = series_of(name)
            assert found is not None, f"{where}: {name} is not one of the gateway's metrics: {expression}"
            allowed |= found[1]
        assert labels <= allowed, f"{where}: labels {sorted(labels - allowed)} are not {sorted(names)}'s"
        checked += 1
    assert checked >= len(METRICS)


def test_every_metric_has_a_panel(dashboard: dict[str, Any]) -> None:
    shown = {metric_of(name) for _, expression in expressions(dashboard) for name in read_expression(expression)[0]}
    assert shown == set(METRICS)


def test_counters_and_histograms_are_read_as_rates(dashboard: dict[str, Any]) -> None:
    for where, expression in expressions(dashboard):
        if where.startswith("variable"):
            continue
        for name in read_expression(expression)[0]:
            if METRICS[metric_of(name)][0] != "gauge":
                assert re.search(rf"\brate\(\s*{name}\b", expression), f"{where}: {name} outside rate(): {expression}"


def test_every_panel_asks_the_chosen_prometheus(dashboard: dict[str, Any]) -> None:
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]


@pytest.mark.parametrize(
    ("expression", "names", "labels"),
    [
        (
            'histogram_quantile(0.95, sum by (le, program) (rate(exchange_partner_call_duration_seconds_bucket{program=~"$program"}[$__rate_interval])))',
            {"exchange_partner_call_duration_seconds_bucket"},
            {"le", "program"},
        ),
        ("sum(rate(http_requests_total[5m])) / sum(up)", {"http_requests_total", "up"}, set()),
        ('max by (saga) (exchange_saga_state{state="PENDING"}) > 0', {"exchange_saga_state"}, {"saga", "state"}),
    ],
)
def test_an_expression_is_read_for_its_metrics_and_labels(expression: str, names: set[str], labels: set[str]) -> None:
    assert read_expression(expression) == (names, labels)
