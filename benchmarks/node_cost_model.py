"""The data and helpers of node_cost.py: its timings, scenarios and runs, the program's objects it
records, the attribution of tasks run again, and the scaleDownUnneededTime curve section (simulated).

Workload: bursts submitted on a fixed period (gaps longer than scale-down window + unneeded time), each a
map of sleeping tasks with durations spread evenly over the task range (a wide start, a narrowing tail);
results are held until the burst is done (retirements during its tail move them), then read back and
released, as `compute()` does; one file per execution shows any recomputation.
With `--step` (its own RESULTS.md section and plot), per `--shapes` NODESxLANES (3x4, 6x12) a burst
of 4 x NODES tasks fills the node group, and a narrower phase starts with it and outlasts it: LANES lanes,
each submitting its next 1-minute task when its last is done, for 20 minutes (EKS time) - longer than the
scale-down window plus the unneeded time, as a service's quieter hours or a job's narrower stage are. So
the workers needed step from 4 x NODES down to LANES when the burst's tasks end; these tasks return
16-256 KiB each, so the scheduler's least-data-first order is in play. That is where a scale-down that
leaves nodes part-used bills: the idle workers are scattered over the nodes, and the busy ones too, so
only draining busy workers (packed: they take no new task and finish their own) empties a node; without
it cluster-autoscaler's 0.5 threshold drains a node below half use by evicting its busy workers (a
task cut off is counted as `restarted`, and each task run again is put down to what removed the worker of
its earlier run: a CA drain, the preload's retirement, or other), and leaves one at half or more.
Measured per contender: node-seconds from the first submit to the end of the last period (or later, until
the node count is back at its baseline), makespan per burst, time from each submit to the first worker
that joined after it, node launches/removals, workers added/removed, tasks lost or recomputed.
Cold bursts (issue 13 §6): at each submit (no worker connected) distributed's raw `adaptive_target()`
(it counts cores from zero), what the preload asked for (peak replicas before the first worker joined,
divided by --worker-threads) and the nodes launched for the burst; with 1 thread per worker (workersPerNode
4) and with 4 (workersPerNode 1, the aws default shape: one worker with the node's cores).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import Tee, load
from node_cost_baselines import PLAIN

from infra.config.autoscaler import AUTOSCALER_DEFAULTS
from infra.config.kubernetes import DASK_DEFAULTS
from testbed.dask import kube_driver as e2e
from testbed.dask.kube_fixtures import SCHEDULER, STACK, WORKERS, DaskLayer
from testbed.kube import ca_rules
from testbed.kube.control_plane import ControlPlane, find_binaries
from testbed.kube.kubelet import pod_ready
from testbed.kube.provisioner import node_count_steps, node_seconds
from testbed.kube.stack_apply import object_path, record_stack

CONTENDERS = ("packed", "unpacked", "operator", "2017", "headroom")
DEFAULT_CONTENDERS = ("packed", "unpacked", "operator", "2017")
SPREAD = ("unpacked", *PLAIN)  # no packing pod affinity: kube-scheduler spreads
EKS_BOOT_S = 90.0
EKS_CA_SCAN_S = 10.0
EKS_TASK_RANGE_S = (30.0, 180.0)
STREAM_TASK_S = 60.0  # the narrower phase's tasks (--step)
STREAM_TASKS = 20  # per lane: a 20 min phase
STEP_RESULT_KIB = (16, 256)  # --step tasks return data (the bursts' tasks return just i*i)
POD_START_ALLOWANCE_S = 15.0


def _seconds(text: str | float) -> float:
    if isinstance(text, int | float):
        return float(text)
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


@dataclass(frozen=True)
class Timing:
    """The EKS durations divided by the compression factor."""

    compression: float
    boot: float
    reaction: float
    unneeded: float  # scale-down-unneeded-time, the same for every contender
    after_add: float
    scale_down_delay: float
    target_duration: float
    interval: float
    task_range: tuple[float, float]
    recheck: float  # unremovable-node-recheck-timeout
    max_grace: float  # max-graceful-termination-sec
    eviction_time: float  # max-pod-eviction-time

    @classmethod
    def compressed(cls, factor: float, interval: float = 0.25, unneeded: str | None = None) -> Timing:
        if factor <= 0:
            raise ValueError(f"--compression {factor!r}: must be > 0")
        return cls(
            compression=factor,
            boot=EKS_BOOT_S / factor,
            reaction=EKS_CA_SCAN_S / factor,
            unneeded=_seconds(unneeded or AUTOSCALER_DEFAULTS["scaleDownUnneededTime"]) / factor,
            after_add=_seconds(AUTOSCALER_DEFAULTS["scaleDownDelayAfterAdd"]) / factor,
            scale_down_delay=round(_seconds(DASK_DEFAULTS["scaleDownDelay"]) / factor, 3),
            # the config's own lower bound is 0.1 s
            target_duration=max(0.1, round(_seconds(DASK_DEFAULTS["targetDuration"]) / factor, 3)),
            interval=interval,
            task_range=(EKS_TASK_RANGE_S[0] / factor, EKS_TASK_RANGE_S[1] / factor),
            recheck=ca_rules.UNREMOVABLE_RECHECK_S / factor,
            max_grace=ca_rules.MAX_GRACEFUL_TERMINATION_S / factor,
            eviction_time=ca_rules.MAX_POD_EVICTION_S / factor,
        )

    def describe(self) -> str:
        f = self.compression
        return (
            f"time compressed {f:g}x: node boot {self.boot:g} s (EKS {self.boot * f:g} s), CA reaction "
            f"{self.reaction:g} s ({self.reaction * f:g} s), scale-down-unneeded-time {self.unneeded:g} s "
            f"({self.unneeded * f:g} s, every contender), scale-down-delay-after-add {self.after_add:g} s "
            f"({self.after_add * f:g} s), unremovable-node-recheck {self.recheck:g} s "
            f"({self.recheck * f:g} s), max-graceful-termination {self.max_grace:g} s "
            f"({self.max_grace * f:g} s), max-pod-eviction-time {self.eviction_time:g} s "
            f"({self.eviction_time * f:g} s), preload scaleDownDelay "
            f"{self.scale_down_delay:g} s ({self.scale_down_delay * f:g} s), targetDuration "
            f"{self.target_duration:g} s ({self.target_duration * f:g} s), interval {self.interval:g} s "
            f"(not compressed), tasks {self.task_range[0]:g}-{self.task_range[1]:g} s "
            f"({self.task_range[0] * f:g}-{self.task_range[1] * f:g} s)"
        )


@dataclass(frozen=True)
class Scenario:
    name: str
    workers_per_node: int
    instance_type: str
    max_workers: int
    node_max: int
    bursts: tuple[int, ...]  # tasks per burst
    min_workers: int = 0
    worker_threads: int | None = None  # None: the program's default (the worker's CPU in whole cores)
    # with each burst, a narrower phase that outlasts it: `lanes` tasks kept in flight (a lane submits its
    # next task when its last one is done), `stream_tasks` per lane of `stream_task` seconds (compressed)
    lanes: int = 0
    stream_tasks: int = 0
    stream_task: float = 0.0
    result_kib: tuple[int, int] = (0, 0)  # each task's result size range (timed_task)

    def stream_length(self) -> float:
        return self.stream_tasks * self.stream_task


@dataclass
class Burst:
    tasks: int
    makespan: float | None = None  # the wide burst; with a narrower phase, both
    narrow: tuple[float, float] | None = None  # the narrower phase alone: (monotonic start, end)
    first_worker: float | None = None  # submit -> first worker joined after the submit
    raw_target: int | None = None  # distributed's adaptive_target() right after the submit
    workers_at_submit: int = 0
    requested: int = 0  # peak replicas the preload asked for before the first new worker joined
    nodes_launched: int = 0


@dataclass
class Run:
    scenario: str
    contender: str
    repeat: int
    threads: int = 1
    bursts: list[Burst] = field(default_factory=list)
    node_seconds: float = 0.0
    window: float = 0.0
    baseline_nodes: int = 0
    launches: int = 0
    removals: int = 0
    workers_added: int = 0
    workers_removed: int = 0
    lost: int = 0
    recomputed: int = 0
    restarted: int = 0  # executions begun again after an interruption (an evicted busy worker)
    rerun_by: dict[str, int] = field(default_factory=dict)  # executions run again, by cause (rerun_causes)
    drains: int = 0  # part-used nodes cluster-autoscaler (the provisioner) drained, evicting their workers
    drained_busy: int = 0  # busy workers the preload drained to free their node (its "draining" events)
    narrow_node_seconds: float = 0.0  # over the narrower phases alone (from each burst's last task on)
    steps: list[tuple[float, int]] = field(default_factory=list)  # (s since first submit, billed nodes)
    submits: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    replicas: list[tuple[float, int]] = field(default_factory=list)  # (s since first submit, spec.replicas)
    driver_errors: int = 0  # looks of an outside baseline's driver that failed (node_cost_baselines.py)

    def summary(self) -> str:
        """The run's line in the log."""
        return (
            f"  {self.scenario:5} {self.contender:8} #{self.repeat + 1}: node-s {self.node_seconds:6.1f}"
            f" over {self.window:5.1f} s; makespans "
            + " ".join(f"{b.makespan:.1f}" if b.makespan else "-" for b in self.bursts)
            + "; first worker "
            + " ".join(f"{b.first_worker:.1f}" if b.first_worker is not None else "-" for b in self.bursts)
            + f"; nodes +{self.launches}/-{self.removals}, drained {self.drains}"
            + f"; busy workers drained {self.drained_busy}"
            + f"; lost {self.lost}, recomputed {self.recomputed}"
            + f", restarted {self.restarted}"
            + (f" (ran again after {describe_causes(self.rerun_by)})" if self.rerun_by else "")
            + (f"; FAILED: {self.failures}" if self.failures else "")
        )


def rerun_causes(
    starts: list[tuple[int, str, float]], evicted: set[str], retired: set[str]
) -> dict[str, int]:
    """Every execution of a task but its last (by start time), by what removed the worker it ran on: a
    cluster-autoscaler drain (`evicted` pods), the preload's retirement (`retired`: its "retired"
    events) or something else; pure. An execution cut off and one whose result was lost with its
    worker both count: either way the task ran again. `starts`: (task, worker, start time) per start."""
    by_task: dict[int, list[tuple[float, str]]] = {}
    for task, worker, began in starts:
        by_task.setdefault(task, []).append((began, worker))
    causes: Counter[str] = Counter()
    for runs in by_task.values():
        for _, worker in sorted(runs)[:-1]:
            causes["CA eviction" if worker in evicted else "preload" if worker in retired else "other"] += 1
    return dict(causes)


def describe_causes(causes: dict[str, int]) -> str:
    return ", ".join(f"{cause} {n}" for cause, n in sorted(causes.items()))


def task_starts(folder: Path) -> list[tuple[int, str, float]]:
    """(task, worker, start time) of each start file `timed_task` left in `folder`."""
    return [
        (int(i), worker, f.stat().st_mtime)
        for f in folder.iterdir()
        for i, worker, _ in [f.name.split(".", 2)]
    ]


def durations(n: int, lo: float, hi: float) -> list[float]:
    """Evenly spread, longest first (submitted first, so the tail is the short ones' absence)."""
    if n == 1:
        return [hi]
    return [hi - (hi - lo) * i / (n - 1) for i in range(n)]


def has_dask_key(key: str) -> bool:
    return key in DASK_DEFAULTS


def record(ns: str, scenario: Scenario, timing: Timing, contender: str) -> DaskLayer:
    """The dev stack's Dask layer with stack config overrides only (the program builds every object)."""
    dask: dict[str, Any] = {
        "namespace": ns,
        "minWorkers": scenario.min_workers,
        "maxWorkers": scenario.max_workers,
        "interval": timing.interval,
        "targetDuration": timing.target_duration,
        "scaleDownDelay": timing.scale_down_delay,
        "workersPerNode": scenario.workers_per_node,
    }
    if scenario.worker_threads is not None:
        dask["workerThreads"] = scenario.worker_threads
    if contender == "headroom":
        dask["headroomWorkers"] = scenario.workers_per_node  # one node's worth
    group = {"name": "workers", "instanceTypes": [scenario.instance_type], "minSize": 0}
    overrides = {
        "adaptive-dask:dask": json.dumps(dask),
        "adaptive-dask:workerGroups": json.dumps([{**group, "maxSize": scenario.node_max}]),
    }
    layer = DaskLayer(record_stack(STACK, overrides))
    assert layer.namespace == ns, (layer.namespace, ns)
    return layer


def record_grace(layer: DaskLayer) -> int:
    """The worker pods' terminationGracePeriodSeconds as the program built it."""
    dep = layer.stack.find("Deployment", WORKERS)
    return int(dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])


def placeholder_objects(layer: DaskLayer) -> list[tuple[str, dict[str, Any]]]:
    """Whatever Deployments the program registers besides the scheduler and the workers (the headroom's
    placeholders), as built."""
    out = []
    for o in layer.stack.objects:
        if o["kind"] == "Deployment" and o["metadata"]["name"] not in (WORKERS, SCHEDULER):
            dep = copy.deepcopy(o)
            for c in dep["spec"]["template"]["spec"]["containers"]:
                c.setdefault("command", ["sleep", "infinity"])  # the harness runs commands, not images
            out.append((object_path(dep), dep))
    return out


class Watch:
    """Background look at the worker Deployment's replicas (what the preload asks for), 10 times a second."""

    def __init__(self, kube: ControlPlane, ns: str) -> None:
        self.rest, self.ns = kube.rest(), ns
        self.replicas: list[tuple[float, int]] = []  # (monotonic, spec.replicas)

    def poll(self) -> None:
        scale = self.rest.get(f"/apis/apps/v1/namespaces/{self.ns}/deployments/{WORKERS}/scale")
        self.replicas.append((time.monotonic(), scale["spec"].get("replicas", 0)))

    def peak(self, start: float, end: float) -> int:
        return max((r for t, r in self.replicas if start <= t <= end), default=0)


def placeholders_ready(kube: ControlPlane, ns: str, headroom: list[tuple[str, dict[str, Any]]]) -> bool:
    want = sum(d["spec"]["replicas"] for _, d in headroom)
    pods = kube.rest().items(f"/api/v1/namespaces/{ns}/pods")
    names = {d["metadata"]["name"] for _, d in headroom}
    ours = [p for p in pods if any(p["metadata"]["name"].startswith(f"{n}-") for n in names)]
    return sum(1 for p in ours if pod_ready(p) or p["status"].get("phase") == "Running") >= want


# ------------------------------------------------------------------------------------------------ main


def load_runs(path: Path) -> list[Run]:
    """Runs saved by --json, as Run objects again."""
    runs = []
    for d in json.loads(path.read_text()):
        d["bursts"] = [
            Burst(**{**b, "narrow": tuple(b["narrow"]) if b["narrow"] else None}) for b in d["bursts"]
        ]
        d["steps"] = [tuple(x) for x in d["steps"]]
        d["replicas"] = [tuple(x) for x in d.get("replicas", [])]
        runs.append(Run(**d))
    return runs


def result_retired(client: Any, wall0: float) -> set[str]:
    """Workers the preload retired since wall0 (its "retired" events)."""
    return {
        str(w)
        for t, m in client.get_events("adaptive")
        if t >= wall0 and m.get("action") == "retired"
        for w in m["workers"]
    }


def collect(
    result: Run, prov: Any, client: Any, clock: tuple[float, float, float], runs: Path, submitted: int
) -> None:
    """The run's bill and counts once its window (t0 .. end, monotonic; wall0 = t0 on the wall clock)
    is over: node-seconds from the provisioner's launches, nodes and workers added and removed, CA's
    drains, the preload's busy drains, executions (a task run twice) and tasks that never ran."""
    t0, wall0, end = clock
    result.window = end - t0
    result.node_seconds = node_seconds(prov.launches, t0, end)
    phases = [b.narrow for b in result.bursts if b.narrow]
    result.narrow_node_seconds = sum(node_seconds(prov.launches, a, z) for a, z in phases)
    result.steps = [(t - t0, c) for t, c in node_count_steps(prov.launches, t0, end)]
    result.steps.append((end - t0, prov.billed()))
    result.launches = sum(1 for n in prov.launches if t0 <= n.launched <= end)
    result.drains = sum(1 for t, what, _ in prov.events if what == "drain" and t >= t0)
    result.removals = sum(1 for n in prov.launches if n.removed is not None and n.removed >= t0)
    events = [m for t, m in client.get_events("all") if t >= wall0]
    result.workers_added = sum(1 for m in events if m.get("action") == "add-worker")
    result.workers_removed = sum(1 for m in events if m.get("action") == "remove-worker")
    result.drained_busy = sum(
        len(m["workers"])
        for t, m in client.get_events("adaptive")
        if t >= wall0 and m.get("action") == "draining"
    )
    ran = e2e.executions(runs)
    result.recomputed = sum(c - 1 for c in ran.values())
    result.lost += submitted - len(ran)  # never ran at all


def measure(
    args: argparse.Namespace, timing: Timing, bursts: tuple[int, ...], scenarios: list[Scenario],
    measured: list[Scenario], contenders: list[str], seed: int, skipped: str, out: Tee,
    run_one: Callable[..., Run],
) -> list[Run]:  # fmt: skip
    """Every run on one real control plane: per repeat, the contenders in a seeded shuffled order."""
    # a burst (boot, pod starts of up to ~15 s on this loaded machine, the longest task), then a gap longer
    # than the scale-down window plus the unneeded time, so every contender can reach its baseline
    main_s = measured[0]
    burst = (
        timing.boot
        + POD_START_ALLOWANCE_S * (2 if max(s.node_max for s in scenarios) > 3 else 1)
        + timing.task_range[1]
        + main_s.stream_length()
    )
    period = args.period or (burst + timing.scale_down_delay + timing.unneeded + args.margin)
    bin_dir, why = find_binaries()
    if bin_dir is None:
        print(f"node_cost: no Kubernetes binaries: {why}", file=sys.stderr)
        raise SystemExit(2)
    rng = random.Random(seed)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-nodecost-") as tmp:
        out(f"load average at start: {load()}")
        kube = ControlPlane(bin_dir=bin_dir, workdir=Path(tmp, "kube"))
        kube.start()
        try:
            out(f"node_cost: Kubernetes 1.20.2 control plane started in {kube.started_in:.1f} s")
            out(timing.describe())
            out(
                f"bursts every {period:.0f} s; {args.repeats} repeat(s); contender order shuffled per "
                f"repeat with seed {seed} (--seed {seed} repeats it)"
            )
            if skipped:
                out(skipped)
            for s in scenarios:
                names = (
                    contenders if s in measured else [c for c in contenders if c in ("operator", "packed")]
                )
                for rep in range(args.repeats if s in measured else 1):
                    order = list(names)
                    rng.shuffle(order)
                    out(f"  {s.name} repeat {rep + 1}: order {', '.join(order)}; load {load()}")
                    for c in order:
                        runs.append(run_one(kube, s, c, rep, timing, period, Path(tmp), out))
        finally:
            kube.stop()
    return runs


def step_scenarios(args: argparse.Namespace, timing: Timing) -> list[Scenario]:
    """--step: per NODESxLANES shape, a burst that fills the node group, then a narrower phase that lasts
    longer than the scale-down window plus the unneeded time: where the nodes a scale-down leaves
    part-used bill. 6x12 leaves 2 of 4 workers on a node: utilization 0.5189 with the DaemonSets counted
    (kept, as by CA)."""
    steps = []
    for shape in ("2x2",) if args.tiny else args.shapes.split(","):
        nodes, lanes = (int(x) for x in shape.split("x"))
        steps.append(
            Scenario(
                f"step{nodes}x{lanes}", 4, "m6i.xlarge", max_workers=4 * nodes, node_max=nodes,
                bursts=(6,) if args.tiny else tuple(int(x) for x in args.bursts.split(","))
                if args.bursts else (4 * nodes,),
                min_workers=args.min_workers, lanes=lanes,
                stream_tasks=2 if args.tiny else args.stream_tasks,
                stream_task=STREAM_TASK_S / timing.compression, result_kib=STEP_RESULT_KIB,
            )
        )  # fmt: skip
    return steps
