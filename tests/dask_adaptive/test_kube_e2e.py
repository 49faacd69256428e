"""The kubernetes backend and the preload against the REAL Kubernetes 1.20.2 control plane.

Pods are real local processes run by the kubelet harness (tests/kube); the apiserver, the ReplicaSet
controller, kube-scheduler and RBAC are the real ones. The scheduler's service account gets exactly the
Role the Pulumi program grants. Kubernetes 1.20 ignores `pod-deletion-cost`, so here the NotReady signal
and verify-and-correct must make the retired pods the ones that go.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dask_adaptive.backends.base import BackendUnavailable, RemovalReport
from dask_adaptive.backends.kubernetes.backend import KubernetesBackend
from dask_adaptive.backends.kubernetes.ranking import plan_removal
from testbed.dask.kube_driver import (
    FAST_CYCLES,
    Cycles,
    PodWatch,
    adaptive_events,
    apply,
    deploy_dask,
    executions,
    live_pods,
    ready_names,
    stack_client,
)
from testbed.dask.kube_fixtures import (
    SCHEDULER,
    WORKERS,
    DaskLayer,
    dask_layer,
    held_execution,
    write_service_account,
)
from testbed.kube.control_plane import wait_for
from testbed.kube.nodes import NodeSpec, parse_quantity

pytestmark = pytest.mark.kube

SLEEPER = ["python", "-c", "import time; time.sleep(3600)"]
# Ready until a file `retired` exists in the pod's own /tmp (the shipped emptyDir; the harness gives each
# pod its own folder for it): the stand-in for a retired worker's 503.
RETIRED_FLAG = {
    "command": ["python", "-c",
                "import os, sys; sys.exit(os.path.exists(os.path.join(os.environ['FLAG_DIR'], 'retired')))"]
}  # fmt: skip


def flag_probe(layer: DaskLayer) -> dict[str, Any]:
    """The shipped worker readiness probe (period, timeout, thresholds) with the flag check as action."""
    _, dep = layer.worker_deployment()
    probe = dict(dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"])
    del probe["httpGet"]
    return {**probe, "exec": RETIRED_FLAG}


def sleeper_workers(layer: DaskLayer) -> tuple[str, dict[str, Any]]:
    """The program's worker Deployment running sleepers whose readiness a test flips with a flag file."""
    return layer.worker_deployment(command=SLEEPER, readiness=flag_probe(layer), env={"FLAG_DIR": "/tmp"})


@pytest.fixture
def sleepers(kube, namespace, kubelet, tmp_path):
    """A worker Deployment of plain sleeper processes whose readiness a test flips with `retire(pod)`
    (as `kubectl exec <pod> -- touch /tmp/retired` would), and a backend in this process using the
    scheduler's real ServiceAccount token and Role."""
    layer = dask_layer(namespace)
    apply(kube, [*layer.rbac(), *layer.supporting(), sleeper_workers(layer)])
    sa = write_service_account(
        tmp_path / "sa", kube.service_account_token(namespace, SCHEDULER), namespace, Path(kube.ca_file)
    )

    def retire(pod: str) -> None:
        (kubelet.runner(namespace, pod).files.volume_dirs["tmp"] / "retired").touch()

    return retire, sa


def make_backend(kube, namespace, sa, cls=KubernetesBackend, **kw):
    kw = {"not_ready_timeout": 20.0, "settle_timeout": 20.0, "poll_interval": 0.2, **kw}
    selector = dask_layer(namespace).selector
    return cls(namespace, WORKERS, selector, service_account_dir=str(sa), api_url=kube.url, **kw)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 150))


def test_backend_removes_exactly_the_notready_pods_on_a_real_replicaset(kube, namespace, sleepers):
    retire, sa = sleepers
    backend = make_backend(kube, namespace, sa)

    async def scenario():
        await backend.start()
        await backend.scale_up(4)
        names = await asyncio.to_thread(
            wait_for, lambda: ready_names(kube, namespace, 4), 90, 0.2, "4 ready worker pods"
        )
        victims = names[:2]  # the oldest: a 1.20 ReplicaSet left alone removes the newest
        for v in victims:
            retire(v)  # the "retired worker" now fails its readiness probe
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

    async def wait_until_safe(self, names):
        pods = await self.list_pods()
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
    layer = dask_layer(namespace)
    apply(kube, [*layer.rbac(with_scale=False), *layer.supporting(), layer.worker_deployment()])
    sa = write_service_account(
        tmp_path / "sa", kube.service_account_token(namespace, SCHEDULER), namespace, Path(kube.ca_file)
    )
    backend = make_backend(kube, namespace, sa)
    with pytest.raises(BackendUnavailable) as err:
        run(backend.start())
    assert f"may not get deployments/scale {WORKERS}; patch deployments/scale {WORKERS}" in str(err.value)


# -- the preload, loaded exactly as in production, scaling real dask workers ------------------------


def scheduler_phase(kube, ns) -> tuple[str, int]:
    pod = kube.rest().get(f"/api/v1/namespaces/{ns}/pods/dask-scheduler")
    restarts = sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses") or [])
    return pod["status"].get("phase", ""), restarts


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
    from distributed import Event

    runs = tmp_path / "runs"
    runs.mkdir()
    deploy_dask(kube, namespace, minWorkers=0, maxWorkers=4, interval=0.5, targetDuration=1, scaleDownDelay=3)
    peak = 0
    with (
        PodWatch(kube, namespace).running() as watch,
        stack_client(kube, kubelet, namespace) as client,
    ):
        # The 24 tasks hold until 3 workers are connected: the queue keeps the target up, so the preload
        # must scale up, and a slow pod start under CPU load cannot let one worker finish the work first.
        gate = Event(f"updown-{time.time_ns()}", client=client)
        futures = client.map(
            held_execution, range(24), folder=str(runs), event=gate.name, delay=1.0, pure=False
        )
        wait_for(lambda: len(client.scheduler_info()["workers"]) >= 3, 120, message="3 workers for the work")
        gate.set()
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
        log = kubelet.log_text(namespace, SCHEDULER)
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

    port = kubelet.local_port(ns, SCHEDULER, 8787)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "_total "):
            return float(line.split()[-1])
    return 0.0


CYCLES = 20


def test_no_result_lost_across_20_scale_down_cycles(kube, namespace, kubelet_factory, tmp_path):
    kubelet = kubelet_factory(probe_period_scale=0.5)
    runs = tmp_path / "runs"
    runs.mkdir()
    # --no-nanny halves a worker's start-up (one process); retirement is the same as with a nanny
    deploy_dask(kube, namespace, nanny=False, **FAST_CYCLES)
    with (
        PodWatch(kube, namespace).running() as watch,
        stack_client(kube, kubelet, namespace) as client,
    ):
        started = time.monotonic()
        cycles = Cycles(client, kube, namespace, runs, k=6, maximum=3)
        retired_per_cycle = []
        for _ in range(CYCLES):
            before = len(adaptive_events(client).get("retired", set()))
            cycles.run()
            retired_per_cycle.append(len(adaptive_events(client).get("retired", set())) - before)
        lost = cycles.lost()
        events = adaptive_events(client)
        log = kubelet.log_text(namespace, SCHEDULER)
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
    proxy = fault_proxy
    kubelet = kubelet_factory(api_port=proxy.port, probe_period_scale=0.5)
    runs = tmp_path / "runs"
    runs.mkdir()
    # short per-request timeout, so a slow apiserver is a real client timeout in this test
    env = {"DASK_ADAPTIVE__KUBERNETES__REQUEST_TIMEOUT": "1500ms"}
    proxy.throttle(retry_after=1, path="selfsubjectaccessreviews", times=2)  # at start
    deploy_dask(kube, namespace, nanny=False, env=env, **FAST_CYCLES)
    outage: dict[str, Any] = {}

    # The preload lists the pods once and then watches them (backends/kubernetes/watch.py), so a pod GET
    # happens when its watch breaks: each phase cuts the open connections (an apiserver restart does)
    # right after arming, and the relist and re-watch meet the faults armed on GET /pods.
    def faults_while_scaling_up():
        proxy.conflict(method="PATCH", path="/scale", times=2)
        proxy.server_error(500, method="GET", path="/pods", times=2)
        proxy.drop(method="GET", path="/scale", times=2)
        proxy.cut()

    def faults_while_scaling_down():
        proxy.slow(3.0, method="GET", path="/pods", times=2)  # > request timeout: the client times out
        proxy.server_error(503, method="PATCH", path="/pods/", times=1)  # the deletion-cost mark
        proxy.throttle(retry_after=1, method="PATCH", path="/scale", times=1)
        proxy.drop(reset=True, method="GET", path="/pods", times=1)
        proxy.cut()

    def rotate_token():
        old, new = kubelet.rotate_token(namespace, SCHEDULER)
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

    with (
        PodWatch(kube, namespace).running() as watch,
        stack_client(kube, kubelet, namespace) as client,
    ):
        cycles = Cycles(client, kube, namespace, runs, k=6, maximum=3)
        faults_while_scaling_up()
        cycles.run(timeout=120)
        cycles.run(timeout=120, arrived=faults_while_scaling_down)
        rotate_token()
        cycles.run(timeout=120)
        cycles.run(timeout=120, arrived=outage_starts, idle=idle_in_outage)
        lost = cycles.lost()
        events = adaptive_events(client)
        log = kubelet.log_text(namespace, SCHEDULER)
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
    deploy_dask(kube, namespace, minWorkers=0, maxWorkers=2, with_scale=False)

    def terminated():
        pod = kube.rest().get(f"/api/v1/namespaces/{namespace}/pods/dask-scheduler")
        for c in pod["status"].get("containerStatuses") or []:
            if "terminated" in (c.get("state") or {}):
                return pod["status"]["phase"], c["state"]["terminated"]["exitCode"]
        return None

    phase, code = wait_for(terminated, 90, message="the scheduler container to exit")
    log = kubelet.log_text(namespace, SCHEDULER)
    assert (phase, code != 0) == ("Failed", True)
    reason = [line for line in log.splitlines() if "cannot start" in line]
    assert reason and "RBAC" in reason[-1] and f"patch deployments/scale {WORKERS}" in reason[-1], log[-2000:]
    replicas, pods = deployment_state(kube, namespace)
    assert (replicas, pods) == (0, [])  # nothing was touched


def unschedulable(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
        for c in pod["status"].get("conditions") or []
    )


def test_pending_pods_are_cancelled_and_retired_pods_still_go_exactly(
    kube, namespace, kubelet_factory, tmp_path
):
    """Unschedulable Pending pods rank before everything in the ReplicaSet: the scale-down must cancel
    them and still remove exactly the retired running workers."""
    from distributed import Event

    runs = tmp_path / "runs"
    runs.mkdir()
    layer = dask_layer(
        namespace, minWorkers=0, maxWorkers=4, interval=0.5, targetDuration=1, scaleDownDelay=2
    )
    # a worker node with room for exactly 2 worker pods as the program sizes them
    two = {k: str(2 * parse_quantity(v)) for k, v in layer.worker_requests().items()}
    kubelet = kubelet_factory(
        [
            NodeSpec.pool("system-p", "system", cpu="4", memory="16Gi"),
            NodeSpec.pool("workers-p", "workers", worker=True, cpu=two["cpu"], memory=two["memory"]),
        ]
    )
    deploy_dask(kube, namespace, layer=layer, nanny=False)
    with (
        PodWatch(kube, namespace).running() as watch,
        stack_client(kube, kubelet, namespace) as client,
    ):
        gate = Event(f"pending-{time.time_ns()}", client=client)
        futures = client.map(
            held_execution, range(16), folder=str(runs), event=gate.name, delay=1.0, pure=False
        )
        pending = wait_for(
            lambda: [p["metadata"]["name"] for p in live_pods(kube, namespace) if unschedulable(p)],
            60,
            message="worker pods left Pending for lack of room",
        )
        # The work (1 s tasks) starts once both pods that fit run connected workers. Left to race, a
        # worker slow to start (CPU load) could still be starting when the work ends: the scale-down
        # would then cancel it (no worker yet) and retire nobody, or cancel a scheduled pod and let a
        # Pending one start - the test would not be testing the case it names.
        wait_for(lambda: len(client.scheduler_info()["workers"]) == 2, 120, message="the 2 workers that fit")
        gate.set()
        results = client.gather(futures)
        wait_for(
            lambda: len(live_pods(kube, namespace)) == 1 and len(client.scheduler_info()["workers"]) == 1,
            90,
            message="scale-down to the one worker holding the results",
        )
        assert client.gather(futures) == results == [i * i for i in range(16)]
        events = adaptive_events(client)
        log = kubelet.log_text(namespace, SCHEDULER)
    removed = watch.seen - {p["metadata"]["name"] for p in live_pods(kube, namespace)}
    direct = sum("deleting the named pods directly" in line for line in log.splitlines())
    print(f"\nE2E pending: {len(pending)} Pending, cancelled {sorted(events.get('cancelled', set()))}, "
          f"retired {sorted(events.get('retired', set()))}, direct deletes before /scale {direct}, "
          f"never-worker pods removed {len(removed - watch.ever_ready)}")  # fmt: skip
    assert set(pending) <= events.get("cancelled", set())  # the Pending pods were cancelled, not kept
    assert events.get("retired") and exactly_the_retired(removed, events, watch)
    assert executions(runs) == dict.fromkeys(range(16), 1)
    assert not [line for line in log.splitlines() if "instead of" in line]  # no wrong pick to correct
