"""The package's dependency direction, read from its imports: front ends → application services →
domain → database; nothing imports the GraphQL tree but the app that mounts it and the command
that exports its schema; no two packages import each other, even through others."""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "exchange"

#: Transport and composition: they parse input, call services and present results.
FRONT_ENDS = {"api", "web", "cli", "entry", "app", "demo", "demo_month", "__main__"}
SERVICES = {"services"}
#: What every layer may use: persistence, settings, time, money, errors, text and addresses, process plumbing.
KERNEL = {
    "__init__",
    "db",
    "errors",
    "money",
    "ratio",
    "clock",
    "settings",
    "serving",
    "heap",
    "jobs",
    "access_log",
    "text",
    "addresses",
    "spreadsheet",
    "streaming",
    "observability",
    "idempotency",
    "trust_store",
}
#: Stand-alone programs beside the exchange: the sandbox partner and the test harness.
BESIDE = {"sandbox", "testing"}
#: Alembic's environment registers every table; it is an entry point, not part of ``db``.
MIGRATIONS = "db.migrations"


def unit_of(path: Path) -> str:
    """The package (or top-level module) a file belongs to; migrations count on their own."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[:2] == ("db", "migrations"):
        return MIGRATIONS
    return parts[0]


def imported_units(path: Path) -> Iterator[str]:
    """Every ``exchange.*`` unit the file imports, at module level or inside a function."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] == "exchange" and len(parts) > 1:
                yield MIGRATIONS if parts[1:3] == ["db", "migrations"] else parts[1]


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        source = unit_of(path)
        graph[source].update(unit for unit in imported_units(path) if unit != source)
    return graph


def domain_units(graph: dict[str, set[str]]) -> set[str]:
    return set(graph) - FRONT_ENDS - SERVICES - KERNEL - BESIDE - {MIGRATIONS, "tables"}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(unit: str) -> None:
        index[unit] = low[unit] = len(index)
        stack.append(unit)
        for other in sorted(graph.get(unit, ())):
            if other not in index:
                visit(other)
                low[unit] = min(low[unit], low[other])
            elif other in stack:
                low[unit] = min(low[unit], index[other])
        if low[unit] == index[unit]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == unit:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for unit in sorted(graph):
        if unit not in index:
            visit(unit)
    return found


def offenders(graph: dict[str, set[str]], sources: set[str], forbidden: set[str]) -> dict[str, set[str]]:
    return {source: graph[source] & forbidden for source in sorted(sources) if graph[source] & forbidden}


def test_no_two_packages_import_each_other() -> None:
    assert cycles(import_graph()) == []


def test_only_the_app_and_the_command_import_the_graphql_tree() -> None:
    graph = import_graph()
    importers = {unit for unit, targets in graph.items() if "api" in targets}
    assert importers <= {"app", "cli"}


def test_domain_packages_import_no_services_and_no_front_end() -> None:
    graph = import_graph()
    assert offenders(graph, domain_units(graph), SERVICES | FRONT_ENDS | BESIDE) == {}


def test_services_import_no_front_end() -> None:
    graph = import_graph()
    assert offenders(graph, SERVICES, FRONT_ENDS | BESIDE) == {}


def test_the_kernel_imports_no_domain_package() -> None:
    graph = import_graph()
    assert offenders(graph, KERNEL, domain_units(graph) | SERVICES | FRONT_ENDS | {"tables"}) == {}


def test_the_layers_name_every_package() -> None:
    """A new package must be placed in a layer here (the domain is whatever is left over, so
    a new front end or kernel module would otherwise pass as domain unnoticed)."""
    graph = import_graph()
    known = FRONT_ENDS | SERVICES | KERNEL | BESIDE | {MIGRATIONS, "tables"}
    domain = {
        "auth",
        "books",
        "coalition",
        "connectors",
        "conversions",
        "federation",
        "keyring",
        "ledger",
        "loading",
        "members",
        "people",
        "pricing",
        "programs",
        "retention",
        "rewards",
        "risk",
        "sagas",
        "settlement",
        "tiers",
        "unlinking",
        "webhooks",
    }
    assert set(graph) - known == domain
