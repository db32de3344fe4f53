"""Sandbox partners on free loopback ports (see exchange.testing.sandboxes.SandboxFleet)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exchange.programs.declarations import PartnersDirectory, read_partners_directory
from exchange.testing.sandboxes import SandboxFleet
from tests.conftest import SAMPLE_PARTNERS


class SettableClock:
    """A wall clock for sandboxes that tests move forward (token expiry, tier expiry)."""

    def __init__(self) -> None:
        self.moment = datetime.now(UTC)

    def now(self) -> datetime:
        return self.moment

    def advance(self, delta: timedelta) -> None:
        self.moment += delta


@pytest.fixture(scope="session")
def sample_partners() -> PartnersDirectory:
    return read_partners_directory(SAMPLE_PARTNERS)


@pytest.fixture
def sandbox_clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
async def sandboxes(
    sample_partners: PartnersDirectory, tmp_path: Path, sandbox_clock: SettableClock
) -> AsyncIterator[SandboxFleet]:
    """A fleet that starts no sandbox until asked: ``await sandboxes.start("formosa-air")``."""
    fleet = SandboxFleet(sample_partners, tmp_path / "sandboxes", clock=sandbox_clock)
    try:
        yield fleet
    finally:
        await fleet.stop()
