"""Numbers the controller keeps, and their export on the scheduler's own `/metrics` route.

distributed serves `/metrics` from `prometheus_client.REGISTRY`, so registering one collector there is
all it takes to appear next to the scheduler's metrics. prometheus_client is optional in the stock
image: without it the numbers are still kept (logs, tests) and simply not exported.

Two labelled counters sit beside the plain numbers: `dask_adaptive_decisions_total{decision, reason}` (every
decision of the loop, Holds included, by its cause: decisions.CAUSES, a fixed set) and
`dask_adaptive_worker_seconds_total{group}`, the seconds our units held a machine (`Unit.placed`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from dask_adaptive.backends.base import Unit

logger = logging.getLogger(__name__)

GAUGES = {
    "desired": "Workers the decisions want (scheduler target clamped to min-workers/max-workers)",
    "requested": "Workers the backend was asked for (e.g. Deployment spec.replicas)",
    "pending": "Requested workers that have not connected to the scheduler yet",
    "observed": "Workers of this backend connected to the scheduler and accepting work",
    "retiring": "Workers being retired or removed by an unfinished scale-down",
}
COUNTERS = {
    "scale_ups": "Scale-up decisions carried out",
    "scale_downs": "Scale-down decisions carried out",
    "cancelled": "Not-yet-arrived units removed without retirement",
    "retirements": "Workers retired through the scheduler (data moved) and then removed",
    "failed_retirements": "Retirements the scheduler aborted (data could not move); the worker stays",
    "retire_timeouts": "Retirements given up after adaptive.retire-timeout; the worker went back to work",
    "api_errors": "Backend calls that failed (the controller then took no action)",
    "corrections": "Repairs: wrong unit removed by the platform, orphan units, workers without a unit",
}
DECISIONS_DOC = "Decisions of the control loop (one per look, Holds included) by kind and cause"
WORKER_SECONDS_DOC = (
    "Seconds worker units held a machine (a pod bound to a node, a started process), by worker group"
)


class WorkerClock:
    """Worker-seconds from the backend's looks: between two looks, the units that held a machine at the
    first one, times the seconds between them (so a unit is counted from the look that first sees it
    placed to the look that sees it gone: at most one interval off at each end). A failed look adds
    nothing; the next one covers the gap with the last count seen."""

    def __init__(self) -> None:
        self._last: tuple[float, int] | None = None

    def tick(self, now: float, units: Iterable[Unit]) -> float:
        """Record this look (monotonic `now`); return the worker-seconds since the previous one."""
        added = 0.0
        if self._last is not None:
            then, held = self._last
            added = max(0.0, now - then) * held
        self._last = (now, sum(1 for u in units if u.placed))
        return added


@dataclass
class Stats:
    desired: int = 0
    requested: int = 0
    pending: int = 0
    observed: int = 0
    retiring: int = 0
    scale_ups: int = 0
    scale_downs: int = 0
    cancelled: int = 0
    retirements: int = 0
    failed_retirements: int = 0
    retire_timeouts: int = 0
    api_errors: int = 0
    corrections: int = 0
    # labelled counters: worker-seconds by group, decisions by (kind, cause)
    worker_seconds: dict[str, float] = field(default_factory=dict)
    decisions: dict[tuple[str, str], int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        """The plain numbers (GAUGES and COUNTERS), not the labelled counters."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in GAUGES or f.name in COUNTERS}

    def add_worker_seconds(self, group: str, seconds: float) -> None:
        self.worker_seconds[group] = self.worker_seconds.get(group, 0.0) + seconds

    def count_decision(self, kind: str, cause: str) -> None:
        self.decisions[(kind, cause)] = self.decisions.get((kind, cause), 0) + 1

    def add(self, **increments: int) -> None:
        """Add to counters by name (the executor's counts reach the controller's stats this way); a
        gauge or an unknown name is a bug, refused before anything is added."""
        wrong = sorted(set(increments) - set(COUNTERS))
        if wrong:
            raise KeyError(f"not a counter: {', '.join(wrong)}")
        for name, n in increments.items():
            setattr(self, name, getattr(self, name) + n)


class _Collector:
    """A prometheus_client custom collector reading `Stats` at scrape time (no copies to keep in sync)."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for name, doc in GAUGES.items():
            yield GaugeMetricFamily(f"dask_adaptive_{name}_workers", doc, value=getattr(self.stats, name))
        for name, doc in COUNTERS.items():
            yield CounterMetricFamily(f"dask_adaptive_{name}", doc, value=getattr(self.stats, name))
        decisions = CounterMetricFamily(
            "dask_adaptive_decisions", DECISIONS_DOC, labels=["decision", "reason"]
        )
        for (kind, cause), n in sorted(self.stats.decisions.items()):
            decisions.add_metric([kind, cause], n)
        yield decisions
        seconds = CounterMetricFamily("dask_adaptive_worker_seconds", WORKER_SECONDS_DOC, labels=["group"])
        for group, total in sorted(self.stats.worker_seconds.items()):
            seconds.add_metric([group], total)
        yield seconds


def register(stats: Stats) -> object | None:
    """Export `stats` on /metrics; returns a handle for `unregister`, or None without prometheus_client."""
    try:
        import prometheus_client
    except ImportError:
        logger.info("prometheus_client is not installed; dask_adaptive metrics are not exported")
        return None
    collector = _Collector(stats)
    prometheus_client.REGISTRY.register(collector)  # type: ignore[arg-type]
    return collector


def unregister(handle: object | None) -> None:
    if handle is None:
        return
    import prometheus_client

    with contextlib.suppress(KeyError):
        prometheus_client.REGISTRY.unregister(handle)  # type: ignore[arg-type]
