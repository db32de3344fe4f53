"""The ``exchange`` command's entry point (``[project.scripts]``), which imports nothing heavy.

Importing :mod:`exchange.cli` takes a moment (click, and the modules its commands name); Ctrl-C
meanwhile raised ``KeyboardInterrupt`` before the command's own handling of it existed, and
Python printed a traceback. Here it ends the command as Ctrl-C does later: one line, exit 130.
"""

from __future__ import annotations

import sys

from exchange.errors import INTERRUPTED, INTERRUPTED_STATUS


def main() -> None:
    try:
        from exchange.cli import main as command
    except KeyboardInterrupt:
        sys.stderr.write(f"Error: {INTERRUPTED}\n")
        sys.exit(INTERRUPTED_STATUS)
    command()
