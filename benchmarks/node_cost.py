"""Node cost of a bursty workload on a real Kubernetes 1.20.2 control plane: what the bill counts (issue 13).

On EKS the bill is EC2 node-seconds, not worker-seconds. This runs Dask -> pods -> nodes together: the real
apiserver, ReplicaSet controller and kube-scheduler (with its preemption), the dev stack's own objects
(recorded from the Pulumi program under mocks: testbed/dask/kube_fixtures.py), the real scheduler
preload with its kubernetes backend, real `dask worker` processes as pods (testbed/kube kubelet harness), and
the node provisioner playing cluster-autoscaler + the Auto Scaling Group (testbed/kube/provisioner.py):
it asks for a node when worker pods stay Unschedulable, the node joins after a boot delay (billed from the
ask), and an empty node goes after the unneeded time. Node-seconds = the provisioner's bill.

Contenders, in one run, in a shuffled order per repeat (seeded; the seed is printed), under the SAME
stand-in and the SAME cluster-autoscaler settings (`--unneeded`, default the program's 1m):
- `packed`: the program's objects as shipped (pod affinity + the preload's node-aware victims);
- `unpacked`: the same with the packing pod affinity stripped and `DASK_ADAPTIVE__NODE_PACKING=False`:
  kube-scheduler spreads, the scheduler's `workers_to_close` order alone picks victims;
- `operator`: no preload; distributed's `adaptive_target()` driving the worker Deployment as the
  dask-kubernetes operator's autoscaler does (node_cost_baselines.py: its timer, cooldown, 25% step
  limit, retire-then-delete-exactly-those), pods spread;
- `2017`: no preload; distributed's Adaptive policy (wait_count 3) with the original jade-dask scale-down
  (retire_workers, then replicas -= n, the ReplicaSet picking the pods), pods spread;
- `headroom` (only when asked for): as shipped, plus warm headroom of one node (`dask.headroomWorkers`).
The stand-in (testbed/kube/provisioner.py, ca_rules.py) computes utilization as cluster-autoscaler does
(DaemonSets counted: the EKS DaemonSets' requests of infra/facts/instance_types.py, over allocatable),
taints candidates, evicts through the Eviction API with the grace capped, and puts nodes it could not
remove aside for the recheck time. The scaleDownUnneededTime curve against the gap between bursts is a
SIMULATION on the replica timelines recorded here (ca_curve.py), labelled so in the output.
Documented overrides of the shipped objects, all of them: the harness's (kube_fixtures.py: bare scheduler
Pod, repository on PYTHONPATH, `--no-nanny`), the strips above, the placeholders' pause container runs
`sleep infinity` (the harness runs commands, not images), and the workers' grace period and SIGTERM
deadline compressed like the durations below. Mutual TLS as shipped.

Time is compressed by `--compression` (default 20): the EKS durations below are divided by it.
  node boot + join            90 s (EKS: ~60-120 s)          -> boot_delay
  cluster-autoscaler reaction 10 s (its scan interval)        -> scale_up_delay
  scale-down-unneeded-time    `--unneeded` (the program's CA setting, 1m) -> scale_down_delay
  scale-down-delay-after-add  the program's CA setting (5m)  -> scale_down_delay_after_add
  unremovable-node-recheck    CA's default (5m)              -> unremovable_recheck
  max-graceful-termination    CA's default (600 s)           -> max_graceful_termination
  max-pod-eviction-time       CA's default (2m)              -> max_pod_eviction_time
  (not time: scale-down-utilization-threshold, the program's 0.5: an under-used node whose pods fit
  elsewhere is drained - its pods evicted, a worker retiring gracefully on SIGTERM - as CA does)
  preload scaleDownDelay      the program's default (60 s)   -> --scale-down-delay
  preload targetDuration      the program's default (5 s)    -> --target-duration
  worker grace period         the program's (120 s; SIGTERM deadline 15 s inside it) -> the pod's, env
  tasks                       30 s .. 3 min                  -> 1.5 .. 9 s
Not compressed: the preload interval (0.25 s; default 1 s) and pod start (a `dask worker` process on this
shared 2-core machine: 2-5 s, i.e. 40-100 s at 20x - slower than a pulled image on EKS).

The workload and what is measured: benchmarks/node_cost_model.py's docstring.

Usage: .venv/bin/python benchmarks/node_cost.py [--repeats 5] [--compression 20] [--seed N]
         [--contenders packed,unpacked,operator,2017] [--step] [--sanity] [--write-results] [--tiny]
         [--json runs.json] [--from-json runs.json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH, Tee, load, write_section
from ca_curve import curve_section
from node_cost_baselines import PLAIN, Driver, strip_preloads
from node_cost_model import (
    CONTENDERS,
    DEFAULT_CONTENDERS,
    SPREAD,
    STREAM_TASKS,
    Burst,
    Run,
    Scenario,
    Timing,
    Watch,
    collect,
    durations,
    has_dask_key,
    load_runs,
    measure,
    placeholder_objects,
    placeholders_ready,
    record,
    record_grace,
    rerun_causes,
    result_retired,
    step_scenarios,
    task_starts,
)  # fmt: skip
from node_cost_report import plot, report, report_cold, report_tail

from infra.config.autoscaler import AUTOSCALER_DEFAULTS
from infra.facts.instance_types import DAEMONSET_CPU_MILLICORES, DAEMONSET_MEMORY_MIB, pod_capacity
from infra.k8s.dask_objects import SIGTERM_MARGIN_SECONDS
from testbed.dask import kube_driver as e2e
from testbed.dask.kube_fixtures import SCHEDULER
from testbed.kube.control_plane import ControlPlane, wait_for
from testbed.kube.kubelet import Kubelet
from testbed.kube.nodes import NodeGroup, NodeSpec

__all__ = ["rerun_causes", "task_starts"]  # read by tests/benchmarks/test_node_cost_causes.py


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


def raw_target(dask_scheduler: Any, target_duration: float) -> tuple[int, int, int]:
    """distributed's own answer, the workers it had and the tasks it saw waiting (runs in the scheduler)."""
    ready = len(dask_scheduler.queued) + len(dask_scheduler.unrunnable)
    return dask_scheduler.adaptive_target(target_duration), len(dask_scheduler.workers), ready


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
        env = {"DASK_ADAPTIVE__NODE_PACKING": "False"} if contender == "unpacked" else None
        sched_path, sched_pod = layer.scheduler_pod(env=env)
        if contender in PLAIN:
            strip_preloads(workers, sched_pod)
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
            scale_down_delay=timing.unneeded,
            scale_down_delay_after_add=timing.after_add,
            boot_delay=timing.boot,
            scale_down_utilization=float(AUTOSCALER_DEFAULTS["scaleDownUtilizationThreshold"]),
            daemonset_cpu=f"{DAEMONSET_CPU_MILLICORES}m",
            daemonset_memory=f"{DAEMONSET_MEMORY_MIB}Mi",
            unremovable_recheck=timing.recheck,
            max_graceful_termination=timing.max_grace,
            max_pod_eviction_time=timing.eviction_time,
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
            e2e.apply(kube, [(sched_path, sched_pod)])
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
                contextlib.ExitStack() as stack,
            ):
                driver = None
                if contender in PLAIN:
                    driver = Driver(
                        contender, client, kube.rest(), ns,
                        minimum=scenario.min_workers, maximum=scenario.max_workers, timing=timing,
                    )  # fmt: skip
                    stack.enter_context(driver.running())
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
                        max(60.0, 4 * timing.unneeded + timing.after_add),
                        0.2,
                        message=f"back at {result.baseline_nodes} node(s)",
                    )
                except AssertionError as exc:
                    result.failures.append(str(exc).splitlines()[0])
                end = max(horizon, time.monotonic())
                collect(result, prov, client, (t0, wall0, end), runs, submitted)
                result.driver_errors = len(driver.errors) if driver else 0
                result.replicas = [(t - t0, r) for t, r in watch.replicas if t >= t0]
                retired = driver.retired if driver else set()
                result.rerun_by = rerun_causes(
                    task_starts(Path(f"{runs}-starts")), {pod for _, _, pod in prov.evicted},
                    retired | result_retired(client, wall0),
                )  # fmt: skip
                result.restarted = sum(result.rerun_by.values())  # every start of a task but its last
        finally:
            kubelet.stop()
    out(result.summary())
    return result


def queued_target(client: Any, target_duration: float, n: int) -> tuple[int, int] | None:
    """distributed's raw target once all `n` tasks of the burst wait at the scheduler (from zero workers;
    with workers some may already run: then at once)."""
    target, workers, ready = client.run_on_scheduler(raw_target, target_duration=target_duration)
    return (target, workers) if workers or ready >= n else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS), help=f"of {','.join(CONTENDERS)}")
    ap.add_argument("--compression", type=float, default=20.0, help="EKS time / benchmark time [20]")
    ap.add_argument(
        "--unneeded", default=None, help="scale-down-unneeded-time, every contender [the program's]"
    )
    ap.add_argument(
        "--seed", type=int, default=None, help="contender order per repeat [from the clock; printed]"
    )
    ap.add_argument("--bursts", default=None, help="tasks per burst [8,6,8; with --step one of 4 x nodes]")
    ap.add_argument(
        "--step",
        action="store_true",
        help="with each burst a narrower phase: lanes of 1 min tasks (EKS time); --shapes, --stream-tasks",
    )
    ap.add_argument("--shapes", default="3x4,6x12", help="with --step: NODESxLANES per scenario [3x4,6x12]")
    ap.add_argument("--stream-tasks", type=int, default=STREAM_TASKS, help="per lane, 1 min each [20]")
    ap.add_argument("--period", type=float, default=None, help="seconds between submits [derived]")
    ap.add_argument("--margin", type=float, default=10.0, help="uncompressed slack added to the period [10]")
    ap.add_argument("--min-workers", type=int, default=0)
    ap.add_argument("--sanity", action="store_true", help="also workersPerNode 1 (4 threads), once")
    ap.add_argument("--tiny", action="store_true", help="smoke size: one burst of 3 tasks, 60x, 1 repeat")
    ap.add_argument("--png", type=Path, default=None, help="[benchmarks/node_cost.png, node_cost_step.png]")
    ap.add_argument("--json", type=Path, default=None, help="also save the runs here (for --from-json)")
    ap.add_argument("--from-json", type=Path, default=None, help="report runs saved by --json; run nothing")
    ap.add_argument("--from-log", type=Path, default=None, help="with --from-json: that measurement's log")
    ap.add_argument("--write-results", action="store_true", help="replace this section of RESULTS.md")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats {args.repeats}: must be >= 1")
    timing = Timing.compressed(args.compression, unneeded=args.unneeded)
    bursts = tuple(int(x) for x in (args.bursts or "8,6,8").split(","))
    section = "node_cost_step" if args.step else "node_cost"
    args.png = args.png or BENCH / f"{section}.png"
    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    if args.tiny:  # the smoke run of the suite: one small burst, seconds instead of minutes
        timing = Timing.compressed(60.0, unneeded=args.unneeded)
        bursts, args.repeats, args.sanity, args.period = (3,), 1, False, args.period or 1.0
    unknown = set(contenders) - set(CONTENDERS)
    if unknown:
        ap.error(f"--contenders: unknown {sorted(unknown)}; allowed: {', '.join(CONTENDERS)}")
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    skipped = ""
    if "headroom" in contenders and not has_dask_key("headroomWorkers"):
        contenders.remove("headroom")
        skipped = "headroom: skipped - the program has no dask.headroomWorkers key (infra/k8s/headroom.py)"
    main_s = Scenario(
        "wpn4", 4, "m6i.xlarge", max_workers=8, node_max=3, bursts=bursts, min_workers=args.min_workers
    )
    steps = step_scenarios(args, timing) if args.step else []
    if steps:
        main_s = steps[0]
    scenarios = steps or [main_s]
    if args.sanity:  # the aws default shape: one worker per node with the node's cores as threads
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
    measured = steps or [main_s]  # repeated, with every contender; the sanity scenario once
    out = Tee()
    started = time.monotonic()
    measured_log: list[str] = []
    if args.from_json:
        runs = load_runs(args.from_json)
        out(f"node_cost: runs read from {args.from_json}, measured earlier; the measurement's own log:")
        if args.from_log:  # the measurement's lines up to its first table, and its closing load line
            measured_log = [ln for ln in args.from_log.read_text().splitlines() if "deployerAdmin" not in ln]
            head = measured_log[: next((i for i, ln in enumerate(measured_log) if ln.startswith("### ")), 0)]
            out("\n".join(ln for ln in head if ln.strip()))
    else:
        runs = measure(args, timing, bursts, scenarios, measured, contenders, seed, skipped, out, run_one)
        if args.json:
            args.json.write_text(json.dumps([dataclasses.asdict(r) for r in runs]))
            out(f"runs saved: {args.json}")
    for s in scenarios:
        report(runs, s, contenders, timing.task_range, seed, out)
    report_cold(runs, scenarios, out)
    if not args.step:
        curve_section(runs, main_s, timing, out)
    _, failed = report_tail(runs, contenders, PLAIN, out)
    ends = [ln for ln in measured_log if ln.startswith("load average at end")]
    out(
        f"measurement's {ends[-1]}"
        if ends
        else f"load average at end: {load()}; took {time.monotonic() - started:.0f} s"
    )
    if args.png:
        plot(runs, measured, args.png, contenders)
        out(f"plot: {args.png}")
    if args.write_results:
        cmd = "python benchmarks/node_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
        title = "Node cost of bursts" + (" with a narrower phase" if args.step else "")
        extra = f"![worker nodes over time per contender]({args.png.name})\n\n" if args.png else ""
        write_section(section, f"{title} (Kubernetes 1.20.2)", cmd.strip(), out.text(), extra)
    ours = sum(r.lost + r.recomputed for r in runs if r.contender not in PLAIN)  # baselines may lose work
    return 1 if ours or failed else 0


if __name__ == "__main__":
    sys.exit(main())
