"""What the demo watches, read inside the scheduler (one cheap call per refresh)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

PLUGIN = "dask-adaptive-demo"


class DoneCounter(SchedulerPlugin):
    """Counts task completions per key, so the demo can show progress and prove nothing ran twice."""

    name = PLUGIN

    def __init__(self) -> None:
        self.done: Counter[str] = Counter()

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if start == "processing" and finish == "memory":
            self.done[str(key)] += 1


def probe(dask_scheduler: Any) -> dict[str, int]:
    controller = dask_scheduler.extensions.get("adaptive")
    counter = dask_scheduler.plugins.get(PLUGIN)
    done = counter.done if counter is not None else Counter()
    return {
        "requested": controller.stats.requested if controller is not None else 0,
        "desired": controller.stats.desired if controller is not None else 0,
        "running": len(dask_scheduler.workers),
        "in_flight": sum(len(ws.processing) for ws in dask_scheduler.workers.values()),
        "done": len(done),
        "recomputed": sum(n - 1 for n in done.values()),
        "holding": sum(1 for ws in dask_scheduler.workers.values() if ws.has_what),
    }
