"""The one scheduler plugin of the preload (activity.py), against a real in-process Scheduler and Workers.

It does two jobs on one `transition` hook: the busiest moment between two looks (`take`) and the wake-ups
that cut the controller's wait short. These pin each job on its own, so merging or reordering the hook's
branches cannot silently drop one; the controller-level consequences are in test_controller.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from distributed import Client, Event, Scheduler, Worker

from dask_adaptive.activity import Activity
from dask_adaptive.config import resolve
from dask_adaptive.controller import Controller
from tests.dask_adaptive.scripted_backend import ScriptedBackend, running


def hold(name: str) -> str:
    Event(name).wait()
    return name


def inc(x: int) -> int:
    return x + 1


def with_plugin(
    body: Callable[[Scheduler, Client, Activity, dict[str, bool], list[str]], Awaitable[None]],
    workers: tuple[str, ...] = ("a", "b"),
) -> None:
    """A Scheduler with `workers` (ours, 1 thread each) and one foreign worker, and an Activity."""

    async def main() -> None:
        async with Scheduler(port=0, dashboard=False, dashboard_address="127.0.0.1:0", host="127.0.0.1") as s:
            ws = [Worker(s.address, name=n, nthreads=1, dashboard=False) for n in (*workers, "foreign")]
            await asyncio.gather(*ws)
            try:
                async with Client(s.address, asynchronous=True) as client:
                    state = {"pending": False}
                    plugin = Activity(
                        s, lambda w: w.name in workers, asyncio.Event(), lambda: state["pending"]
                    )
                    s.add_plugin(plugin, name=Activity.name)
                    addresses = {w.name: a for a, w in s.workers.items()}
                    await body(s, client, plugin, state, [addresses[n] for n in (*workers, "foreign")])
            finally:
                await asyncio.gather(*(w.close() for w in ws))

    asyncio.run(main())


async def until(condition: Callable[[], Any], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_the_controller_registers_one_plugin_and_removes_it_on_stop():
    async def main() -> None:
        async with Scheduler(port=0, dashboard=False, dashboard_address="127.0.0.1:0", host="127.0.0.1") as s:
            before = set(s.plugins)
            controller = Controller(s, ScriptedBackend(*running("u1")), resolve({"interval": "100ms"}))
            assert set(s.plugins) - before == {Activity.name}
            assert s.plugins[Activity.name] is controller.activity
            await controller.stop()
            assert set(s.plugins) == before

    asyncio.run(main())


def test_busy_is_the_most_of_our_workers_processing_at_once_between_looks():
    """Two tasks at once on our two workers count 2; tasks one after another on both count 1 (not the
    number of workers touched); a task on a foreign worker counts 0; each look starts afresh."""

    async def body(s, client, plugin, state, addresses):
        a, b, foreign = addresses
        assert plugin.take() == 0
        together = [client.submit(hold, "go", workers=[w], pure=False) for w in (a, b)]
        await until(lambda: all(s.workers[w].processing for w in (a, b)))
        await Event("go").set()
        await client.gather(together)
        assert plugin.take() == 2
        assert plugin.take() == 0  # nothing ran since the previous look
        for w in (a, b, a):
            assert await client.submit(inc, 1, workers=[w], pure=False) == 2
        assert plugin.take() == 1
        assert await client.submit(inc, 1, workers=[foreign], pure=False) == 2
        assert plugin.take() == 0

    with_plugin(body)


def test_wakes_on_new_work_and_on_a_prefix_first_result_only():
    async def body(s, client, plugin, state, addresses):
        a = addresses[0]
        futures = client.map(hold, ["first", "second"], workers=[a], pure=False)  # one thread: in turn
        await until(plugin.wake.is_set)  # update_graph
        await until(lambda: s.tasks[futures[0].key].state == "processing")
        plugin.wake.clear()
        await Event("first").set()
        await futures[0]
        await until(plugin.wake.is_set)  # the first result of the prefix `hold`
        plugin.wake.clear()
        await Event("second").set()
        await futures[1]
        await asyncio.sleep(0.05)
        assert not plugin.wake.is_set()  # its second result tells nothing new

    with_plugin(body, workers=("a",))


def test_wakes_on_a_worker_arriving_only_while_units_are_pending():
    async def body(s, client, plugin, state, addresses):
        for pending in (False, True):
            plugin.wake.clear()
            state["pending"] = pending
            async with Worker(s.address, name=f"late-{pending}", nthreads=1, dashboard=False):
                await until(lambda: len(s.workers) == 3)
                assert plugin.wake.is_set() == pending
            await until(lambda: len(s.workers) == 2)

    with_plugin(body, workers=("a",))
