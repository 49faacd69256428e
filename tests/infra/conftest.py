"""Fixtures for the infra tests: a clean Pulumi runtime per test, and ready-installed mocks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pulumi
import pytest

from tests.infra.harness import OptionsCapturingMonitor, RecordingMocks, install


@pytest.fixture(autouse=True)
def fresh_pulumi_runtime() -> Iterator[None]:
    """A fresh event loop and root Stack per test: Pulumi keeps both in module globals."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    pulumi.runtime.set_all_config({})
    pulumi.runtime.reset_options()
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture
def mocks() -> tuple[RecordingMocks, OptionsCapturingMonitor]:
    """Mocks installed for stack `test` with empty config (tests add config with install())."""
    return install(stack="test")
