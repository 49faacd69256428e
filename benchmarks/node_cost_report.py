"""The tables of node_cost.py: per scenario, each contender's node-seconds with paired ratios and their
95% bootstrap intervals (node_cost_stats.py), the ratio to the workload's physical lower bound, the
claims that survive their intervals, the cold-burst table and the plot. Pure given the runs."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import Tee, table
from node_cost_stats import claim, describe_ratio, lower_bound, paired_ratios

# (contender, against, what the pair isolates): each printed as a claim only if its interval excludes 1
PAIRS = (
    ("packed", "unpacked", "packing alone (same preload, same CA settings)"),
    (
        "packed",
        "operator",
        "this preload (packing) against distributed's adaptive_target as the operator drives it",
    ),
    ("unpacked", "operator", "this preload without packing against the operator's way"),
    ("packed", "2017", "this preload against the 2017 method"),
    ("operator", "2017", "the operator's way against the 2017 method"),
    ("headroom", "packed", "one node of warm headroom against none"),
)


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def per_repeat(
    runs: list[Any], scenario: str, contender: str, attr: str = "node_seconds"
) -> dict[int, float]:
    """attr per repeat of the runs that finished (a run with a failure is left out of every ratio)."""
    return {
        r.repeat: getattr(r, attr)
        for r in runs
        if r.scenario == scenario and r.contender == contender and not r.failures
    }


def start_allowance(runs: list[Any], scenario: str) -> float:
    """The fastest cold start any run of the scenario achieved: submit -> first worker joined, over
    bursts that began with no worker (CA reaction + boot + pod start + the scaler's own reaction)."""
    cold = [
        b.first_worker
        for r in runs
        if r.scenario == scenario
        for b in r.bursts
        if b.first_worker is not None and not b.workers_at_submit
    ]
    return min(cold) if cold else 0.0


def scenario_bound(runs: list[Any], scenario: Any, task_range: tuple[float, float]) -> float:
    """lower_bound() of the scenario's workload (node_cost_stats.py)."""
    lo, hi = task_range
    busy = 0.0
    cold = []
    for n in scenario.bursts:
        durs = [hi] if n == 1 else [hi - (hi - lo) * i / (n - 1) for i in range(n)]
        busy += sum(durs) + scenario.lanes * scenario.stream_tasks * scenario.stream_task
        width = min(n + scenario.lanes, scenario.max_workers)
        cold.append(math.ceil(width / scenario.workers_per_node))
    threads = next((r.threads for r in runs if r.scenario == scenario.name), 1)
    slots = scenario.workers_per_node * threads
    return lower_bound(busy, slots, cold, start_allowance(runs, scenario.name))


def report(
    runs: list[Any],
    scenario: Any,
    contenders: Sequence[str],
    task_range: tuple[float, float],
    seed: int,
    out: Tee,
) -> None:
    """The table for one scenario: node-seconds per repeat, against the operator baseline (paired) and
    against the physical lower bound, each a mean with its 95% bootstrap interval."""
    names = [c for c in contenders if any(r.contender == c and r.scenario == scenario.name for r in runs)]
    base = "operator" if "operator" in names else names[0]
    bound = scenario_bound(runs, scenario, task_range)
    rows = []
    for c in names:
        rs = sorted(
            (r for r in runs if r.contender == c and r.scenario == scenario.name), key=lambda r: r.repeat
        )
        ns = per_repeat(runs, scenario.name, c)
        span = {r.repeat: sum(b.makespan for b in r.bursts) for r in rs if all(b.makespan for b in r.bursts)}
        first = [b.first_worker for r in rs for b in r.bursts if b.first_worker is not None]
        rows.append(
            [
                c,
                len(rs),
                " / ".join(f"{r.node_seconds:.0f}" for r in rs),
                describe_ratio(paired_ratios(ns, per_repeat(runs, scenario.name, base)), seed),
                describe_ratio([v / bound for v in ns.values()], seed) if bound else "-",
                describe_ratio(
                    paired_ratios(span, {r.repeat: sum(b.makespan for b in r.bursts) for r in runs
                                         if r.scenario == scenario.name and r.contender == base
                                         and all(b.makespan for b in r.bursts)}),
                    seed,
                ),
                fmt(med(first)),
                f"+{sum(r.launches for r in rs)}/-{sum(r.removals for r in rs)}",
                sum(r.drains for r in rs),
                sum(r.drained_busy for r in rs),
                f"+{sum(r.workers_added for r in rs)}/-{sum(r.workers_removed for r in rs)}",
                sum(r.lost for r in rs),
                sum(r.recomputed for r in rs),
                sum(r.restarted for r in rs),
                sum(len(r.failures) for r in rs),
            ]
        )  # fmt: skip
    threads = next((r.threads for r in runs if r.scenario == scenario.name), "?")
    out(
        f"\n### {scenario.name}: workersPerNode {scenario.workers_per_node} on {scenario.instance_type}, "
        f"{threads} thread(s) per worker, minWorkers {scenario.min_workers}, "
        f"maxWorkers {scenario.max_workers}, node group max {scenario.node_max}, bursts of "
        f"{'/'.join(map(str, scenario.bursts))} tasks"
        + (
            f", each with {scenario.lanes} lanes x {scenario.stream_tasks} tasks of "
            f"{scenario.stream_task:g} s"
            if scenario.lanes
            else ""
        )
        + "  [REAL control plane]\n"
    )
    out(
        f"physical lower bound: {bound:.1f} node-s (busy task-seconds / task slots per node, plus for each"
        f" cold burst its nodes x the fastest cold start measured, "
        f"{start_allowance(runs, scenario.name):.1f} s)"
    )
    out(
        table(
            [
                "contender", "runs", "node-s per run (repeat order)", f"node-s / {base} [95% CI]",
                "node-s / lower bound [95% CI]", f"makespan / {base} [95% CI]", "first new worker s (median)",
                "node launches/removals", "nodes drained by CA", "busy workers drained",
                "workers added/removed", "lost", "recomputed", "restarted", "failed",
            ],
            rows,
        )
    )  # fmt: skip
    out("(mean of per-repeat paired ratios [percentile-bootstrap 95% interval over repeats])")
    for a, b, what in PAIRS:
        if a in names and b in names:
            ratios = paired_ratios(per_repeat(runs, scenario.name, a), per_repeat(runs, scenario.name, b))
            out(f"{scenario.name}: " + claim(f"{a} / {b} node-seconds, {what}", ratios, seed))


def report_cold(runs: list[Any], scenarios: list[Any], out: Tee) -> None:
    """Issue 13 §6: what a cold burst asks for, by threads per worker (all contenders and repeats)."""

    def span(xs: list[int]) -> str:
        return f"{statistics.median(xs):g} ({min(xs)}-{max(xs)})" if xs else "-"

    rows = []
    for s in scenarios:
        cold = [(r, i, b) for r in runs if r.scenario == s.name for i, b in enumerate(r.bursts)]
        cold = [(r, i, b) for r, i, b in cold if not b.workers_at_submit and b.raw_target is not None]
        for i, tasks in enumerate(s.bursts):
            these = [(r, b) for r, j, b in cold if j == i]
            if not these:
                continue
            raw = [b.raw_target for _, b in these if b.raw_target is not None]
            asked = [b.requested for _, b in these]
            rows.append(
                [
                    s.name,
                    these[0][0].threads,
                    f"{i + 1} ({tasks} tasks)",
                    len(these),
                    span(raw),
                    span([math.ceil(min(x, s.max_workers) / s.workers_per_node) for x in raw]),
                    span(asked),
                    span([math.ceil(x / s.workers_per_node) for x in asked]),
                    span([b.nodes_launched for _, b in these]),
                ]
            )
    out("\n### Cold bursts (issue 13 §6): what a burst asks for from zero workers\n")
    out(
        table(
            [
                "scenario",
                "threads/worker",
                "burst",
                "cold bursts",
                "raw adaptive_target (workers)",
                "nodes that would need",
                "preload asked (workers)",
                "nodes for that",
                "nodes launched",
            ],
            rows,
        )
    )
    out(
        "(raw: distributed's Scheduler.adaptive_target() once the burst waits at the scheduler - from zero"
        " workers it counts cores; nodes for it clamped to maxWorkers as distributed's Adaptive would;"
        " preload: the peak replicas before the first worker joined; median (range))"
    )


def plot(runs: list[Any], scenarios: list[Any], png: Path, contenders: Sequence[str]) -> None:
    """Billed worker nodes over time per contender, repeat 1, one panel per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(scenarios), 1, figsize=(10, 4 * len(scenarios)), squeeze=False)
    colours = {
        "operator": "tab:red", "2017": "tab:purple", "unpacked": "tab:orange", "packed": "tab:blue",
        "headroom": "tab:green",
    }  # fmt: skip
    for ax, scenario in zip(axes[:, 0], scenarios, strict=True):
        for c in contenders:
            r = next(
                (r for r in runs if r.contender == c and r.scenario == scenario.name and r.repeat == 0),
                None,
            )
            if r is None or not r.steps:
                continue
            xs = [t for t, _ in r.steps]
            ys = [n for _, n in r.steps]
            label = f"{c} ({r.node_seconds:.0f} node-s)"
            ax.step(xs, ys, where="post", label=label, color=colours[c], lw=2, alpha=0.8)
            for t in r.submits:
                ax.axvline(t, color="grey", ls=":", lw=1)
        ax.set_xlabel("seconds since the first burst (dotted: burst submits)")
        ax.set_ylabel("billed worker nodes")
        narrow = f", then {scenario.lanes} in flight" if scenario.lanes else ""
        ax.set_title(
            f"Worker nodes over time, {scenario.name} (workersPerNode {scenario.workers_per_node}"
            f"{narrow}), repeat 1"
        )
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def report_tail(
    runs: list[Any], contenders: Sequence[str], plain: Sequence[str], out: Tee
) -> tuple[int, int]:
    """Tasks lost or run again per contender and why; returns (lost or recomputed, failed runs)."""
    lost = sum(r.lost + r.recomputed for r in runs)
    failed = sum(len(r.failures) for r in runs)
    out(f"\ntasks lost or recomputed, all runs: {lost}; runs with failures: {failed}")
    for c in contenders:
        again: Counter[str] = Counter()
        for r in runs:
            if r.contender == c:
                again.update(r.rerun_by)
        causes = f" ({', '.join(f'{k} {n}' for k, n in sorted(again.items()))})" if again else ""
        if again and c in plain:
            causes += " ['preload' = retired by this baseline's own retire_workers]"
        errors = sum(r.driver_errors for r in runs if r.contender == c)
        out(
            f"{c}: tasks run again, all runs: {sum(again.values())}{causes}"
            + (f"; driver look errors {errors}" if errors else "")
        )
    return lost, failed
