"""The demo's banner shows the member query README shows, one that tells alice's accounts apart."""

from __future__ import annotations

import re
from pathlib import Path

from exchange.cli import load_settings
from exchange.demo import banner
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
