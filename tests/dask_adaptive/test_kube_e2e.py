"""The kubernetes backend and the preload against the REAL Kubernetes 1.20.2 control plane.

Pods are real local processes run by the kubelet harness (tests/kube); the apiserver, the ReplicaSet
controller, kube-scheduler and RBAC are the real ones. The scheduler's service account gets exactly the
Role the Pulumi program grants. Kubernetes 1.20 ignores `pod-deletion-cost`, so here the NotReady signal
and verify-and-correct must make the retired pods the ones that go.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dask_adaptive.backends.base import BackendUnavailable, RemovalReport
from dask_adaptive.backends.kubernetes.backend import KubernetesBackend
from dask_adaptive.backends.kubernetes.ranking import DELETION_COST, LOWEST_COST, plan_removal, pod_ready
from tests.dask_adaptive.kube_fixtures import (
    SCHEDULER_SA,
    SELECTOR,
    WORKERS,
    held_execution,
    record_execution,
    scheduler_pod,
    scheduler_rbac,
    scheduler_service,
    worker_deployment,
    write_service_account,
)
from tests.kube.control_plane import wait_for
from tests.kube.nodes import NodeSpec

pytestmark = pytest.mark.kube

SLEEPER = ["python", "-c", "import time; time.sleep(3600)"]
# Ready unless a flag file named after the pod exists: the stand-in for a retired worker's 503.
FLAG_PROBE = {
    "exec": {"command": ["python", "-c",
                         "import os, sys; sys.exit(os.path.exists(os.path.join(os.environ['FLAG_DIR'], "
                         "os.environ['POD_NAME'])))"]},
    "periodSeconds": 1, "failureThreshold": 1, "timeoutSeconds": 5,
}  # fmt: skip


def apply(kube: Any, objects: list[tuple[str, dict[str, Any]]]) -> None:
    rest = kube.rest()
    for path, body in objects:
        rest.post(path, body)


def live_pods(kube: Any, ns: str) -> list[dict[str, Any]]:
    items = kube.rest().items(f"/api/v1/namespaces/{ns}/pods", labelSelector=SELECTOR)
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def ready_names(kube: Any, ns: str, n: int) -> list[str] | None:
    pods = live_pods(kube, ns)
    ready = [p for p in pods if pod_ready(p)]
    if len(pods) == n and len(ready) == n:
        return [
            p["metadata"]["name"] for p in sorted(ready, key=lambda p: p["metadata"]["creationTimestamp"])
        ]
    return None


class PodWatch:
    """Polls the pods in the background and remembers, per pod, whether it ever carried our low cost."""

    def __init__(self, kube: Any, ns: str) -> None:
        self.rest, self.ns = kube.rest(), ns
        self.marked: set[str] = set()
        self.ever_ready: set[str] = set()  # readiness = a connected worker accepting work
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                for p in self.rest.items(f"/api/v1/namespaces/{self.ns}/pods", labelSelector=SELECTOR):
                    name = p["metadata"]["name"]
                    self.seen.add(name)
                    if pod_ready(p):
                        self.ever_ready.add(name)
                    if (p["metadata"].get("annotations") or {}).get(DELETION_COST) == LOWEST_COST:
                        self.marked.add(name)
            self._stop.wait(0.1)

    @contextlib.contextmanager
    def running(self) -> Iterator[PodWatch]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(5)


@pytest.fixture
def sleepers(kube, namespace, kubelet, tmp_path):
    """A worker Deployment of plain sleeper processes whose readiness a test flips with flag files, and
    a backend in this process using the scheduler's real ServiceAccount token and Role."""
    flags = tmp_path / "flags"
    flags.mkdir()
    apply(kube, scheduler_rbac(namespace))
    dep = worker_deployment(namespace, command=SLEEPER, readiness=FLAG_PROBE, env={"FLAG_DIR": str(flags)})
    apply(kube, [(f"/apis/apps/v1/namespaces/{namespace}/deployments", dep)])
    sa = write_service_account(
        tmp_path / "sa", kube.service_account_token(namespace, SCHEDULER_SA), namespace, Path(kube.ca_file)
    )
    return flags, sa


def make_backend(kube, namespace, sa, cls=KubernetesBackend, **kw):
    kw = {"not_ready_timeout": 20.0, "settle_timeout": 20.0, "poll_interval": 0.2, **kw}
    return cls(namespace, WORKERS, SELECTOR, service_account_dir=str(sa), api_url=kube.url, **kw)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 150))


def test_backend_removes_exactly_the_notready_pods_on_a_real_replicaset(kube, namespace, sleepers):
    flags, sa = sleepers
    backend = make_backend(kube, namespace, sa)

    async def scenario():
        await backend.start()
        await backend.scale_up(4)
        names = await asyncio.to_thread(
            wait_for, lambda: ready_names(kube, namespace, 4), 90, 0.2, "4 ready worker pods"
        )
        victims = names[:2]  # the oldest: a 1.20 ReplicaSet left alone removes the newest
        for v in victims:
            (flags / v).touch()  # the "retired worker" now fails its readiness probe
        report = await backend.remove(victims)
        obs = await backend.observe()
        await backend.close()
        return names, victims, report, obs

    with PodWatch(kube, namespace).running() as watch:
        names, victims, report, obs = run(scenario())
        survivors = wait_for(lambda: ready_names(kube, namespace, 2), 60, message="2 survivors")
    assert report == RemovalReport(removed=tuple(victims))
    assert sorted(survivors) == sorted(names[2:])
    assert obs.requested == 2
    assert (backend.counters.direct_deletes, backend.counters.corrections, backend.counters.wrong_picks) == (
        0,
        0,
        0,
    )
    assert watch.marked == set(victims)  # the low deletion cost was set on exactly them (for 1.22+)


class SkipsTheSafetyWait(KubernetesBackend):
    """Lowers /scale without waiting for NotReady: lets the real ReplicaSet pick, to test the correction."""

    async def _wait_until_safe(self, names):
        pods = await self._pods()
        return pods, replace(plan_removal(pods, names), still_ready=(), outranking=())


def test_a_wrong_pick_by_the_real_replicaset_is_corrected(kube, namespace, sleepers):
    _, sa = sleepers
    backend = make_backend(kube, namespace, sa, cls=SkipsTheSafetyWait)

    async def scenario():
        await backend.start()
        await backend.scale_up(1)
        first = (
            await asyncio.to_thread(wait_for, lambda: ready_names(kube, namespace, 1), 90, 0.2, "1 pod")
        )[0]
        await asyncio.sleep(1.5)  # older and Ready for longer than the next two: ranked last by 1.20
        await backend.scale_up(3)
        await asyncio.to_thread(wait_for, lambda: ready_names(kube, namespace, 3), 90, 0.2, "3 ready pods")
        report = await backend.remove([first])
        await backend.close()
        return first, report

    with PodWatch(kube, namespace).running() as watch:
        first, report = run(scenario())
        final = wait_for(lambda: ready_names(kube, namespace, 2), 60, message="2 ready pods after correction")
    assert first in watch.marked  # marked with the lowest cost, yet 1.20 took another pod
    assert len(report.wrong) == 1 and first not in report.wrong
    assert report.corrected == (first,)
    assert first not in final and report.wrong[0] not in final
    assert (backend.counters.wrong_picks, backend.counters.corrections) == (1, 1)
    events = kube.rest().items(f"/api/v1/namespaces/{namespace}/events")
    assert any(e["reason"] == "WrongPodRemoved" and e["involvedObject"]["name"] == WORKERS for e in events)


def test_backend_start_refuses_a_role_without_scale(kube, namespace, tmp_path):
    apply(kube, scheduler_rbac(namespace, with_scale=False))
    apply(kube, [(f"/apis/apps/v1/namespaces/{namespace}/deployments", worker_deployment(namespace))])
    sa = write_service_account(
        tmp_path / "sa", kube.service_account_token(namespace, SCHEDULER_SA), namespace, Path(kube.ca_file)
    )
    backend = make_backend(kube, namespace, sa)
    with pytest.raises(BackendUnavailable) as err:
        run(backend.start())
    assert "may not get deployments/scale dask-workers; patch deployments/scale dask-workers" in str(
        err.value
    )


# -- the preload, loaded exactly as in production, scaling real dask workers ------------------------


def deploy_dask(kube, kubelet, ns, options, *, with_scale=True, nanny=True, env=None):
    """RBAC, worker Deployment (replicas 0), scheduler Service and Pod."""
    apply(kube, scheduler_rbac(ns, with_scale=with_scale))
    apply(
        kube,
        [
            (f"/apis/apps/v1/namespaces/{ns}/deployments", worker_deployment(ns, nanny=nanny)),
            (f"/api/v1/namespaces/{ns}/services", scheduler_service()),
            (f"/api/v1/namespaces/{ns}/pods", scheduler_pod(ns, options, env)),
        ],
    )


def scheduler_address(kube, kubelet, ns) -> str:
    def ready():
        pod = kube.rest().get(f"/api/v1/namespaces/{ns}/pods/dask-scheduler")
        return pod_ready(pod)

    wait_for(
        ready, 90, message=lambda: f"scheduler ready; log:\n{kubelet.log_text(ns, 'dask-scheduler')[-3000:]}"
    )
    return "tcp://" + kubelet.service_address(ns, "dask-scheduler", 8786)


def scheduler_phase(kube, ns) -> tuple[str, int]:
    pod = kube.rest().get(f"/api/v1/namespaces/{ns}/pods/dask-scheduler")
    restarts = sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses") or [])
    return pod["status"].get("phase", ""), restarts


def adaptive_events(client) -> dict[str, set[str]]:
    """Names per action from the controller's scheduler events ("retired", "cancelled", ...)."""
    out: dict[str, set[str]] = {}
    for _, msg in client.get_events("adaptive"):
        names = msg.get("workers") or msg.get("units") or []
        if isinstance(names, str):
            names = names.split(",")
        out.setdefault(msg.get("action", ""), set()).update(n for n in names if n)
    return out


def executions(folder: Path) -> dict[int, int]:
    counts: dict[int, int] = {}
    for f in folder.iterdir():
        i = int(f.name.split(".")[0])
        counts[i] = counts.get(i, 0) + 1
    return counts


def exactly_the_retired(removed: set[str], events: dict[str, set[str]], watch: PodWatch) -> bool:
    """Every retired worker's pod went, and every pod that went while hosting a worker (it was Ready)
    had been retired or cancelled: never a working one. Pods that never hosted a worker (replacements
    made when the backend deletes cancelled pods directly, short-lived Pending pods) are not counted."""
    retired, cancelled = events.get("retired", set()), events.get("cancelled", set())
    return retired <= removed and (removed & watch.ever_ready) <= retired | cancelled


CORRECTION_LINES = ("instead of", "deleting the named pods directly", "did not remove")


def test_preload_scales_a_workload_up_and_down_removing_exactly_the_retired_pods(
    kube, namespace, kubelet, tmp_path
):
    from distributed import Client

    runs = tmp_path / "runs"
    runs.mkdir()
    options = ["--minimum", "0", "--maximum", "4", "--interval", "0.5s", "--target-duration", "1s",
               "--scale-down-delay", "3s"]  # fmt: skip
    deploy_dask(kube, kubelet, namespace, options)
    address = scheduler_address(kube, kubelet, namespace)
    peak = 0
    with PodWatch(kube, namespace).running() as watch, Client(address, timeout="30s") as client:
        futures = client.map(record_execution, range(24), folder=str(runs), delay=1.0, pure=False)
        deadline = time.monotonic() + 120
        while not all(f.done() for f in futures) and time.monotonic() < deadline:
            peak = max(peak, len(client.scheduler_info()["workers"]))
            time.sleep(0.2)
        results = client.gather(futures)
        # idle now: the controller retires all but what must hold the results, and removes those pods
        computed = time.monotonic()
        wait_for(
            lambda: len(live_pods(kube, namespace)) == 1 and len(client.scheduler_info()["workers"]) == 1,
            90,
            message="scale-down to the one worker holding the results",
        )
        scaled_down_in = time.monotonic() - computed
        assert client.gather(futures) == results == [i * i for i in range(24)]
        events = adaptive_events(client)
        log = kubelet.log_text(namespace, "dask-scheduler")
    removed = watch.seen - {p["metadata"]["name"] for p in live_pods(kube, namespace)}
    retired = events.get("retired", set())
    print(
        f"\nE2E up/down: peak {peak} workers, {len(retired)} retired, {len(removed)} pods removed "
        f"({len(events.get('cancelled', set()))} cancelled), idle -> 1 worker in {scaled_down_in:.1f}s"
    )
    assert peak >= 3, f"scaled up to only {peak} workers"
    assert executions(runs) == dict.fromkeys(range(24), 1)  # nothing lost, nothing recomputed
    assert retired and exactly_the_retired(removed, events, watch)
    assert retired <= watch.marked and watch.marked <= removed
    assert not [line for line in log.splitlines() if any(c in line for c in CORRECTION_LINES)]
    assert scheduler_phase(kube, namespace) == ("Running", 0)
    # every decision is also an Event on the Deployment, created with the scheduler's own token
    reasons = {
        e["reason"]
        for e in kube.rest().items(f"/api/v1/namespaces/{namespace}/events")
        if e.get("source", {}).get("component") == "dask-adaptive"
        and (e["involvedObject"]["kind"], e["involvedObject"]["name"]) == ("Deployment", WORKERS)
    }
    assert {"ScaleUp", "ScaleDown", "retired"} <= reasons, reasons


def scheduler_metric(kubelet, ns, name: str) -> float:
    """A sample of the scheduler's /metrics (prometheus text), 0 if absent."""
    import urllib.request

    port = kubelet.local_port(ns, "dask-scheduler", 8787)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "_total "):
            return float(line.split()[-1])
    return 0.0


class Cycles:
    """Drives scale-up/scale-down cycles through the preload and keeps every result ever produced.

    One cycle: `k` tasks that block on a distributed Event keep the target at `maximum` until every new
    worker has connected; then a value that cannot be recomputed is scattered to EACH worker, the Event
    is set, and the cluster goes idle, so the scale-down must retire workers holding unique data.
    """

    def __init__(self, client, kube, ns, runs: Path, *, k: int, maximum: int, floor: int = 1) -> None:
        self.client, self.kube, self.ns, self.runs = client, kube, ns, runs
        self.k, self.maximum, self.floor = k, maximum, floor
        self.tasks: list[Any] = []
        self.scattered: list[tuple[Any, str]] = []
        self.done = 0

    def workers(self) -> dict[str, Any]:
        return self.client.scheduler_info()["workers"]

    def run(self, timeout: float = 90, *, arrived=None, idle=None) -> None:
        """One cycle; `arrived()` runs once all workers are there, `idle()` right after the work ends."""
        from distributed import Event

        c = self.done
        event = Event(f"cycle-{c}-{time.time_ns()}", client=self.client)
        self.tasks += self.client.map(
            held_execution,
            range(c * self.k, (c + 1) * self.k),
            folder=str(self.runs),
            event=event.name,
            pure=False,
        )
        wait_for(
            lambda: len(self.workers()) == self.maximum, timeout, message=f"cycle {c}: {self.maximum} workers"
        )
        if arrived:
            arrived()
        for addr in self.workers():
            value = f"cycle {c} on {addr} at {time.time_ns()}"
            [fut] = self.client.scatter([value], workers=[addr], hash=False)
            self.scattered.append((fut, value))
        event.set()
        wait_for(lambda: all(f.done() for f in self.tasks), timeout, message=f"cycle {c}: tasks done")
        if idle:
            idle()
        wait_for(
            lambda: len(self.workers()) == self.floor and len(live_pods(self.kube, self.ns)) == self.floor,
            timeout,
            message=f"cycle {c}: back to {self.floor} worker",
        )
        self.done += 1

    def lost(self) -> int:
        """Results that are gone or were recomputed (a lost result is silently recomputed by Dask)."""
        values = self.client.gather(self.tasks + [f for f, _ in self.scattered], errors="skip")
        expected = [i * i for i in range(len(self.tasks))] + [v for _, v in self.scattered]
        missing = sum(1 for f in self.tasks + [f for f, _ in self.scattered] if f.status != "finished")
        ran = executions(self.runs)
        recomputed = sum(n - 1 for n in ran.values())
        wrong = 0 if values == expected else 1
        return missing + recomputed + wrong + (len(self.tasks) - len(ran))


CYCLES = 20


def test_no_result_lost_across_20_scale_down_cycles(kube, namespace, kubelet_factory, tmp_path):
    from distributed import Client

    kubelet = kubelet_factory(probe_period_scale=0.5)
    runs = tmp_path / "runs"
    runs.mkdir()
    options = ["--minimum", "1", "--maximum", "3", "--interval", "0.25s", "--target-duration", "1s",
               "--scale-down-delay", "0.5s"]  # fmt: skip
    # --no-nanny halves a worker's start-up (one process); retirement is the same as with a nanny
    deploy_dask(kube, kubelet, namespace, options, nanny=False)
    address = scheduler_address(kube, kubelet, namespace)
    started = time.monotonic()
    with PodWatch(kube, namespace).running() as watch, Client(address, timeout="30s") as client:
        cycles = Cycles(client, kube, namespace, runs, k=6, maximum=3)
        retired_per_cycle = []
        for _ in range(CYCLES):
            before = len(adaptive_events(client).get("retired", set()))
            cycles.run()
            retired_per_cycle.append(len(adaptive_events(client).get("retired", set())) - before)
        lost = cycles.lost()
        events = adaptive_events(client)
        log = kubelet.log_text(namespace, "dask-scheduler")
    removed = watch.seen - {p["metadata"]["name"] for p in live_pods(kube, namespace)}
    corrections = [line for line in log.splitlines() if any(c in line for c in CORRECTION_LINES)]
    print(
        f"\nE2E cycles: {cycles.done} cycles in {time.monotonic() - started:.0f}s, retired per cycle "
        f"{retired_per_cycle}, {len(cycles.tasks)} tasks + {len(cycles.scattered)} scattered values, "
        f"lost {lost}, pods removed {len(removed)}, correction log lines {len(corrections)}"
    )
    assert cycles.done == CYCLES
    assert all(n >= 1 for n in retired_per_cycle)  # every cycle retired workers that held scattered data
    assert lost == 0
    assert exactly_the_retired(removed, events, watch)
    assert not corrections, corrections
    assert scheduler_phase(kube, namespace) == ("Running", 0)


def deployment_state(kube, ns) -> tuple[int, list[str]]:
    """(spec.replicas, live worker pods), read with the admin token straight from the apiserver."""
    scale = kube.rest().get(f"/apis/apps/v1/namespaces/{ns}/deployments/{WORKERS}/scale")
    return scale["spec"].get("replicas", 0), sorted(p["metadata"]["name"] for p in live_pods(kube, ns))


def test_api_faults_are_survived_without_blind_action(
    kube, namespace, kubelet_factory, fault_proxy, tmp_path
):
    """Every call of the scheduler's preload goes through the fault proxy (KUBERNETES_SERVICE_PORT)."""
    from distributed import Client

    proxy = fault_proxy
    kubelet = kubelet_factory(api_port=proxy.port, probe_period_scale=0.5)
    runs = tmp_path / "runs"
    runs.mkdir()
    options = ["--minimum", "1", "--maximum", "3", "--interval", "0.25s", "--target-duration", "1s",
               "--scale-down-delay", "0.5s"]  # fmt: skip
    # short per-request timeout, so a slow apiserver is a real client timeout in this test
    env = {"DASK_ADAPTIVE__KUBERNETES__REQUEST_TIMEOUT": "1500ms"}
    proxy.throttle(retry_after=1, path="selfsubjectaccessreviews", times=2)  # at start
    deploy_dask(kube, kubelet, namespace, options, nanny=False, env=env)
    address = scheduler_address(kube, kubelet, namespace)
    outage: dict[str, Any] = {}

    def faults_while_scaling_up():
        proxy.conflict(method="PATCH", path="/scale", times=2)
        proxy.server_error(500, method="GET", path="/pods", times=2)
        proxy.drop(method="GET", path="/scale", times=2)

    def faults_while_scaling_down():
        proxy.slow(3.0, method="GET", path="/pods", times=2)  # > request timeout: the client times out
        proxy.server_error(503, method="PATCH", path="/pods/", times=1)  # the deletion-cost mark
        proxy.throttle(retry_after=1, method="PATCH", path="/scale", times=1)
        proxy.drop(reset=True, method="GET", path="/pods", times=1)

    def rotate_token():
        old, new = kubelet.rotate_token(namespace, "dask-scheduler")
        assert old != new
        proxy.reject_token(old)  # from now on the old token is refused with 401

    def outage_starts():  # all 3 workers busy: nothing to do yet; the work ends inside the outage
        outage["rule"] = proxy.server_error(503, times=None, duration=8.0)
        outage["armed"] = time.monotonic()
        outage["before"] = deployment_state(kube, namespace)

    def idle_in_outage():  # the controller wants to scale down now, but cannot see the cluster
        time.sleep(max(0.0, outage["armed"] + 6.5 - time.monotonic()))
        outage["during"] = deployment_state(kube, namespace)
        outage["refused"] = outage["rule"].hits

    with PodWatch(kube, namespace).running() as watch, Client(address, timeout="30s") as client:
        cycles = Cycles(client, kube, namespace, runs, k=6, maximum=3)
        faults_while_scaling_up()
        cycles.run(timeout=120)
        cycles.run(timeout=120, arrived=faults_while_scaling_down)
        rotate_token()
        cycles.run(timeout=120)
        cycles.run(timeout=120, arrived=outage_starts, idle=idle_in_outage)
        lost = cycles.lost()
        events = adaptive_events(client)
        log = kubelet.log_text(namespace, "dask-scheduler")
        api_errors = scheduler_metric(kubelet, namespace, "dask_adaptive_api_errors")
    removed = watch.seen - {p["metadata"]["name"] for p in live_pods(kube, namespace)}
    counts = dict(proxy.counts)
    print(
        f"\nE2E faults: injected {counts}, outage refused {outage['refused']} requests, "
        f"{cycles.done} cycles, lost {lost}, pods removed {len(removed)}, api errors counted {api_errors:g}"
    )
    assert api_errors >= 1  # the outage was counted on /metrics (and logged), not hidden
    for kind in ("409", "429", "500", "503", "401", "delay", "drop"):
        assert counts.get(kind, 0) >= 1, f"fault {kind} never injected: {counts}"
    assert outage["refused"] >= 1 and outage["during"] == outage["before"]  # no action while blind
    assert cycles.done == 4 and lost == 0
    assert exactly_the_retired(removed, events, watch)
    assert not [line for line in log.splitlines() if any(c in line for c in CORRECTION_LINES)]
    assert scheduler_phase(kube, namespace) == ("Running", 0)
    replicas, pods = deployment_state(kube, namespace)
    assert replicas == len(pods) == 1


def test_rbac_denial_at_start_exits_the_scheduler_with_a_reason(kube, namespace, kubelet):
    deploy_dask(kube, kubelet, namespace, ["--minimum", "0", "--maximum", "2"], with_scale=False)

    def terminated():
        pod = kube.rest().get(f"/api/v1/namespaces/{namespace}/pods/dask-scheduler")
        for c in pod["status"].get("containerStatuses") or []:
            if "terminated" in (c.get("state") or {}):
                return pod["status"]["phase"], c["state"]["terminated"]["exitCode"]
        return None

    phase, code = wait_for(terminated, 90, message="the scheduler container to exit")
    log = kubelet.log_text(namespace, "dask-scheduler")
    assert (phase, code != 0) == ("Failed", True)
    reason = [line for line in log.splitlines() if "cannot start" in line]
    assert reason and "RBAC" in reason[-1] and "patch deployments/scale dask-workers" in reason[-1], log[
        -2000:
    ]
    replicas, pods = deployment_state(kube, namespace)
    assert (replicas, pods) == (0, [])  # nothing was touched


def unschedulable(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
        for c in pod["status"].get("conditions") or []
    )


@pytest.mark.kubelet_nodes(
    NodeSpec.pool("system-p", "system", cpu="4", memory="16Gi"),
    NodeSpec.pool("workers-p", "workers", worker=True, cpu="250m", memory="4Gi"),  # room for 2 workers
)
def test_pending_pods_are_cancelled_and_retired_pods_still_go_exactly(kube, namespace, kubelet, tmp_path):
    """Unschedulable Pending pods rank before everything in the ReplicaSet: the scale-down must cancel
    them and still remove exactly the retired running workers."""
    from distributed import Client

    runs = tmp_path / "runs"
    runs.mkdir()
    options = ["--minimum", "0", "--maximum", "4", "--interval", "0.5s", "--target-duration", "1s",
               "--scale-down-delay", "2s"]  # fmt: skip
    deploy_dask(kube, kubelet, namespace, options, nanny=False)
    address = scheduler_address(kube, kubelet, namespace)
    with PodWatch(kube, namespace).running() as watch, Client(address, timeout="30s") as client:
        futures = client.map(record_execution, range(16), folder=str(runs), delay=1.0, pure=False)
        pending = wait_for(
            lambda: [p["metadata"]["name"] for p in live_pods(kube, namespace) if unschedulable(p)],
            60,
            message="worker pods left Pending for lack of room",
        )
        results = client.gather(futures)
        wait_for(
            lambda: len(live_pods(kube, namespace)) == 1 and len(client.scheduler_info()["workers"]) == 1,
            90,
            message="scale-down to the one worker holding the results",
        )
        assert client.gather(futures) == results == [i * i for i in range(16)]
        events = adaptive_events(client)
        log = kubelet.log_text(namespace, "dask-scheduler")
    removed = watch.seen - {p["metadata"]["name"] for p in live_pods(kube, namespace)}
    direct = sum("deleting the named pods directly" in line for line in log.splitlines())
    print(f"\nE2E pending: {len(pending)} Pending, cancelled {sorted(events.get('cancelled', set()))}, "
          f"retired {sorted(events.get('retired', set()))}, direct deletes before /scale {direct}, "
          f"never-worker pods removed {len(removed - watch.ever_ready)}")  # fmt: skip
    assert set(pending) <= events.get("cancelled", set())  # the Pending pods were cancelled, not kept
    assert events.get("retired") and exactly_the_retired(removed, events, watch)
    assert executions(runs) == dict.fromkeys(range(16), 1)
    assert not [line for line in log.splitlines() if "instead of" in line]  # no wrong pick to correct
