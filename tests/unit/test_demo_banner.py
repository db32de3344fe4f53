"""The demo's banner shows the member query README shows, one that tells alice's accounts apart,
and settle commands that run on the demo's database under its issuer."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from exchange.cli import load_settings
from exchange.demo import LastMonth, banner
from tests.conftest import REPO_ROOT


def test_the_banners_member_query_is_readmes_and_names_each_accounts_program(tmp_path: Path) -> None:
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'exchange.db'}")
    printed = banner("http://127.0.0.1:8000", settings, [], tmp_path / "credentials.json", [], None)
    member_line = printed.split('as a member (see README.md, "Calling the API with a token"):')[1].splitlines()[2]
    found = re.search(r"""-d '\{"query": "(.*)"\}'$""", member_line)
    assert found is not None, member_line
    query = found.group(1)
    # alice's memberRef is "alice" at every partner: without its program the answer said nothing.
    assert "linkedAccounts { memberRef program {" in query
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("# A member: the demo's ready token for alice")[1].split("```")[0]
    assert f"""-d '{{"query": "{query}"}}'""" in section


@pytest.mark.parametrize("port", [8000, 8311])
def test_the_banners_settle_commands_close_under_the_demos_issuer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, port: int
) -> None:
    """Statements name the issuer, which a partner checks (partners/SETTLEMENT.md): a close run
    as the banner says, beside a demo on another --port, named http://127.0.0.1:8000."""
    demo = load_settings(database_url=f"sqlite:///{tmp_path / 'exchange.db'}", port=port)
    month = LastMonth("2026-11", tmp_path / "formosa-air-2026-11.csv")
    printed = banner(demo.issuer_url, demo, [], tmp_path / "credentials.json", [], month)
    close_line = next(line for line in printed.splitlines() if " settle close " in line)
    for word in shlex.split(close_line):
        name, _, value = word.partition("=")
        if name.startswith("EXCHANGE_"):
            monkeypatch.setenv(name, value)
    command = load_settings()
    assert command.issuer_url == demo.issuer_url == f"http://127.0.0.1:{port}"
    assert command.database_url == demo.database_url
    assert ("EXCHANGE_ISSUER=" in close_line) == (port != 8000), "the default needs no word"
