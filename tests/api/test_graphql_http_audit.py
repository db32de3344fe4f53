"""The graphql-http server audit (the reference GraphQL-over-HTTP test suite) passes whole."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

AUDIT_DIR = Path(__file__).resolve().parents[1] / "audit"


async def test_graphql_over_http_audit_passes_with_no_error_and_no_warning(gateway: str) -> None:
    node = shutil.which("node")
    if node is None or not (AUDIT_DIR / "node_modules" / "graphql-http").is_dir():
        pytest.fail(
            "the audit needs Node.js and `npm ci --prefix tests/audit` (make test does both)",
            pytrace=False,
        )
    process = await asyncio.create_subprocess_exec(
        node,
        str(AUDIT_DIR / "audit.mjs"),
        f"{gateway}/graphql",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    report = output.decode()
    assert process.returncode == 0, report
    summary = report.strip().splitlines()[-1]
    passed, total = summary.split(" checks passed")[0].split(" of ")
    assert passed == total and int(total) >= 60, summary
    assert "WARN" not in report and "ERROR" not in report
