"""Worker-seconds (`dask_adaptive_worker_seconds_total{group}`) and decisions by cause, counted by the
controller from the backend's looks: pure arithmetic first, then a real in-process scheduler."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import prometheus_client
import pytest
from distributed import Scheduler, Worker

from dask_adaptive.backends.base import Phase, Unit
from dask_adaptive.backends.kubernetes.ranking import pod_unit
from dask_adaptive.config import resolve
from dask_adaptive.controller import Controller
from dask_adaptive.metrics import Stats, WorkerClock, register, unregister
from tests.dask_adaptive.scripted_backend import ScriptedBackend

BOUND = "ip-10-0-1-7.ec2.internal"


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def scenario(
    body: Callable[..., Awaitable[None]], units: list[Unit], workers: list[str], **options: Any
) -> None:
    """A real in-process scheduler with `workers` connected, and a controller over a scripted backend."""

    async def main() -> None:
        settings = resolve({"min_workers": "0", "max_workers": "4", "interval": "100ms", **options})
        async with Scheduler(port=0, dashboard=False, host="127.0.0.1") as s:
            ws = await asyncio.gather(
                *(Worker(s.address, name=n, nthreads=1, dashboard=False) for n in workers)
            )
            try:
                backend = ScriptedBackend(*units)
                controller = Controller(s, backend, settings, clock=Clock())
                controller.known.update(u.name for u in units)
                await body(s, None, backend, controller)
            finally:
                await asyncio.gather(*(w.close() for w in ws))

    asyncio.run(main())


def pod(name: str, node: str | None, phase: str, deleting: bool = False) -> dict:
    meta: dict = {"name": name, **({"deletionTimestamp": "2026-12-07T15:00:00Z"} if deleting else {})}
    return {"metadata": meta, "spec": {"nodeName": node} if node else {}, "status": {"phase": phase}}


@pytest.mark.parametrize(
    ("pod_doc", "holds"),
    [
        (pod("unscheduled", None, "Pending"), False),  # no node yet: costs nothing, asks for a node
        (pod("pulling", BOUND, "Pending"), True),  # bound, image pulling: its requests are held there
        (pod("running", BOUND, "Running"), True),
        (pod("terminating", BOUND, "Running", deleting=True), True),  # still on the node until gone
        (pod("evicted", BOUND, "Failed"), False),  # ended: holds nothing, however long it is listed
        (pod("completed", BOUND, "Succeeded"), False),
    ],
)
def test_what_holds_a_node_on_kubernetes(pod_doc, holds):
    assert pod_unit(pod_doc).placed is holds


def test_a_local_unit_holds_the_machine_once_its_process_is_started():
    assert not Unit("queued", Phase.PENDING).placed
    assert Unit("started", Phase.STARTING, placed=True).placed


def test_clock_counts_the_units_held_at_the_previous_look_times_the_gap():
    clock = WorkerClock()
    two = [
        Unit("a", Phase.RUNNING, True, BOUND, placed=True),
        Unit("b", Phase.PENDING, node=BOUND, placed=True),
        Unit("c", Phase.PENDING),
    ]
    assert clock.tick(100.0, two) == 0.0  # the first look only starts the clock
    assert clock.tick(102.5, [Unit("a", Phase.RUNNING, True, BOUND, True)]) == pytest.approx(5.0)  # 2 x 2.5 s
    assert clock.tick(104.5, []) == pytest.approx(2.0)  # 1 x 2 s; b went
    assert clock.tick(110.0, []) == 0.0
    assert (
        clock.tick(109.0, [Unit("x", Phase.RUNNING, placed=True)]) == 0.0
    )  # a clock going back adds nothing


def test_labelled_counters_on_the_registry():
    stats = Stats()
    handle = register(stats)
    try:
        stats.add_worker_seconds("spot+ondemand", 7.5)
        stats.add_worker_seconds("spot+ondemand", 2.5)
        stats.count_decision("Hold", "at-target")
        stats.count_decision("Hold", "at-target")
        stats.count_decision("ScaleUp", "work")
        text = prometheus_client.generate_latest().decode()
        assert 'dask_adaptive_worker_seconds_total{group="spot+ondemand"} 10.0' in text
        assert 'dask_adaptive_decisions_total{decision="Hold",reason="at-target"} 2.0' in text
        assert 'dask_adaptive_decisions_total{decision="ScaleUp",reason="work"} 1.0' in text
        assert "# TYPE dask_adaptive_worker_seconds_total counter" in text
    finally:
        unregister(handle)
    assert "worker_seconds" not in stats.as_dict() and "decisions" not in stats.as_dict()


@pytest.mark.parametrize(
    ("options", "group"),
    [
        ({}, "local"),
        (
            {"backend": "kubernetes", "namespace": "n", "deployment": "dask-worker", "selector": "a=b"},
            "dask-worker",
        ),
        ({"worker_group": "spot+ondemand"}, "spot+ondemand"),
    ],
)
def test_the_group_label_defaults_per_backend(options, group):
    assert resolve(options).worker_group == group


def test_the_controller_counts_placed_units_between_looks_and_every_decision():
    """Two running units and one unscheduled: 2 units x 3 s between two looks, labelled with the group."""
    units = [*(Unit(n, Phase.RUNNING, True, BOUND, True) for n in ("u1", "u2")), Unit("p", Phase.PENDING)]

    async def body(s, client, backend, controller):
        controller.clock.now = 10.0
        await controller.step()
        assert controller.stats.worker_seconds == {"team-gpu": 0.0}
        controller.clock.now = 13.0
        await controller.step()
        assert controller.stats.worker_seconds == {"team-gpu": pytest.approx(6.0)}
        backend.fail_observe = True  # a failed look adds nothing and counts no decision
        controller.clock.now = 20.0
        decisions = dict(controller.stats.decisions)
        await controller.step()
        assert controller.stats.worker_seconds == {"team-gpu": pytest.approx(6.0)}
        assert controller.stats.decisions == decisions
        backend.fail_observe = False
        controller.clock.now = 21.0  # the gap since the last good look is covered with its count
        await controller.step()
        assert controller.stats.worker_seconds == {"team-gpu": pytest.approx(6.0 + 2 * 8.0)}
        assert sum(controller.stats.decisions.values()) == 3
        assert all(
            kind in ("Hold", "ScaleUp", "ScaleDown") and cause for kind, cause in controller.stats.decisions
        )

    scenario(body, units, ["u1", "u2"], worker_group="team-gpu", min_workers="3")
