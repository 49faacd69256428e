"""Scale-down safety on a real Kubernetes 1.20.2 control plane: are results lost, are the right pods removed?

Reuses the test harness as is (testbed/kube: `ControlPlane`, `Kubelet`; testbed/dask: the objects
the Pulumi program registers, from its own builders, in kube_fixtures.py, and the end-to-end driver of
kube_driver.py - `Cycles`, `PodWatch`, `deploy_dask` - that the data-safety tests in test_kube_e2e.py
run too). The real apiserver, ReplicaSet controller and kube-scheduler run; pods are local processes.

One cycle (the e2e test's `Cycles.run`): `k` tasks that block on a distributed Event keep the workers
busy until all M have connected; then a value that cannot be recomputed is scattered to EACH worker,
the Event is set, the cluster goes idle and must shrink to 1 worker (which must receive the data of
the others), and at the end every task result and scattered value is read back.

Contenders (the shipped worker command line `dask worker --name $(POD_NAME) ...` with `--no-nanny`,
1 thread; the shipped worker readiness probe schedule):
- `2017` (the original jade-dask method, as a driver in this process): scale up by setting
  `replicas` = M; scale down with `Client.retire_workers(n=M-1)` (the scheduler picks, data moves,
  the workers close), then `replicas -= n`, leaving the ReplicaSet to pick which pods die. Its worker
  pods are plain workers: Ready while `/health` answers (no dask_adaptive worker preload), and its
  scheduler runs without the preload;
- `dask-adaptive`: the scheduler preload with `--backend kubernetes` in the scheduler pod (the Role
  the Pulumi program grants), minimum 1, maximum M, and the dask_adaptive worker preload on workers:
  the objects as shipped.

Measured: results lost or recomputed (one file per task execution; scattered values gone), pods
deleted that were not the retired ones (a pod that ever hosted a worker - Ready, or listed by the
scheduler under its name - deleted without its worker having been retired or cancelled in that cycle),
wall time per cycle.

Usage: .venv/bin/python benchmarks/scale_down_safety.py [--cycles 20] [--quick] [--write-results]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Tee, load, table, write_section

from testbed.dask import kube_driver as e2e
from testbed.dask.kube_driver import FAST_CYCLES
from testbed.dask.kube_fixtures import WORKERS, dask_layer
from testbed.kube.control_plane import ControlPlane, find_binaries
from testbed.kube.kubelet import Kubelet
from testbed.kube.nodes import NodeSpec


@dataclass
class Outcome:
    name: str
    cycles_done: int = 0
    cycle_times: list[float] = field(default_factory=list)
    lost_values: int = 0  # scattered values gone
    recomputed: int = 0  # task executions beyond the first
    missing: int = 0  # task results not readable at the end
    wrong_pods: int = 0  # pods deleted (that hosted a worker) without that worker retired or cancelled
    retired: int = 0
    removed: int = 0
    per_cycle_wrong: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def lost_or_recomputed(self) -> int:
        return self.lost_values + self.recomputed + self.missing


class WorkerNames:
    """Every worker name the scheduler ever listed (= pod name): a pod can host a worker, and hold
    data, before its readiness probe ever passed, so Ready alone would miss some."""

    def __init__(self, client: Any) -> None:
        self.client, self.names = client, set[str]()

    def poll(self) -> None:
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        self.names.update(str(w.get("name")) for w in info.values())

    @contextlib.contextmanager
    def running(self) -> Iterator[WorkerNames]:
        with e2e.polling(self.poll, name="worker-names"):
            yield self


def readable(future: Any, expected: object) -> bool:
    """The value is still there and right (a lost task result would be recomputed: counted apart)."""
    if future.status != "finished":
        return False
    try:
        return future.result(timeout=30) == expected
    except Exception:
        return False


def nodes() -> list[NodeSpec]:
    tag = uuid.uuid4().hex[:5]
    return [
        NodeSpec.pool(f"system-{tag}", "system", cpu="4", memory="16Gi"),
        NodeSpec.pool(f"workers-{tag}", "workers", worker=True, cpu="8", memory="32Gi"),
    ]


def deploy_2017(kube: ControlPlane, ns: str) -> None:
    """The program's objects with no dask_adaptive at work: the worker Deployment runs the shipped
    worker command line without the worker preload (Ready while `/health` answers, on the shipped probe's
    schedule) and the scheduler pod the shipped command line without the scheduler preload. The
    ConfigMap is mounted as shipped, but nothing loads it."""
    layer = dask_layer(ns)
    path, workers = layer.worker_deployment(nanny=False)
    (container,) = workers["spec"]["template"]["spec"]["containers"]
    cmd = container["command"]
    i = cmd.index("--preload")
    container["command"] = [*cmd[:i], *cmd[i + 2 :]]
    container["readinessProbe"]["httpGet"]["path"] = "/health"
    pod_path, pod = layer.scheduler_pod()
    del pod["spec"]["serviceAccountName"]  # the 2017 scaler runs in this process with admin rights
    (scheduler,) = pod["spec"]["containers"]
    scheduler["command"] = scheduler["command"][: scheduler["command"].index("--preload")]
    e2e.apply(kube, [*layer.rbac(), *layer.supporting(), (path, workers), (pod_path, pod)])


def set_replicas(kube: ControlPlane, ns: str, n: int) -> None:
    kube.rest().patch(f"/apis/apps/v1/namespaces/{ns}/deployments/{WORKERS}/scale", {"spec": {"replicas": n}})


def replicas(kube: ControlPlane, ns: str) -> int:
    return (
        kube.rest()
        .get(f"/apis/apps/v1/namespaces/{ns}/deployments/{WORKERS}/scale")["spec"]
        .get("replicas", 0)
    )


def run_contender(
    kube: ControlPlane, name: str, cycles: int, maximum: int, workdir: Path, out: Tee
) -> Outcome:
    from distributed import Client

    result = Outcome(name)
    runs = workdir / f"runs-{name}"
    runs.mkdir()
    with kube.namespace(f"safety-{name}") as ns:
        kubelet = Kubelet(kube, nodes(), namespaces=[ns], probe_period_scale=0.5).start()
        try:
            if name == "dask-adaptive":
                e2e.deploy_dask(kube, ns, nanny=False, **{**FAST_CYCLES, "maxWorkers": maximum})
            else:
                deploy_2017(kube, ns)
            address = e2e.scheduler_address(kube, kubelet, ns)
            with (
                e2e.PodWatch(kube, ns).running() as watch,
                Client(address, security=e2e.client_security(kube, ns), timeout="30s") as client,
                WorkerNames(client).running() as hosts,
            ):
                driver = e2e.Cycles(client, kube, ns, runs, k=2 * maximum, maximum=maximum)
                retired_2017: set[str] = set()  # this cycle's
                retired_total: set[str] = set()

                def scale_down_2017() -> None:
                    """retire_workers (the scheduler picks; data moves; workers close), then replicas -= n."""
                    n = len(driver.workers()) - 1
                    info = client.retire_workers(close_workers=True, n=n)
                    names = {str(v["name"]) for v in info.values()}
                    retired_2017.update(names)
                    set_replicas(kube, ns, replicas(kube, ns) - len(names))

                def allowed() -> set[str]:
                    """Pods whose removal is expected: workers retired (or cancelled before arriving)."""
                    events = e2e.adaptive_events(client)
                    return retired_2017 | events.get("retired", set()) | events.get("cancelled", set())

                for c in range(cycles):
                    removed_before = watch.seen - {p["metadata"]["name"] for p in e2e.live_pods(kube, ns)}
                    allowed_before = allowed()
                    retired_2017.clear()  # per cycle: a pod retired in an earlier cycle is not a licence
                    t = time.monotonic()
                    if name == "2017":
                        set_replicas(kube, ns, maximum)
                    try:
                        driver.run(timeout=120, idle=scale_down_2017 if name == "2017" else None)
                    except AssertionError as e:  # a cycle that did not converge: counted, then stop
                        result.failures.append(f"cycle {c}: {str(e).splitlines()[0]}")
                        break
                    result.cycle_times.append(time.monotonic() - t)
                    removed = watch.seen - {p["metadata"]["name"] for p in e2e.live_pods(kube, ns)}
                    ok = allowed() - (allowed_before - retired_2017)
                    hosted = watch.ever_ready | hosts.names  # the pod ran a worker (name = pod name)
                    wrong = ((removed - removed_before) & hosted) - ok
                    retired_total |= allowed()
                    result.per_cycle_wrong.append(len(wrong))
                    lost_now = sum(1 for f, _ in driver.scattered if f.status != "finished")
                    recomputed_now = sum(n - 1 for n in e2e.executions(runs).values())
                    out(
                        f"  {name:13} cycle {c + 1:2}: {result.cycle_times[-1]:5.1f} s, wrong pods "
                        f"{len(wrong)}, scattered lost so far {lost_now}, recomputed so far {recomputed_now}"
                    )
                result.cycles_done = driver.done
                # read every result back (a lost task result is silently recomputed by Dask)
                result.lost_values = sum(1 for f, v in driver.scattered if not readable(f, v))
                result.missing = sum(1 for i, f in enumerate(driver.tasks) if not readable(f, i * i))
                counts = e2e.executions(runs)
                result.recomputed = sum(n - 1 for n in counts.values())
                result.missing += len(driver.tasks) - len(counts)  # never ran at all
                events = e2e.adaptive_events(client)
                result.retired = len(retired_total - events.get("cancelled", set()))
                live = {p["metadata"]["name"] for p in e2e.live_pods(kube, ns)}
                result.removed = len((watch.seen - live) & (watch.ever_ready | hosts.names))
                result.wrong_pods = sum(result.per_cycle_wrong)
        finally:
            kubelet.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=20, help="scale-up/scale-down cycles per contender [20]")
    ap.add_argument("--max-workers", type=int, default=3, help="workers at the top of a cycle [3]")
    ap.add_argument("--contenders", default="2017,dask-adaptive", help="2017,dask-adaptive")
    ap.add_argument("--quick", action="store_true", help="3 cycles")
    ap.add_argument("--write-results", action="store_true", help="replace this section of RESULTS.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.cycles = 3
    bin_dir, why = find_binaries()
    if bin_dir is None:
        print(f"scale_down_safety: no Kubernetes binaries: {why}", file=sys.stderr)
        return 2
    out = Tee()
    started = time.monotonic()
    names = [c.strip() for c in args.contenders.split(",") if c.strip()]
    results: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="bench-safety-") as tmp:
        out(f"load average at start: {load()}")
        kube = ControlPlane(bin_dir=bin_dir, workdir=Path(tmp, "kube"))
        kube.start()
        try:
            out(
                f"scale_down_safety: Kubernetes 1.20.2 control plane started in {kube.started_in:.1f} s; "
                f"{args.cycles} cycles per contender, {args.max_workers} -> 1 workers per cycle\n"
            )
            for name in names:
                results.append(run_contender(kube, name, args.cycles, args.max_workers, Path(tmp), out))
        finally:
            kube.stop()
    rows: list[list[Any]] = []
    med: Callable[[list[float]], float | str] = lambda xs: statistics.median(xs) if xs else "-"  # noqa: E731
    for r in results:
        rows.append(
            [
                r.name,
                f"{r.cycles_done}/{args.cycles}",
                r.lost_values,
                r.recomputed,
                r.missing,
                r.lost_or_recomputed,
                r.wrong_pods,
                r.retired,
                r.removed,
                med(r.cycle_times),
                max(r.cycle_times) if r.cycle_times else "-",
            ]
        )
    out("")
    out(
        table(
            [
                "contender",
                "cycles",
                "scattered lost",
                "tasks recomputed",
                "results missing",
                "lost or recomputed",
                "wrong pods deleted",
                "workers retired",
                "worker pods removed",
                "median cycle s",
                "max cycle s",
            ],
            rows,
        )
    )
    base = next((r for r in results if r.name == "2017"), None)
    ours = next((r for r in results if r.name == "dask-adaptive"), None)
    if base and ours and base.cycle_times and ours.cycle_times:
        out(
            f"\ndask-adaptive / 2017: median cycle time {med(ours.cycle_times) / med(base.cycle_times):.2f}; "  # type: ignore[operator]
            f"lost or recomputed {ours.lost_or_recomputed} vs {base.lost_or_recomputed}; wrong pods "
            f"{ours.wrong_pods} vs {base.wrong_pods}"
        )
    for r in results:
        for f in r.failures:
            out(f"{r.name}: {f}")
    out(f"took {time.monotonic() - started:.0f} s")
    if args.write_results:
        cmd = "python benchmarks/scale_down_safety.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section("scale_down_safety", "Scale-down safety (Kubernetes 1.20.2)", cmd.strip(), out.text())
    bad = ours is not None and (ours.lost_or_recomputed or ours.wrong_pods or ours.failures)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
