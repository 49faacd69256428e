"""Fixtures for the infra tests: a clean Pulumi runtime per test, and ready-installed mocks."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Iterator

import pulumi
import pytest
from pulumi.runtime.settings import SETTINGS  # the SDK's run state, as pulumi.runtime.test resets it

from testbed.infra.harness import Graph, OptionsCapturingMonitor, RecordingMocks, install, run_stack

log = logging.getLogger("tests.infra")


FAILED_RUN = pytest.StashKey[asyncio.AbstractEventLoop]()


@pytest.fixture(autouse=True)
def fresh_pulumi_runtime(request: pytest.FixtureRequest) -> Iterator[None]:
    """A fresh event loop and root Stack per test: Pulumi keeps both in module globals."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    failed = program_failed()
    # The SDK keeps the last run's RPCs and output tasks in process-wide state (reset_options() does not
    # replace it; only the next pulumi.runtime.test clears it): release them with their test.
    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()
    pulumi.runtime.set_all_config({})
    pulumi.runtime.reset_options()
    cancel_pending(loop)
    asyncio.set_event_loop(None)
    loop.close()
    if failed:
        request.node.stash[FAILED_RUN] = loop  # settled once pytest let go of the test (below)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """After the whole teardown - pytest keeps the test's captured log records, whose tracebacks hold
    the failed program, until its own teardown hooks end - settle what a failed program left behind."""
    yield
    loop = item.stash.get(FAILED_RUN, None)
    if loop is not None:
        del item.stash[FAILED_RUN]
        settle_failed_program(loop)


def cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    """A program that failed inside an apply leaves Output tasks pending: cancel them so they do not
    surface later as "Task was destroyed but it is pending" noise in another test. (A function: the
    cancelled tasks, whose tracebacks hold the program's frames, are let go of when it returns.)"""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def program_failed() -> bool:
    """Did the test's last Pulumi run fail (an RPC or an output raised)? Read from the SDK's run state,
    which pulumi.runtime.test resets at the start of every run."""
    outputs = list(SETTINGS.outputs)
    return SETTINGS.rpc_manager.unhandled_exception is not None or any(
        t.done() and not t.cancelled() and t.exception() is not None for t in outputs
    )


def settle_failed_program(loop: asyncio.AbstractEventLoop) -> list[str]:
    """Finalise, inside its own test, what a failed program left behind; returns asyncio's reports.

    When the program fails (e.g. a ConfigError raised inside an apply), Pulumi re-raises the first failure
    to the test (`pytest.raises` sees it) and sets the same exception on every output future that
    depended on it - hundreds, which nobody awaits. They are held by the SDK's process-wide run state
    (`SETTINGS.outputs`, cleared only when the next run starts) and then sit in reference cycles, so
    they are finalised at some later full garbage collection - or at interpreter exit, where asyncio
    prints "Future exception was never retrieved ... ConfigError" after pytest's summary. Collecting at
    the end of the test's teardown (the run state released, the loop closed), with this loop's
    exception handler catching the reports (a closed loop still reports), settles them with their test:
    they are duplicates of the failure the test already saw. Only after a failed program (a full
    collection costs ~0.2 s).
    """
    # Keep only text: a report's context holds its future, whose traceback holds more of the program.
    reports: list[str] = []
    loop.set_exception_handler(lambda _loop, context: reports.append(repr(context.get("exception"))))
    try:
        while gc.collect():  # finalising some futures frees the cycles that held others
            pass
    finally:
        loop.set_exception_handler(None)
    if reports:
        log.debug("settled %d never-awaited futures of a failed program: %s", len(reports), set(reports))
    return reports


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
