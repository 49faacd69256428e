"""Work the controller would miss between two looks: the busiest moment since the previous one.

`Scheduler.adaptive_target()` is a point sample. When tasks come in a rhythm close to the interval,
every sample can land in a pause, and a worker ~60% busy looks idle for the whole scale-down window
(issue 13 §5). At any moment adaptive_target never counts below the workers that are processing a task
(`workers_to_close` only offers idle ones), so the busiest moment between two looks is the size that
was needed then; this plugin measures it, and the stabilization window (policy.py) keeps it.

A scheduler plugin, because transitions are the only place where "a task started on a worker" is
seen; each one costs O(1) amortized: the set of busy workers is pruned only when it could raise the
peak. Tasks moved by work stealing skip transitions: the thief is then counted from the next look on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin


class Activity(SchedulerPlugin):
    name = "dask-adaptive-activity"

    def __init__(self, scheduler: Any, counts: Callable[[Any], bool]) -> None:
        """`counts(ws)` says whether a WorkerState is one of ours (foreign workers are not our size)."""
        self.scheduler = scheduler
        self.counts = counts
        self._busy: set[Any] = set()  # a superset of our workers processing now, since the last prune
        self._peak = 0

    def transition(
        self, key: Any, start: str, finish: str, *args: Any, stimulus_id: str, **kwargs: Any
    ) -> None:
        if finish != "processing":
            return
        ts = self.scheduler.tasks.get(key)
        ws = getattr(ts, "processing_on", None)
        if ws is None or ws in self._busy or not self.counts(ws):
            return
        self._busy.add(ws)
        if len(self._busy) > self._peak:
            self._busy = {w for w in self._busy if w.processing}
            self._peak = max(self._peak, len(self._busy))

    def take(self) -> int:
        """Our workers processing at once at the busiest moment since the previous call, now included."""
        peak = self._peak
        self._busy = {ws for ws in self.scheduler.workers.values() if ws.processing and self.counts(ws)}
        self._peak = len(self._busy)
        return max(peak, self._peak)
