"""Fixtures for the infra tests: a clean Pulumi runtime per test, and ready-installed mocks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pulumi
import pytest

from tests.infra.harness import Graph, OptionsCapturingMonitor, RecordingMocks, install, run_stack


@pytest.fixture(autouse=True)
def fresh_pulumi_runtime() -> Iterator[None]:
    """A fresh event loop and root Stack per test: Pulumi keeps both in module globals."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    pulumi.runtime.set_all_config({})
    pulumi.runtime.reset_options()
    # A program that failed inside an apply leaves Output tasks pending: cancel them so they do not
    # surface later as "Task was destroyed but it is pending" noise in another test.
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture
def mocks() -> tuple[RecordingMocks, OptionsCapturingMonitor]:
    """Mocks installed for stack `test` with empty config (tests add config with install())."""
    return install(stack="test")


@pytest.fixture(scope="session")
def _graph_cache() -> dict[tuple, Graph]:
    return {}


@pytest.fixture
def stack_graph(_graph_cache: dict[tuple, Graph]) -> Callable[..., Graph]:
    """`stack_graph(stack, preview=False, overrides=None)`: a stack's program graph, run once per session.

    Graphs are plain data once recorded, so tests share them; the runtime is reset after each run.
    """

    def get(stack: str, preview: bool = False, overrides: dict[str, str] | None = None) -> Graph:
        key = (stack, preview, tuple(sorted((overrides or {}).items())))
        if key not in _graph_cache:
            try:
                _graph_cache[key] = run_stack(stack, preview=preview, overrides=overrides)
            finally:
                pulumi.runtime.set_all_config({})
                pulumi.runtime.reset_options()
        return _graph_cache[key]

    return get
