"""The gateway and sandbox partners as processes of their own, for the soak and benchmarks.

A process can be killed for real (SIGKILL), and keeps its CPU use out of the caller's event
loop, which a load generator needs.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from exchange.serving import free_port
from exchange.settings import Settings
from exchange.trust_store import trust_store

EXCHANGE = str(Path(sys.executable).with_name("exchange"))


#: How long a process may take to answer ready: on a machine whose cores are all busy, the
#: gateway's imports alone take ~15 s, in its parent process and again in each worker.
READY_WITHIN_SECONDS = 120


async def _wait_until_ready(url: str) -> None:
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    async with httpx.AsyncClient(verify=trust_store()) as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing answered at {url} within {READY_WITHIN_SECONDS} s")


class ExchangeProcess:
    """``exchange <argv>`` in its own process; started, killed and stopped by its owner."""

    def __init__(self, argv: list[str], env: Mapping[str, str], ready_url: str, output: Path | None = None) -> None:
        """``output``: a file that gets what the process writes (standard output and error);
        by default it goes nowhere."""
        self.argv = argv
        self.env = {**os.environ, **env}
        self.ready_url = ready_url
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = self._spawn()
        await _wait_until_ready(self.ready_url)

    def _spawn(self) -> subprocess.Popen[bytes]:
        with open(self.output or os.devnull, "ab") as sink:
            return subprocess.Popen([EXCHANGE, *self.argv], env=self.env, stdout=sink, stderr=sink)

    def kill(self) -> None:
        """SIGKILL: no clean-up, no goodbye, as a crashed machine would go."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def gateway_process(settings: Settings, *, workers: int = 1, output: Path | None = None, **env: str) -> ExchangeProcess:
    """``exchange serve`` on ``settings`` (database, partners, port); ``env`` adds EXCHANGE_* settings;
    ``output`` keeps what it writes."""
    return ExchangeProcess(
        ["serve", "--port", str(settings.port), "--workers", str(workers)],
        {
            "EXCHANGE_DATABASE_URL": settings.database_url,
            "EXCHANGE_PARTNERS_DIR": str(settings.partners_dir),
            **env,
        },
        f"{settings.issuer_url}/readyz",
        output,
    )


def sandbox_process(
    program_id: str, partners_dir: Path, data_dir: Path, port: int | None = None
) -> tuple[ExchangeProcess, str]:
    """``exchange sandbox serve`` for one program on a free port; returns it and its base URL."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    process = ExchangeProcess(
        [
            "sandbox",
            "serve",
            "--partner",
            program_id,
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--partners-dir",
            str(partners_dir),
        ],
        {},
        f"{url}/_sandbox",
    )
    return process, url


def declarations_pointing_at(
    base_urls: Mapping[str, str],
    source: Path,
    target: Path,
    *,
    timeout_seconds: str | None = None,
    modes: Mapping[str, str] | None = None,
) -> Path:
    """A copy of the declarations in ``source`` whose programs in ``base_urls`` call those URLs
    (token endpoints move along), optionally with another partner timeout, and with the
    connector ``mode`` (``async``, ``batch``) of the programs in ``modes``."""
    shutil.copytree(source, target)
    for program_id, url in base_urls.items():
        path = target / f"{program_id}.toml"
        content = re.sub(r"http://127\.0\.0\.1:\d+", url, path.read_text())
        if timeout_seconds is not None:
            content = re.sub(r'timeout_seconds = "[\d.]+"\n', "", content)
            content = content.replace(
                f'base_url = "{url}"', f'base_url = "{url}"\ntimeout_seconds = "{timeout_seconds}"', 1
            )
        path.write_text(content)
    for program_id, mode in (modes or {}).items():
        path = target / f"{program_id}.toml"
        path.write_text(re.sub(r'(\[connector\]\nkind = "\w+"\n)', rf'\1mode = "{mode}"\n', path.read_text(), count=1))
    return target
