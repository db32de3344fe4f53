"""The web front end's static files: vendored from npm with their licences, linked by version."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest
import strawberry

from exchange.web.graphiql import graphiql_html
from exchange.web.static import STATIC_DIR, StaticAssets

MANIFEST = STATIC_DIR.parent / "vendored.txt"
VENDOR = STATIC_DIR / "vendor"


def _manifest() -> list[tuple[str, str, list[str], list[str]]]:
    entries = []
    for line in MANIFEST.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            spec, files, licences = line.split()
            name, _, version = spec.rpartition("@")
            entries.append((name, version, files.split(","), licences.split(",")))
    return entries


def _vendor_dir(name: str) -> Path:
    return VENDOR / name.replace("@", "").replace("/", "-")


@pytest.mark.parametrize(("name", "version", "files", "licences"), _manifest())
def test_each_vendored_package_is_the_named_version_with_its_files_and_licences(
    name: str, version: str, files: list[str], licences: list[str]
) -> None:
    directory = _vendor_dir(name)
    package = json.loads((directory / "package.json").read_text())
    assert (package["name"], package["version"]) == (name, version)
    for file in files:
        assert (directory / Path(file).name).stat().st_size > 0, file
    licence_files = sorted(path.name for path in directory.glob("LICENSE*"))
    assert len(licence_files) == len(licences)
    for path in directory.glob("LICENSE*"):
        assert "Permission" in path.read_text() or "permission" in path.read_text(), path


def test_only_vendored_packages_are_in_the_vendor_directory() -> None:
    assert {path.name for path in VENDOR.iterdir()} == {_vendor_dir(name).name for name, *_ in _manifest()}


def _integrity(html: str) -> dict[str, str]:
    """Each script's or stylesheet's file name and its integrity hash."""
    pairs = re.findall(r'(?:src|href)="([^"]+)"\s+integrity="(sha384-[^"]+)"', html)
    return {url.split("?")[0].rsplit("/", 1)[-1]: digest for url, digest in pairs}


def test_graphiql_is_served_the_very_files_strawberry_pins_from_a_cdn() -> None:
    strawberry_page = (Path(strawberry.__file__).parent / "static" / "graphiql.html").read_text()
    ours = _integrity(graphiql_html())
    pinned = _integrity(strawberry_page)
    assert ours == pinned and len(ours) == 7
    for path in VENDOR.glob("*/*"):
        if path.name in ours:
            digest = base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()
            assert ours[path.name] == f"sha384-{digest}", path


def test_the_graphiql_page_loads_nothing_from_elsewhere_and_runs_no_inline_script() -> None:
    html = graphiql_html()
    assert "unpkg.com" not in html and "https://" not in html
    assert "<script>" not in html and "<style" not in html
    assert all(url.startswith("/static/") for url in re.findall(r'src="([^"]+)"', html))


def test_static_urls_carry_the_files_content_hash() -> None:
    assets = StaticAssets()
    url = assets.url("app.css")
    digest = hashlib.sha256((STATIC_DIR / "app.css").read_bytes()).hexdigest()
    assert url == f"/static/app.css?v={digest[:16]}"
