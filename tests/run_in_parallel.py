"""Runs the whole suite as two pytest processes at once.

One pytest process keeps one core busy, and the machines the suite runs on have two. The two
halves share nothing but the machine: each process starts its own throwaway PostgreSQL cluster
on a free port, and databases are named uniquely. Side by side they take about as long as the
longer of the two instead of their sum.

Their temporary files (the throwaway PostgreSQL clusters, the SQLite databases, the sandboxes'
stores) live in memory where the machine has a tmpfs at /dev/shm: none of them needs to outlast
the run, and on a disk every database created, dropped and synced costs a hundred times as much
(creating a test's database from the template: some 300 ms on the CI machines' disk, 20 ms in
memory).

Each half writes to its own log under test-artifacts/, printed whole when that half ends; while
both run, a line a minute shows where each is. Last comes a recap of both halves, each one's
exit status, failing tests and closing line, so that the tail of the output (all a CI page may
keep) says what failed in either. The exit status is the first failing half's. Arguments are
passed to both halves' pytest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

ARTIFACTS = Path("test-artifacts")
#: Two halves of about the same length, each test file in exactly one: the browser tests with the
#: integration tests that run whole systems (demo, soak, failover), and the rest, with the
#: webhooks' integration tests to even them out. Whatever a half selects, tests/conftest.py runs
#: its browser tests after the rest of it.
SYSTEMS = sorted(
    str(path) for path in Path("tests/integration").glob("test_*.py") if not path.match("test_webhook*.py")
)
HALVES = {
    "systems and web pages": [*SYSTEMS, "tests/web"],
    "everything else": ["tests", "--ignore=tests/web", *(f"--ignore={path}" for path in SYSTEMS)],
}
PROGRESS_EVERY_SECONDS = 60
MEMORY = Path("/dev/shm")


def temporary_directory() -> Path | None:
    """A directory in memory for the halves' temporary files, open to every user as /tmp is
    (the servers run as ``postgres``); ``None`` where the machine has no tmpfs at /dev/shm."""
    if not (MEMORY.is_dir() and os.access(MEMORY, os.W_OK)):
        return None
    directory = Path(tempfile.mkdtemp(prefix="exchange-tests-", dir=MEMORY))
    directory.chmod(0o1777)
    return directory


def last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines()
    return lines[-1][-100:] if lines else "(starting)"


def outcome(log: Path) -> list[str]:
    """The failing tests pytest's short summary names (``-ra``), and its closing line."""
    lines = log.read_text(errors="replace").strip().splitlines()
    failing = [line for line in lines if line.startswith(("FAILED ", "ERROR "))]
    return failing + lines[-1:]


def main(arguments: list[str]) -> int:
    ARTIFACTS.mkdir(exist_ok=True)
    temporary = temporary_directory()
    environment = {**os.environ, **({"TMPDIR": str(temporary)} if temporary else {})}
    started = time.monotonic()
    running: dict[str, tuple[subprocess.Popen[bytes], Path, IO[bytes]]] = {}
    ended: dict[str, tuple[int, float, Path]] = {}
    for name, paths in HALVES.items():
        log = ARTIFACTS / f"pytest-{name.replace(' ', '-')}.log"
        sink = log.open("wb")
        command = [sys.executable, "-m", "pytest", *paths, *arguments]
        running[name] = (subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=environment), log, sink)
        print(f"started {name}: {' '.join(command[1:])} (log: {log})", flush=True)
    status = 0
    next_progress = started + PROGRESS_EVERY_SECONDS
    try:
        while running:
            time.sleep(1)
            for name, (process, log, sink) in list(running.items()):
                if process.poll() is None:
                    continue
                sink.close()
                del running[name]
                minutes = (time.monotonic() - started) / 60
                print(f"\n===== {name}: pytest exited {process.returncode} after {minutes:.1f} min =====", flush=True)
                sys.stdout.write(log.read_text(errors="replace"))
                sys.stdout.flush()
                ended[name] = (process.returncode, minutes, log)
                status = status or process.returncode
            if running and time.monotonic() >= next_progress:
                next_progress += PROGRESS_EVERY_SECONDS
                minutes = (time.monotonic() - started) / 60
                for name, (_, log, _) in running.items():
                    print(f"[{minutes:4.0f} min] {name}: {last_line(log)}", flush=True)
    finally:
        for process, _, sink in running.values():
            process.terminate()
            process.wait()
            sink.close()
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    print("\n===== both halves =====")
    for name, (returncode, minutes, log) in ended.items():
        print(f"{name}: pytest exited {returncode} after {minutes:.1f} min (log: {log})")
        for line in outcome(log):
            print(f"  {line}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
