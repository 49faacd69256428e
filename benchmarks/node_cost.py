"""Node cost of a bursty workload on a real Kubernetes 1.20.2 control plane: what the bill counts (issue 13).

On EKS the bill is EC2 node-seconds, not worker-seconds. This runs Dask -> pods -> nodes together: the real
apiserver, ReplicaSet controller and kube-scheduler (with its preemption), the dev stack's own objects
(recorded from the Pulumi program under mocks: testbed/dask/kube_fixtures.py), the real scheduler
preload with its kubernetes backend, real `dask worker` processes as pods (testbed/kube kubelet harness), and
the node provisioner playing cluster-autoscaler + the Auto Scaling Group (testbed/kube/provisioner.py):
it asks for a node when worker pods stay Unschedulable, the node joins after a boot delay (billed from the
ask), and an empty node goes after the unneeded time. Node-seconds = the provisioner's bill.

Contenders, in one run, interleaved per repeat (same workload, same stack config):
- `today`: the behaviour before issue 13 - the program's worker Deployment with its packing pod affinity
  stripped (`affinity.podAffinity` deleted), the preload's node-aware victims off
  (`DASK_ADAPTIVE__NODE_PACKING=False` in the scheduler pod's env) and cluster-autoscaler's unneeded time
  at the program's value before (5m): kube-scheduler spreads, the scheduler's `workers_to_close` order
  alone picks victims;
- `unpacked`: `today` with the shipped cluster-autoscaler settings (1m) - what the CA setting alone does,
  and what it costs without packing (busy workers evicted from the under-used nodes CA drains sooner);
- `packed`: the program's objects and CA settings as shipped (pod affinity + node-aware victims + 1m);
- `headroom`: as shipped, plus warm headroom of one node (`dask.headroomWorkers` = workersPerNode:
  placeholder pods at a negative PriorityClass, built by infra/k8s/headroom.py) - only when the program
  has that key.
Documented overrides of the shipped objects, all of them: the harness's (kube_fixtures.py: bare scheduler
Pod, repository on PYTHONPATH, `--no-nanny`), the `today` strip/env above, the placeholders' pause
container runs `sleep infinity` (the harness runs commands, not images; /pause only sleeps), and the
workers' grace period and SIGTERM deadline compressed like the durations below. Mutual TLS
as shipped: the client reads the stack's client Secret (kube_driver.client_security).

Time is compressed by `--compression` (default 20): the EKS durations below are divided by it.
  node boot + join            90 s (EKS: ~60-120 s)          -> boot_delay
  cluster-autoscaler reaction 10 s (its scan interval)        -> scale_up_delay
  scale-down-unneeded-time    the program's CA setting (1m; `today`: 5m, its value before) -> scale_down_delay
  scale-down-delay-after-add  the program's CA setting (5m)  -> scale_down_delay_after_add
  (not time: scale-down-utilization-threshold, the program's 0.5: an under-used node whose pods fit
  elsewhere is drained - its pods evicted, a worker retiring gracefully on SIGTERM - as CA does)
  preload scaleDownDelay      the program's default (60 s)   -> --scale-down-delay
  preload targetDuration      the program's default (5 s)    -> --target-duration
  worker grace period         the program's (120 s; SIGTERM deadline 15 s inside it) -> the pod's, env
  tasks                       30 s .. 3 min                  -> 1.5 .. 9 s
Not compressed: the preload interval (0.25 s; default 1 s) and pod start (a `dask worker` process on this
shared 2-core machine: 2-5 s, i.e. 40-100 s at 20x - slower than a pulled image on EKS).

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

Usage: .venv/bin/python benchmarks/node_cost.py [--repeats 3] [--contenders today,packed,headroom]
         [--step] [--sanity] [--write-results] [--png benchmarks/node_cost.png] [--tiny]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH, Tee, load, table, write_section

from infra.config.autoscaler import AUTOSCALER_DEFAULTS
from infra.config.kubernetes import DASK_DEFAULTS
from infra.facts.instance_types import pod_capacity
from infra.k8s.dask_objects import SIGTERM_MARGIN_SECONDS
from testbed.dask import kube_driver as e2e
from testbed.dask.kube_fixtures import SCHEDULER, STACK, WORKERS, DaskLayer
from testbed.kube.control_plane import ControlPlane, find_binaries, wait_for
from testbed.kube.kubelet import Kubelet, pod_ready
from testbed.kube.nodes import NodeGroup, NodeSpec
from testbed.kube.provisioner import node_count_steps, node_seconds
from testbed.kube.stack_apply import object_path, record_stack

CONTENDERS = ("today", "unpacked", "packed", "headroom")
SPREAD = ("today", "unpacked")  # kube-scheduler's spreading and the scheduler's victims: no packing
# cluster-autoscaler's scale-down-unneeded-time before issue 13 (`today`); the others run the shipped one
UNNEEDED_BEFORE = "5m"
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
    unneeded: float  # as shipped
    unneeded_before: float  # `today`'s
    after_add: float
    scale_down_delay: float
    target_duration: float
    interval: float
    task_range: tuple[float, float]

    @classmethod
    def compressed(cls, factor: float, interval: float = 0.25) -> Timing:
        return cls(
            compression=factor,
            boot=EKS_BOOT_S / factor,
            reaction=EKS_CA_SCAN_S / factor,
            unneeded=_seconds(AUTOSCALER_DEFAULTS["scaleDownUnneededTime"]) / factor,
            unneeded_before=_seconds(UNNEEDED_BEFORE) / factor,
            after_add=_seconds(AUTOSCALER_DEFAULTS["scaleDownDelayAfterAdd"]) / factor,
            scale_down_delay=round(_seconds(DASK_DEFAULTS["scaleDownDelay"]) / factor, 3),
            # the config's own lower bound is 0.1 s
            target_duration=max(0.1, round(_seconds(DASK_DEFAULTS["targetDuration"]) / factor, 3)),
            interval=interval,
            task_range=(EKS_TASK_RANGE_S[0] / factor, EKS_TASK_RANGE_S[1] / factor),
        )

    def unneeded_for(self, contender: str) -> float:
        return self.unneeded_before if contender == "today" else self.unneeded

    def describe(self) -> str:
        f = self.compression
        return (
            f"time compressed {f:g}x: node boot {self.boot:g} s (EKS {self.boot * f:g} s), CA reaction "
            f"{self.reaction:g} s ({self.reaction * f:g} s), scale-down-unneeded-time {self.unneeded:g} s "
            f"({self.unneeded * f:g} s, the program's CA setting; today {self.unneeded_before:g} s = "
            f"{self.unneeded_before * f:g} s), scale-down-delay-after-add {self.after_add:g} s "
            f"({self.after_add * f:g} s), preload scaleDownDelay "
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


def timed_task(i: int, seconds: float, folder: str, kib: tuple[int, int] = (0, 0)) -> tuple[int, bytes]:
    """Sleeps like an I/O-bound task and leaves one file per execution (a recomputation would show),
    and one per start in `folder`-starts (an interrupted execution begun again would show), each named
    `<i>.<worker>.<uuid>` (the worker is its pod: why a task ran again can be told, see rerun_causes).
    Returns i*i with a payload of between kib[0] and kib[1] KiB (by i), as a real task's output: the
    scheduler ranks idle workers by the data they hold, so with sizes that differ its order is in play."""
    import time
    import uuid
    from pathlib import Path

    from distributed import get_worker

    worker = get_worker().name
    (Path(f"{folder}-starts") / f"{i}.{worker}.{uuid.uuid4().hex}").touch()
    time.sleep(seconds)
    (Path(folder) / f"{i}.{worker}.{uuid.uuid4().hex}").touch()
    lo, hi = kib
    return i * i, bytes(1024 * (lo + (i * 7919) % (hi - lo + 1)))


def stream(client: Any, scenario: Scenario, first_id: int, folder: str) -> list[Any]:
    """The narrower phase: `lanes` tasks in flight, each lane submitting its next task once its last one
    is done (as a client loop or a streaming job does); the futures of tasks first_id, first_id+1, ...
    in that order, all done."""
    from distributed import as_completed

    lane_of: dict[Any, int] = {}
    left = [scenario.stream_tasks] * scenario.lanes
    submitted: list[Any] = []

    def submit(lane: int) -> Any:
        left[lane] -= 1
        i = first_id + len(submitted)
        f = client.submit(
            timed_task, i, scenario.stream_task, folder=folder, kib=scenario.result_kib, pure=False
        )
        lane_of[f] = lane
        submitted.append(f)
        return f

    flow = as_completed([submit(lane) for lane in range(scenario.lanes) if left[lane]])
    for f in flow:
        if left[lane_of[f]]:
            flow.add(submit(lane_of[f]))
    return submitted


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


def raw_target(dask_scheduler: Any, target_duration: float) -> tuple[int, int, int]:
    """distributed's own answer, the workers it had and the tasks it saw waiting (runs in the scheduler)."""
    ready = len(dask_scheduler.queued) + len(dask_scheduler.unrunnable)
    return dask_scheduler.adaptive_target(target_duration), len(dask_scheduler.workers), ready


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


def run_one(
    kube: ControlPlane,
    scenario: Scenario,
    contender: str,
    repeat: int,
    timing: Timing,
    period: float,
    workdir: Path,
    out: Tee,
) -> Run:
    from distributed import Client

    result = Run(scenario.name, contender, repeat)
    runs = workdir / f"runs-{scenario.name}-{contender}-{repeat}-{uuid.uuid4().hex[:4]}"
    runs.mkdir()
    Path(f"{runs}-starts").mkdir()
    with kube.namespace(f"cost-{contender}") as ns:
        layer = record(ns, scenario, timing, contender)
        grace = record_grace(layer)
        # the program's grace period and the worker's SIGTERM deadline inside it, compressed like every
        # other duration: an evicted busy worker gets the share of its task time it would get on EKS
        sigterm = (grace - SIGTERM_MARGIN_SECONDS) / timing.compression
        path, workers = layer.worker_deployment(
            nanny=False, env={"DASK_ADAPTIVE__WORKER__SIGTERM_TIMEOUT": f"{sigterm:g}s"}
        )
        pod_spec = workers["spec"]["template"]["spec"]
        pod_spec["terminationGracePeriodSeconds"] = max(1, math.ceil(grace / timing.compression))
        pool = pod_spec["nodeSelector"]["adaptive-dask/pool"]
        if contender in SPREAD:
            pod_spec["affinity"].pop("podAffinity")
            if not pod_spec["affinity"]:
                del pod_spec["affinity"]
        env = {"DASK_ADAPTIVE__NODE_PACKING": "False"} if contender in SPREAD else None
        (container,) = pod_spec["containers"]
        cmd = container["command"]
        result.threads = int(cmd[cmd.index("--nthreads") + 1])
        cap = pod_capacity(scenario.instance_type)  # what a node leaves for our pods (EKS AMI + DaemonSets)
        group = NodeGroup(
            pool,
            worker=True,
            cpu=f"{cap.cpu_millicores}m",
            memory=f"{cap.memory_mib}Mi",
            max_size=scenario.node_max,
            scale_up_delay=timing.reaction,
            scale_down_delay=timing.unneeded_for(contender),
            scale_down_delay_after_add=timing.after_add,
            boot_delay=timing.boot,
            scale_down_utilization=float(AUTOSCALER_DEFAULTS["scaleDownUtilizationThreshold"]),
        )
        system = NodeSpec.pool(f"system-{uuid.uuid4().hex[:5]}", "system", cpu="4", memory="16Gi")
        kubelet = Kubelet(
            kube, [system], namespaces=[ns], probe_period_scale=0.5, node_groups=[group]
        ).start()
        prov = kubelet.provisioner
        assert prov is not None
        try:
            headroom = placeholder_objects(layer)
            if contender == "headroom" and not headroom:
                raise RuntimeError("headroomWorkers set but the program registered no placeholder Deployment")
            e2e.apply(kube, layer.rbac())
            e2e.apply(kube, [*layer.supporting(), (path, workers), *headroom])
            kube.wait_service_account(ns, SCHEDULER)
            e2e.apply(kube, [layer.scheduler_pod(env=env)])
            address = e2e.scheduler_address(kube, kubelet, ns)
            # what stays up between bursts: the placeholders' and the minimum workers' nodes
            held = sum(d["spec"]["replicas"] for _, d in headroom) + scenario.min_workers
            result.baseline_nodes = math.ceil(held / scenario.workers_per_node)
            if result.baseline_nodes:
                wait_for(
                    lambda: prov.billed() == result.baseline_nodes and placeholders_ready(kube, ns, headroom),
                    120,
                    message=f"the baseline: {result.baseline_nodes} node(s) up, placeholders Running",
                )
            watch = Watch(kube, ns)
            security = e2e.client_security(kube, ns)
            with (
                Client(address, security=security, timeout="30s") as client,
                e2e.polling(watch.poll, name="replicas"),
            ):
                submitted = 0
                t0 = time.monotonic()
                wall0 = time.time()
                offset = 0
                lo, hi = timing.task_range
                for b, n in enumerate(scenario.bursts):
                    burst = Burst(n)
                    result.bursts.append(burst)
                    delay = t0 + b * period - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    submit, submit_wall = time.monotonic(), time.time()
                    result.submits.append(submit - t0)
                    ids = list(range(offset, offset + n))
                    offset += n
                    # one message: the scheduler sees the whole burst at once, as with a graph
                    batch = client.map(
                        timed_task,
                        ids,
                        durations(n, lo, hi),
                        folder=str(runs),
                        kib=scenario.result_kib,
                        pure=False,
                    )
                    submitted += n
                    with contextlib.suppress(AssertionError):
                        burst.raw_target, burst.workers_at_submit = wait_for(
                            lambda n=n: queued_target(client, timing.target_duration, n),
                            5,
                            0.05,
                            message="tasks queued at the scheduler",
                        )
                    try:
                        if scenario.lanes:  # starts with the burst and outlasts it: 12 -> lanes, a step
                            narrow = stream(client, scenario, offset, str(runs))
                            # the narrower phase alone: from the burst's last task's end (its file) on
                            last = max(
                                f.stat().st_mtime for f in runs.iterdir() if int(f.name.split(".")[0]) in ids
                            )
                            burst.narrow = (t0 + (last - wall0), time.monotonic())
                            narrow_ids = list(range(offset, offset + len(narrow)))
                            offset += len(narrow)
                            submitted += len(narrow)
                            batch, ids = batch + narrow, ids + narrow_ids
                            del narrow  # `batch` holds them now; released with it below
                        wait_for(
                            lambda batch=batch: all(f.done() for f in batch),
                            max(120.0, period * 3),
                            0.1,
                            message=f"burst {b}: {n} tasks done",
                        )
                        burst.makespan = time.monotonic() - submit
                    except AssertionError as exc:
                        result.failures.append(str(exc).splitlines()[0])
                        break
                    joins = [
                        t
                        for t, msg in client.get_events("all")
                        if msg.get("action") == "add-worker" and t >= submit_wall
                    ]
                    if joins:
                        burst.first_worker = min(joins) - submit_wall
                        first_mono = submit + burst.first_worker
                        burst.requested = watch.peak(submit, first_mono)
                    burst.nodes_launched = sum(
                        1 for n_ in prov.launches if submit <= n_.launched <= submit + burst.makespan
                    )
                    # Read the results back, then let them go (as `compute()` does): with nothing held,
                    # the idle gap can go down to the minimum - the last worker is never retired while
                    # it holds results that have nowhere else to go.
                    values = client.gather(batch, errors="skip")
                    result.lost += sum(1 for f in batch if f.status != "finished")
                    result.lost += sum(1 for v, i in zip(values, ids, strict=False) if v[0] != i * i)
                    del batch
                horizon = t0 + len(scenario.bursts) * period
                with contextlib.suppress(AssertionError):
                    wait_for(lambda: time.monotonic() >= horizon, period * 2, 0.5, message="the horizon")
                try:
                    wait_for(
                        lambda: prov.billed() == result.baseline_nodes,
                        max(60.0, 4 * timing.unneeded_before),
                        0.2,
                        message=f"back at {result.baseline_nodes} node(s)",
                    )
                except AssertionError as exc:
                    result.failures.append(str(exc).splitlines()[0])
                end = max(horizon, time.monotonic())
                result.window = end - t0
                result.node_seconds = node_seconds(prov.launches, t0, end)
                phases = [b_.narrow for b_ in result.bursts if b_.narrow]
                result.narrow_node_seconds = sum(node_seconds(prov.launches, a, z) for a, z in phases)
                result.steps = [(t - t0, c) for t, c in node_count_steps(prov.launches, t0, end)]
                result.steps.append((end - t0, prov.billed()))
                result.launches = sum(1 for n_ in prov.launches if t0 <= n_.launched <= end)
                result.drains = sum(1 for t, what, _ in prov.events if what == "drain" and t >= t0)
                result.removals = sum(
                    1 for n_ in prov.launches if n_.removed is not None and n_.removed >= t0
                )
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
                retired = {
                    str(w)
                    for t, m in client.get_events("adaptive")
                    if t >= wall0 and m.get("action") == "retired"
                    for w in m["workers"]
                }
                result.rerun_by = rerun_causes(
                    task_starts(Path(f"{runs}-starts")), {pod for _, _, pod in prov.evicted}, retired
                )
                result.restarted = sum(result.rerun_by.values())  # every start of a task but its last
                result.lost += submitted - len(ran)  # never ran at all
        finally:
            kubelet.stop()
    out(
        f"  {scenario.name:5} {contender:8} #{repeat + 1}: node-s {result.node_seconds:6.1f} over "
        f"{result.window:5.1f} s; makespans "
        + " ".join(f"{b.makespan:.1f}" if b.makespan else "-" for b in result.bursts)
        + "; first worker "
        + " ".join(f"{b.first_worker:.1f}" if b.first_worker is not None else "-" for b in result.bursts)
        + f"; nodes +{result.launches}/-{result.removals}, drained {result.drains}"
        + f"; busy workers drained {result.drained_busy}"
        + f"; lost {result.lost}, recomputed {result.recomputed}"
        + f", restarted {result.restarted}"
        + (f" (ran again after {describe_causes(result.rerun_by)})" if result.rerun_by else "")
        + (f"; FAILED: {result.failures}" if result.failures else "")
    )
    return result


def queued_target(client: Any, target_duration: float, n: int) -> tuple[int, int] | None:
    """distributed's raw target once all `n` tasks of the burst wait at the scheduler (from zero workers;
    with workers some may already run: then at once)."""
    target, workers, ready = client.run_on_scheduler(raw_target, target_duration=target_duration)
    return (target, workers) if workers or ready >= n else None


def placeholders_ready(kube: ControlPlane, ns: str, headroom: list[tuple[str, dict[str, Any]]]) -> bool:
    want = sum(d["spec"]["replicas"] for _, d in headroom)
    pods = kube.rest().items(f"/api/v1/namespaces/{ns}/pods")
    names = {d["metadata"]["name"] for _, d in headroom}
    ours = [p for p in pods if any(p["metadata"]["name"].startswith(f"{n}-") for n in names)]
    return sum(1 for p in ours if pod_ready(p) or p["status"].get("phase") == "Running") >= want


# ---------------------------------------------------------------------------------------------- report


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def report(runs: list[Run], scenario: Scenario, out: Tee) -> dict[str, float]:
    """The table for one scenario; returns the median node-seconds ratio per contender (vs today)."""
    names = [c for c in CONTENDERS if any(r.contender == c and r.scenario == scenario.name for r in runs)]
    by = {c: [r for r in runs if r.contender == c and r.scenario == scenario.name] for c in names}
    base = {r.repeat: r for r in by.get("today", [])}
    rows, ratios = [], {}
    for c in names:
        rs = by[c]
        ns_ratio = node_seconds_ratios(runs, scenario, c, "today")
        span_ratio = []
        for r in rs:
            b = base.get(r.repeat)
            if b and all(x.makespan for x in r.bursts + b.bursts) and len(r.bursts) == len(b.bursts):
                span_ratio.append(sum(x.makespan for x in r.bursts) / sum(x.makespan for x in b.bursts))  # type: ignore[misc]
        ratios[c] = med(ns_ratio) or 0.0
        narrow_ratio = [
            r.narrow_node_seconds / base[r.repeat].narrow_node_seconds
            for r in rs
            if r.repeat in base and base[r.repeat].narrow_node_seconds
        ]
        per_burst = [
            med([r.bursts[i].makespan for r in rs if len(r.bursts) > i and r.bursts[i].makespan])
            for i in range(len(scenario.bursts))
        ]
        first = [
            med(
                [
                    r.bursts[i].first_worker
                    for r in rs
                    if len(r.bursts) > i and r.bursts[i].first_worker is not None
                ]
            )
            for i in range(len(scenario.bursts))
        ]
        rows.append(
            [
                c,
                len(rs),
                " / ".join(f"{r.node_seconds:.0f}" for r in rs),
                fmt(med(ns_ratio), ".2f")
                + (f" ({min(ns_ratio):.2f}-{max(ns_ratio):.2f})" if ns_ratio else ""),
                fmt(med(span_ratio), ".2f")
                + (f" ({min(span_ratio):.2f}-{max(span_ratio):.2f})" if span_ratio else ""),
                " / ".join(fmt(x) for x in per_burst),
                " / ".join(fmt(x) for x in first),
                f"+{sum(r.launches for r in rs)}/-{sum(r.removals for r in rs)}",
                sum(r.drains for r in rs),
                sum(r.drained_busy for r in rs),
                f"+{sum(r.workers_added for r in rs)}/-{sum(r.workers_removed for r in rs)}",
                sum(r.lost for r in rs),
                sum(r.recomputed for r in rs),
                sum(r.restarted for r in rs),
                sum(len(r.failures) for r in rs),
            ]
            + (
                [
                    fmt(med(narrow_ratio), ".2f")
                    + (f" ({min(narrow_ratio):.2f}-{max(narrow_ratio):.2f})" if narrow_ratio else "")
                ]
                if scenario.lanes
                else []
            )
        )
    threads = by[names[0]][0].threads if names else "?"
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
        + "\n"
    )
    out(
        table(
            [
                "contender",
                "runs",
                "node-s per run",
                "node-s / today",
                "makespan / today",
                "makespan per burst s",
                "first new worker s",
                "node launches/removals",
                "nodes drained by CA",
                "busy workers drained",
                "workers added/removed",
                "lost",
                "recomputed",
                "restarted",
                "failed",
                *(["narrower phase node-s / today"] if scenario.lanes else []),
            ],
            rows,
        )
    )
    out("(ratios: median over repeats, each run against `today` of the same repeat; range in brackets)")
    return ratios


def node_seconds_ratios(runs: list[Run], scenario: Scenario, contender: str, against: str) -> list[float]:
    """`contender`'s node-seconds over `against`'s, per repeat of `scenario` that ran both (e.g. packed
    against unpacked: packing alone, both under the shipped cluster-autoscaler settings)."""
    runs = [r for r in runs if r.scenario == scenario.name]
    base = {r.repeat: r.node_seconds for r in runs if r.contender == against}
    return [r.node_seconds / base[r.repeat] for r in runs if r.contender == contender and r.repeat in base]


def report_cold(runs: list[Run], scenarios: list[Scenario], out: Tee) -> None:
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


def plot(runs: list[Run], scenarios: list[Scenario], png: Path) -> None:
    """Billed worker nodes over time per contender, repeat 1, one panel per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(scenarios), 1, figsize=(10, 4 * len(scenarios)), squeeze=False)
    colours = {"today": "tab:red", "unpacked": "tab:orange", "packed": "tab:blue", "headroom": "tab:green"}
    for ax, scenario in zip(axes[:, 0], scenarios, strict=True):
        for c in CONTENDERS:
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


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--compression", type=float, default=20.0, help="EKS time / benchmark time [20]")
    ap.add_argument("--bursts", default=None, help="tasks per burst [8,6,8; with --step one of 4 x nodes]")
    ap.add_argument(
        "--step",
        action="store_true",
        help="with each burst a narrower phase: lanes of 1 min tasks for 20 min (EKS time), see --shapes",
    )
    ap.add_argument(
        "--shapes",
        default="3x4,6x12",
        help="with --step, one scenario each: NODESxLANES, a burst of 4 x NODES tasks, LANES in flight "
        "[3x4,6x12]",
    )
    ap.add_argument("--period", type=float, default=None, help="seconds between submits [derived]")
    ap.add_argument("--min-workers", type=int, default=0)
    ap.add_argument(
        "--sanity", action="store_true", help="also workersPerNode 1 (4 threads), today vs packed"
    )
    ap.add_argument("--tiny", action="store_true", help="smoke size: one burst of 3 tasks, 60x, 1 repeat")
    ap.add_argument("--png", type=Path, default=None, help="[benchmarks/node_cost.png, node_cost_step.png]")
    ap.add_argument("--write-results", action="store_true", help="replace this section of RESULTS.md")
    args = ap.parse_args(argv)
    timing = Timing.compressed(args.compression)
    bursts = tuple(int(x) for x in (args.bursts or "8,6,8").split(","))
    section = "node_cost_step" if args.step else "node_cost"
    args.png = args.png or BENCH / f"{section}.png"
    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    if args.tiny:  # the smoke run of the suite: one small burst, seconds instead of minutes
        timing = Timing.compressed(60.0)
        bursts, args.repeats, args.sanity, args.period = (3,), 1, False, args.period or 1.0
    unknown = set(contenders) - set(CONTENDERS)
    if unknown:
        ap.error(f"unknown contenders {sorted(unknown)}")
    skipped = ""
    if "headroom" in contenders and not has_dask_key("headroomWorkers"):
        contenders.remove("headroom")
        skipped = "headroom: skipped - the program has no dask.headroomWorkers key (infra/k8s/headroom.py)"
    main_s = Scenario(
        "wpn4", 4, "m6i.xlarge", max_workers=8, node_max=3, bursts=bursts, min_workers=args.min_workers
    )
    steps: list[Scenario] = []
    if args.step:
        # A burst that fills the node group, then a narrower phase that lasts longer than the scale-down
        # window plus the unneeded time: where the nodes a scale-down leaves half-used bill. One scenario
        # per NODESxLANES: e.g. 3x4, a third of the workers (cluster-autoscaler's 0.5 threshold drains most
        # of what scattered victims leave, by evicting workers) and 6x12, half (a node left with 2 of 4
        # is not below the threshold: it stays).
        for shape in ("2x2",) if args.tiny else args.shapes.split(","):
            nodes, lanes = (int(x) for x in shape.split("x"))
            steps.append(
                Scenario(
                    f"step{nodes}x{lanes}",
                    4,
                    "m6i.xlarge",
                    max_workers=4 * nodes,
                    node_max=nodes,
                    bursts=(6,)
                    if args.tiny
                    else tuple(int(x) for x in args.bursts.split(","))
                    if args.bursts
                    else (4 * nodes,),
                    min_workers=args.min_workers,
                    lanes=lanes,
                    stream_tasks=2 if args.tiny else STREAM_TASKS,
                    stream_task=STREAM_TASK_S / timing.compression,
                    result_kib=STEP_RESULT_KIB,
                )
            )
        main_s = steps[0]
    scenarios = steps or [main_s]
    if args.sanity:
        # The aws default shape: one worker per node with the node's cores as threads; same capacity.
        scenarios.append(
            Scenario(
                "wpn1",
                1,
                "m6i.xlarge",
                max_workers=4,
                node_max=4,
                bursts=bursts,
                min_workers=args.min_workers,
            )
        )
    # a burst (boot, pod starts of up to ~15 s on this loaded machine, the longest task), then a gap longer
    # than the scale-down window plus the unneeded time, so every contender can reach its baseline
    burst = (
        timing.boot
        + POD_START_ALLOWANCE_S * (2 if max(s.node_max for s in scenarios) > 3 else 1)
        + timing.task_range[1]
        + main_s.stream_length()
    )
    period = args.period or (burst + timing.scale_down_delay + timing.unneeded_before + 10)
    bin_dir, why = find_binaries()
    if bin_dir is None:
        print(f"node_cost: no Kubernetes binaries: {why}", file=sys.stderr)
        return 2
    out = Tee()
    started = time.monotonic()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-nodecost-") as tmp:
        out(f"load average at start: {load()}")
        kube = ControlPlane(bin_dir=bin_dir, workdir=Path(tmp, "kube"))
        kube.start()
        try:
            out(f"node_cost: Kubernetes 1.20.2 control plane started in {kube.started_in:.1f} s")
            out(timing.describe())
            out(f"bursts every {period:.0f} s; {args.repeats} repeat(s), contenders interleaved per repeat")
            if skipped:
                out(skipped)
            measured = steps or [main_s]  # repeated, with every contender; the sanity scenario once
            for s in scenarios:
                # the sanity scenario: one worker per node, so packing has nothing to pack - today vs shipped
                names = contenders if s in measured else [c for c in contenders if c in ("today", "packed")]
                for rep in range(args.repeats if s in measured else 1):
                    for c in names:
                        runs.append(run_one(kube, s, c, rep, timing, period, Path(tmp), out))
        finally:
            kube.stop()
    ratios = {s.name: report(runs, s, out) for s in scenarios}
    report_cold(runs, scenarios, out)
    lost = sum(r.lost + r.recomputed for r in runs)
    failed = sum(len(r.failures) for r in runs)
    out(f"\ntasks lost or recomputed, all runs: {lost}; runs with failures: {failed}")
    for c in contenders:
        again: Counter[str] = Counter()
        for r in runs:
            if r.contender == c:
                again.update(r.rerun_by)
        causes = f" ({describe_causes(again)})" if again else ""
        out(f"{c}: tasks run again, all runs: {sum(again.values())}{causes}")
    for s in measured:
        for c in ("unpacked", "packed", "headroom"):
            if c in ratios[s.name] and "today" in ratios[s.name]:
                goal = " (goal <= 0.8)" if c == "packed" else ""
                out(f"{s.name}: {c} / today node-seconds (median): {ratios[s.name][c]:.2f}{goal}")
        alone = node_seconds_ratios(runs, s, "packed", "unpacked")
        if alone:
            out(
                f"{s.name}: packed / unpacked node-seconds (median, packing alone - same CA settings): "
                f"{statistics.median(alone):.2f} ({min(alone):.2f}-{max(alone):.2f})"
            )
    out(f"load average at end: {load()}; took {time.monotonic() - started:.0f} s")
    if args.png:
        plot(runs, measured, args.png)
        out(f"plot: {args.png}")
    if args.write_results:
        cmd = "python benchmarks/node_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
        title = "Node cost of bursts" + (" with a narrower phase" if args.step else "")
        extra = f"![worker nodes over time per contender]({args.png.name})\n\n" if args.png else ""
        write_section(section, f"{title} (Kubernetes 1.20.2)", cmd.strip(), out.text(), extra)
    return 1 if lost or failed else 0


if __name__ == "__main__":
    sys.exit(main())
