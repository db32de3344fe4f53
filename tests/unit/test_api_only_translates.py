"""The GraphQL tree only translates: GraphQL input → a call to an application service → a GraphQL
type. It opens no unit of work, touches no session and calls no domain query; those belong to
``exchange.services``. These checks read the source, so a resolver that starts doing a
service's work again fails here before review."""

from __future__ import annotations

import ast
import importlib
import inspect
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

API = REPO_ROOT / "exchange" / "api"
#: Persistence is the services' business.
ORM = ("sqlalchemy", "sqlmodel")
PERSISTENCE = (*ORM, "exchange.db")
#: What the GraphQL tree may import modules or functions from.
FRONT_END = ("exchange.api", "exchange.services")


def api_files() -> list[Path]:
    return sorted(API.rglob("*.py"))


def nodes(path: Path) -> Iterator[ast.AST]:
    yield from ast.walk(ast.parse(path.read_text(), str(path)))


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(REPO_ROOT)}:{getattr(node, 'lineno', '?')}"


def test_the_graphql_tree_is_where_this_test_looks() -> None:
    assert len(api_files()) > 20


@pytest.mark.parametrize("path", api_files(), ids=lambda path: str(path.relative_to(API)))
def test_no_unit_of_work_and_no_session(path: Path) -> None:
    found = []
    for node in nodes(path):
        if isinstance(node, ast.Attribute) and node.attr == "transaction":
            found.append(f"{where(path, node)}: .transaction")
        elif isinstance(node, ast.Name | ast.arg) and "session" in (getattr(node, "id", None) or node.arg).lower():
            found.append(f"{where(path, node)}: a session")
        elif isinstance(node, ast.keyword) and node.arg is not None and "session" in node.arg.lower():
            found.append(f"{where(path, node)}: a session argument")
    assert found == []


@pytest.mark.parametrize("path", api_files(), ids=lambda path: str(path.relative_to(API)))
def test_no_persistence_and_no_domain_function_is_imported(path: Path) -> None:
    """Domain packages lend the GraphQL tree their types (rows, enums, value classes, errors) and
    constants, never a module or a function that reads or writes: a resolver that calls the
    domain skips the service. Of persistence, only constants (a column's length) may be named."""
    found = []
    for node in nodes(path):
        if isinstance(node, ast.Import):
            found += [f"{where(path, node)}: import {alias.name}" for alias in node.names if _outside(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith(ORM):
                found.append(f"{where(path, node)}: from {node.module}")
            elif node.module.startswith("exchange.") and not node.module.startswith(FRONT_END):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not _lent(node.module, getattr(module, alias.name)):
                        found.append(f"{where(path, node)}: {node.module}.{alias.name}")
    assert found == []


def _lent(module: str, value: object) -> bool:
    """Whether the GraphQL tree may name ``value`` of ``module``."""
    if isinstance(value, int | str):
        return True  # a constant: a column's length, an id's range
    if module.startswith("exchange.db") or isinstance(value, types.ModuleType):
        return False
    return not (inspect.isfunction(value) and _works(value))


def _outside(module: str) -> bool:
    return module.startswith(PERSISTENCE) or (module.startswith("exchange.") and not module.startswith(FRONT_END))


def _works(function: types.FunctionType) -> bool:
    """A function that reads or writes: a coroutine, or one that takes a session."""
    return inspect.iscoroutinefunction(function) or "session" in inspect.signature(function).parameters
