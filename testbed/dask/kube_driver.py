"""The end-to-end driver shared by the data-safety tests (tests/dask_adaptive/test_kube_e2e.py) and the
`scale_down_safety` benchmark: deploy the Dask layer on the real control plane, watch its pods, drive
scale-up/scale-down cycles through the preload, and count what was lost.

Test code, not a test module: nothing here is collected by pytest.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dask_adaptive.backends.kubernetes.ranking import DELETION_COST, LOWEST_COST, pod_ready
from dask_adaptive.client_config import decode_secret
from infra.k8s.tls_mount import CLIENT_SECRET
from testbed.dask.kube_fixtures import SCHEDULER, WORKERS, DaskLayer, dask_layer, held_execution
from testbed.kube import stack_apply
from testbed.kube.control_plane import wait_for

# Short scale-up/scale-down cycles (`adaptive-dask:dask` keys): the data-safety tests and the benchmark.
FAST_CYCLES = {"minWorkers": 1, "maxWorkers": 3, "interval": 0.25, "targetDuration": 1, "scaleDownDelay": 0.5}


@contextlib.contextmanager
def polling(step: Callable[[], None], interval: float = 0.1, name: str = "poller") -> Iterator[None]:
    """Call `step()` every `interval` seconds in a daemon thread while the block runs; stopped (and
    joined) when it ends. An exception in `step` only skips that round: a poll that fails against a busy
    apiserver or scheduler is retried, it is not the test's failure."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                step()
            stop.wait(interval)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def apply(kube: Any, objects: list[tuple[str, dict[str, Any]]]) -> None:
    rest = kube.rest()
    for path, body in objects:
        stack_apply.post(rest, body, path)


_SELECTORS: dict[tuple[str, str], str] = {}


def worker_selector(kube: Any, ns: str) -> str:
    """The label selector of the worker Deployment in `ns`, as created (immutable, so read once)."""
    key = (kube.url, ns)
    if key not in _SELECTORS:
        dep = kube.rest().get(f"/apis/apps/v1/namespaces/{ns}/deployments/{WORKERS}")
        _SELECTORS[key] = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
    return _SELECTORS[key]


def live_pods(kube: Any, ns: str) -> list[dict[str, Any]]:
    items = kube.rest().items(f"/api/v1/namespaces/{ns}/pods", labelSelector=worker_selector(kube, ns))
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
        self.rest, self.ns, self.selector = kube.rest(), ns, worker_selector(kube, ns)
        self.marked: set[str] = set()
        self.ever_ready: set[str] = set()  # readiness = a connected worker accepting work
        self.seen: set[str] = set()

    def poll(self) -> None:
        for p in self.rest.items(f"/api/v1/namespaces/{self.ns}/pods", labelSelector=self.selector):
            name = p["metadata"]["name"]
            self.seen.add(name)
            if pod_ready(p):
                self.ever_ready.add(name)
            if (p["metadata"].get("annotations") or {}).get(DELETION_COST) == LOWEST_COST:
                self.marked.add(name)

    @contextlib.contextmanager
    def running(self) -> Iterator[PodWatch]:
        with polling(self.poll, name=f"pod-watch-{self.ns}"):
            yield self


def deploy_dask(
    kube: Any,
    ns: str,
    *,
    layer: DaskLayer | None = None,
    with_scale: bool = True,
    nanny: bool = True,
    env: dict[str, str] | None = None,
    **config: Any,
) -> DaskLayer:
    """The program's Dask layer in `ns` (testbed/dask/kube_fixtures.py; `config` are its
    `adaptive-dask:dask` keys, or a `layer` recorded already): RBAC, the preload ConfigMap, the scheduler
    Service (and whatever else the layer registers), the worker Deployment (replicas 0), then the
    scheduler Pod (`env`: extra scheduler environment)."""
    layer = layer or dask_layer(ns, **config)
    apply(kube, layer.rbac(with_scale=with_scale))
    apply(kube, [*layer.supporting(), layer.worker_deployment(nanny=nanny)])
    # 1.20 refuses a bare pod whose ServiceAccount has no token Secret yet (controllers would retry).
    kube.wait_service_account(ns, SCHEDULER)
    apply(kube, [layer.scheduler_pod(env=env)])
    return layer


def scheduler_address(kube: Any, kubelet: Any, ns: str) -> str:
    """The scheduler's address on this machine, `tls://` when the program's scheduler listens with TLS."""

    def ready() -> dict[str, Any] | None:
        pod = kube.rest().get(f"/api/v1/namespaces/{ns}/pods/{SCHEDULER}")
        return pod if pod_ready(pod) else None

    pod = wait_for(
        ready, 90, message=lambda: f"scheduler ready; log:\n{kubelet.log_text(ns, SCHEDULER)[-3000:]}"
    )
    (container,) = pod["spec"]["containers"]
    command = container["command"]
    protocol = command[command.index("--protocol") + 1] if "--protocol" in command else "tcp"
    return f"{protocol}://" + kubelet.service_address(ns, SCHEDULER, 8786)


def client_security(kube: Any, ns: str) -> Any:
    """A client's `Security` from the stack's client Secret, read through the API as a user would (the
    program's mutual TLS); None when the stack runs plaintext (no such Secret)."""
    from distributed.security import Security

    secret = kube.rest().get_or_none(f"/api/v1/namespaces/{ns}/secrets/{CLIENT_SECRET}")
    if secret is None:
        return None
    tls = decode_secret(secret.get("data"), f"{ns}/{CLIENT_SECRET}")  # client-config's own reading
    return Security(
        require_encryption=True,
        tls_ca_file=tls.ca,  # distributed takes PEM text as well as paths
        tls_client_cert=tls.cert,
        tls_client_key=tls.key,
    )


@contextlib.contextmanager
def stack_client(kube: Any, kubelet: Any, ns: str, *, timeout: str = "30s") -> Iterator[Any]:
    """A Dask `Client` of the stack's scheduler in `ns`, connected as a user would: the scheduler's
    address once it is Ready (`tls://` as shipped) and the stack's client certificate (mutual TLS);
    closed when the block ends. One shape for every test, so none connects differently by accident."""
    from distributed import Client

    address = scheduler_address(kube, kubelet, ns)
    with Client(address, security=client_security(kube, ns), timeout=timeout) as client:
        yield client


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
