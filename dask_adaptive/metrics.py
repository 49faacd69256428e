"""Numbers the controller keeps, and their export on the scheduler's own `/metrics` route.

distributed serves `/metrics` from `prometheus_client.REGISTRY`, so registering one collector there is
all it takes to appear next to the scheduler's metrics. prometheus_client is optional in the stock
image: without it the numbers are still kept (logs, tests) and simply not exported.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

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

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

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
