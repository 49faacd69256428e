"""The statistics of node_cost.py, pure: paired per-repeat ratios, their percentile-bootstrap interval, the
wording of a claim, and a workload's physical lower bound of node-seconds.

A ratio is paired by repeat (contender A's node-seconds over B's in the same repeat, whose runs were
interleaved in a shuffled order), so drift across repeats (the machine's load) cancels. The interval is a
percentile bootstrap of the mean of those ratios: resample the repeats with replacement, take the mean,
read the 2.5th and 97.5th percentiles. A result is stated as a claim only where that interval excludes 1.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping, Sequence

from _intervals import percentile_bootstrap


def paired_ratios(a: Mapping[int, float], b: Mapping[int, float]) -> list[float]:
    """a[r] / b[r] for every repeat r both have (b[r] > 0), in repeat order."""
    return [a[r] / b[r] for r in sorted(a) if b.get(r)]


def bootstrap_ci(
    values: Sequence[float], *, reps: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of `values` (seeded: the same input gives the same
    interval; `_intervals.percentile_bootstrap`). One value gives a zero-width interval: no spread can be
    estimated from it."""
    if not values:
        raise ValueError("bootstrap_ci: no values")
    return percentile_bootstrap(values, statistics.fmean, random.Random(seed), reps, level)


def excludes_one(interval: tuple[float, float]) -> bool:
    lo, hi = interval
    return lo > 1 or hi < 1


def describe_ratio(values: Sequence[float], seed: int = 0) -> str:
    """'0.956 [0.94, 0.97] (n=5)': the mean of the paired ratios and its 95% bootstrap interval."""
    if not values:
        return "-"
    lo, hi = bootstrap_ci(values, seed=seed)
    return f"{statistics.fmean(values):.3f} [{lo:.3f}, {hi:.3f}] (n={len(values)})"


def claim(what: str, values: Sequence[float], seed: int = 0) -> str:
    """A sentence: a claim when the 95% interval excludes 1, else says that no claim is made."""
    if len(values) < 2:
        return f"no claim: {what}: fewer than 2 paired repeats"
    interval = bootstrap_ci(values, seed=seed)
    mean = statistics.fmean(values)
    text = f"{what}: {describe_ratio(values, seed)}"
    if not excludes_one(interval):
        return f"no claim (95% interval includes 1): {text}"
    change = (1 - mean) * 100
    verb = "fewer" if mean < 1 else "more"
    return f"CLAIM: {text} - {abs(change):.0f}% {verb} node-seconds"


def lower_bound(
    busy_worker_seconds: float, slots_per_node: int, cold_nodes: Sequence[int], start_s: float
) -> float:
    """Node-seconds no scaler can beat for a workload: its busy work packed onto nodes with no idle slot
    (busy worker-seconds / task slots per node), plus, for each cold burst, the nodes it needs at the
    width every contender runs it at, each paying the fastest start any run achieved (CA reaction, node
    boot, pod start: `start_s`). No unneeded time, no idle worker, no node kept between bursts."""
    if slots_per_node < 1:
        raise ValueError(f"slots_per_node {slots_per_node!r} must be >= 1")
    return busy_worker_seconds / slots_per_node + sum(cold_nodes) * start_s
