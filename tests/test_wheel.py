"""The wheel ships what the ``exchange`` command runs, and not the test harness."""

from __future__ import annotations

import ast
import zipfile
from pathlib import Path, PurePosixPath

import pytest
from hatchling.builders.wheel import WheelBuilder

from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel as ``pip install .`` would build it (the build backend's API, offline)."""
    directory = tmp_path_factory.mktemp("wheel")
    (path,) = WheelBuilder(str(REPO_ROOT)).build(directory=str(directory), versions=["standard"])
    return zipfile.ZipFile(path)


def modules_in(wheel: zipfile.ZipFile) -> dict[str, str]:
    """Each Python module in the wheel by dotted name, with its source."""
    modules = {}
    for name in wheel.namelist():
        path = PurePosixPath(name)
        if path.suffix == ".py" and path.parts[0] == "exchange":
            parts = path.with_suffix("").parts
            dotted = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[dotted] = wheel.read(name).decode()
    return modules


def imported(source: str) -> set[str]:
    """Every ``exchange.*`` module a source imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("exchange."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("exchange."):
            found.add(str(node.module))
    return found


def test_the_test_harness_is_not_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    assert [name for name in wheel.namelist() if name.startswith("exchange/testing/")] == []
    assert (REPO_ROOT / "exchange" / "testing" / "kit.py").exists()  # it is in the checkout, for the tests


def test_the_command_and_everything_it_imports_are_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    modules = modules_in(wheel)
    entry_points = next(name for name in wheel.namelist() if name.endswith(".dist-info/entry_points.txt"))
    assert "exchange = exchange.entry:main" in wheel.read(entry_points).decode()
    for module in (
        "exchange.entry",
        "exchange.cli",
        "exchange.__main__",
        "exchange.app",
        "exchange.demo",
        "exchange.services",
    ):
        assert module in modules
    missing = {
        (module, target)
        for module, source in modules.items()
        for target in imported(source)
        if target not in modules and target.rsplit(".", 1)[0] not in modules
    }
    assert missing == set()


def test_the_migrations_template_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    assert "exchange/db/migrations/script.py.mako" in wheel.namelist()
    versions = [name for name in wheel.namelist() if name.startswith("exchange/db/migrations/versions/")]
    assert len(versions) == len(list(Path(REPO_ROOT, "exchange/db/migrations/versions").glob("*.py")))
