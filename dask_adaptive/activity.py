"""What the scheduler saw between two looks of the controller: how busy our workers got, and whether
something happened that the next look should not wait an interval for.

Busy: `Scheduler.adaptive_target()` is a point sample. When tasks come in a rhythm close to the
interval, every sample can land in a pause, and a worker ~60% busy looks idle for the whole scale-down
window (issue 13 §5). At any moment adaptive_target never counts below the workers that are processing
a task (`workers_to_close` only offers idle ones), so the busiest moment between two looks is the size
that was needed then; `take()` returns it, and the stabilization window (decisions.py) keeps it.

Wake: the controller's wait is cut short when the next look has something to act on: new work (so a
cold burst is decided at its submit, not up to an interval later); the first result of a kind of task
(adaptive_target counted its tasks at a guessed 500ms until then, so the real size of a burst shows
only now); or a worker arriving while units are still pending (the local backend starts the next one
at its next look). The controller spaces looks at least `min_gap` apart.

One scheduler plugin, because transitions are the only place where "a task started on a worker" and
"a first result" are seen, and the scheduler calls every plugin on every transition: one hook, not
two, on its hottest path. Each call costs O(1) amortized: transitions that matter to neither return at
once, and the set of busy workers is pruned only when it could raise the peak. Tasks moved by work
stealing skip transitions: the thief is then counted from the next look on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin


class Activity(SchedulerPlugin):
    name = "dask-adaptive-activity"

    def __init__(
        self,
        scheduler: Any,
        counts: Callable[[Any], bool],
        wake: asyncio.Event,
        pending: Callable[[], bool],
    ) -> None:
        """`counts(ws)` says whether a WorkerState is one of ours (foreign workers are not our size);
        `wake` is set when the next look should come now; `pending()` says whether the last look saw
        units without a worker."""
        self.scheduler = scheduler
        self.counts = counts
        self.wake = wake
        self.pending = pending
        self._busy: set[Any] = set()  # a superset of our workers processing now, since the last prune
        self._peak = 0

    def update_graph(self, scheduler: Any, **kwargs: Any) -> None:
        self.wake.set()

    def add_worker(self, scheduler: Any, worker: str) -> None:
        if self.pending():
            self.wake.set()

    def transition(
        self, key: Any, start: str, finish: str, *args: Any, stimulus_id: str, **kwargs: Any
    ) -> None:
        if finish == "processing":  # a task started: is it on one of ours not yet counted?
            ts = self.scheduler.tasks.get(key)
            ws = getattr(ts, "processing_on", None)
            if ws is None or ws in self._busy or not self.counts(ws):
                return
            self._busy.add(ws)
            if len(self._busy) > self._peak:
                self._busy = {w for w in self._busy if w.processing}
                self._peak = max(self._peak, len(self._busy))
        elif finish == "memory" and start == "processing":  # a result: its prefix's first duration?
            ts = self.scheduler.tasks.get(key)
            if ts is not None and ts.prefix.state_counts["memory"] == 1:
                self.wake.set()

    def take(self) -> int:
        """Our workers processing at once at the busiest moment since the previous call, now included."""
        peak = self._peak
        self._busy = {ws for ws in self.scheduler.workers.values() if ws.processing and self.counts(ws)}
        self._peak = len(self._busy)
        return max(peak, self._peak)
