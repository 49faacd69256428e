"""A test kubelet: plays the cluster's nodes and turns every pod bound to them into local processes.

Why: our machines have no container runtime, but the behaviour we must test (the preload scaling a
worker Deployment, the ReplicaSet choosing which pod to delete, graceful retirement racing SIGTERM)
needs pods that are real Dask processes whose readiness Kubernetes actually sees. So the control plane
is real (testbed/kube/control_plane.py) and only the node agent is ours.

One module per concern (what is faithful and what is not: tests/kube/README.md):
- kubelet.py (here): the `Kubelet` — registers nodes, the sync loop that starts/updates/finalises a
  runner per pod bound to its nodes, process-group bookkeeping, queries for tests;
- nodes.py: `NodeSpec`, `NodeGroup` (capacity, labels, taints; Node status);
- runner.py: `PodRunner` — one pod's containers, restarts, termination (preStop, SIGTERM, grace,
  SIGKILL, finalise) and status; containers.py: `Container` and the process-group helpers;
- pod_files.py: per-pod folders (volumes, ServiceAccount token), env, command line, working dir;
- rewriting.py: `$(VAR)` expansion and the one-pass rewriting of mount paths, ports, Service names;
- services.py: our kube-proxy (a loopback forwarder per Service port, to a Ready pod);
- probes.py: readiness/liveness/startup probes (httpGet, tcpSocket, exec);
- provisioner.py: `NodeProvisioner`, the cluster-autoscaler stand-in (its rules: ca_rules.py).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from testbed.kube.containers import group_alive, signal_group
from testbed.kube.control_plane import ControlPlane, log_tail, wait_for
from testbed.kube.nodes import NodeGroup, NodeSpec
from testbed.kube.pod_files import VENV_BIN
from testbed.kube.provisioner import NodeProvisioner
from testbed.kube.rest import ApiError
from testbed.kube.runner import PodRunner
from testbed.kube.services import Services

log = logging.getLogger("testbed.kube.kubelet")

# All kubelets of this process, so the pytest plugin can print their pod logs when a test fails.
ACTIVE: list[Kubelet] = []


class Kubelet:
    """Plays one or more nodes against a `ControlPlane`. Start with `start()`, stop with `stop()`.

    Parameters:
      nodes: NodeSpecs to register now (more with `add_node`).
      namespaces: only pods in these namespaces are run (None: all); keeps concurrent tests apart.
      api_port: the port given to pods as KUBERNETES_SERVICE_PORT (default: the apiserver's; set the
        fault proxy's port to put it between the preload and the apiserver). Read at each pod start.
      restart_backoff / max_backoff: container restart backoff (seconds, doubling).
      probe_period_scale: multiply probe periodSeconds and initialDelaySeconds (e.g. 0.2 for faster
        tests); default 1 (as written in the pod spec).
      extra_env: environment added to every container (before the pod's own env).
      node_groups: enable the node provisioner for these groups.
      venv_bin: the bin folder put first on a pod's PATH, where its `dask` and `python` resolve (default:
        the project's .venv/bin); a callable chooses per pod (it gets the pod object; None: the default).
      rewrite_config_files: also rewrite Service DNS names and mount paths in the text files of ConfigMap
        volumes, as in command lines (for programs configured by files, e.g. JupyterLab; off by default:
        the preload's ConfigMap is Python source that runs as shipped).
    """

    def __init__(
        self,
        kube: ControlPlane,
        nodes: Sequence[NodeSpec] = (),
        *,
        namespaces: Iterable[str] | None = None,
        logs_dir: Path | None = None,
        api_port: int | None = None,
        restart_backoff: float = 1.0,
        max_backoff: float = 10.0,
        probe_period_scale: float = 1.0,
        extra_env: dict[str, str] | None = None,
        node_groups: Sequence[NodeGroup] = (),
        sync_interval: float = 0.2,
        heartbeat_interval: float = 10.0,
        venv_bin: Path | Callable[[dict[str, Any]], Path | None] | None = None,
        rewrite_config_files: bool = False,
    ) -> None:
        self.kube = kube
        self.rest = kube.rest()
        self.namespaces = set(namespaces) if namespaces is not None else None
        self.logs_dir = logs_dir or (kube.logs_dir / f"kubelet-{uuid.uuid4().hex[:6]}")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.api_port = api_port or kube.port
        self.restart_backoff = restart_backoff
        self.max_backoff = max_backoff
        self.probe_period_scale = probe_period_scale
        self.extra_env = dict(extra_env or {})
        self.venv_bin = venv_bin
        self.rewrite_config_files = rewrite_config_files
        self.sync_interval = sync_interval
        self.heartbeat_interval = heartbeat_interval
        self.node_specs: dict[str, NodeSpec] = {}
        self._initial_nodes = list(nodes)
        self._runners: dict[str, PodRunner] = {}
        self._finished: list[PodRunner] = []
        self._lock = threading.RLock()
        # pgid -> [leader start, reaped at or None]: what leaked_process_groups() may call ours
        self._groups: dict[int, list[float | None]] = {}
        self._procs: list[subprocess.Popen[bytes]] = []
        self.services = Services(self)
        self.stopping = False
        self._thread: threading.Thread | None = None
        self.provisioner = NodeProvisioner(self, node_groups) if node_groups else None
        self.errors: list[str] = []

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> Kubelet:
        for spec in self._initial_nodes:
            self.add_node(spec)
        self._thread = threading.Thread(target=self._loop, name="kubelet-sync", daemon=True)
        self._thread.start()
        ACTIVE.append(self)
        return self

    def __enter__(self) -> Kubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Kill every process group started, finalise our pods, delete our Nodes, close forwarders."""
        self.stopping = True
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            runners = list(self._runners.values())
        for r in runners:
            r.wake.set()
        for r in runners:
            r.done.wait(15)
        for proc in list(self._procs):  # anything a runner did not finish (it timed out)
            self.reap(proc)
        # SIGKILL is asynchronous and orphans are reaped by PID 1: wait until every group is really gone.
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not self.leaked_process_groups(), 10, 0.05, message="process groups to exit")
        for r in runners:
            if not r.gone:
                with contextlib.suppress(Exception):
                    self.rest.delete(
                        f"/api/v1/namespaces/{r.namespace}/pods/{r.name}", {"gracePeriodSeconds": 0}
                    )
        for name in list(self.node_specs):
            with contextlib.suppress(Exception):
                self.rest.delete(f"/api/v1/nodes/{name}")
        self.services.close()
        if self in ACTIVE:
            ACTIVE.remove(self)

    def track(self, proc: subprocess.Popen[bytes]) -> None:
        """Remember a process we started as leader of its own process group."""
        with self._lock:
            self._groups[proc.pid] = [time.time(), None]
            self._procs.append(proc)

    def reap(self, proc: subprocess.Popen[bytes]) -> int:
        """SIGKILL what is left of `proc`'s process group while its (possibly zombie) leader still holds
        the group id, then reap the leader. Returns its exit status (negative: killed by that signal)."""
        if proc.returncode is None:
            signal_group(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        with self._lock:
            if proc.pid in self._groups and self._groups[proc.pid][1] is None:
                self._groups[proc.pid][1] = time.time()
            if proc in self._procs and proc.returncode is not None:
                self._procs.remove(proc)
        return proc.returncode if proc.returncode is not None else -signal.SIGKILL

    def leaked_process_groups(self) -> list[int]:
        """Process groups we started that still have a live (non-zombie) member; [] after stop().

        Only members created while our leader lived count: after it was reaped its PID (the group id)
        may be recycled by someone else's new group, which is not our leak.
        """
        with self._lock:
            groups = {pgid: (start, end) for pgid, (start, end) in self._groups.items()}
        return [pgid for pgid, (start, end) in groups.items() if group_alive(pgid, start or 0.0, end)]

    def venv_bin_for(self, pod: dict[str, Any]) -> Path:
        """The bin folder first on this pod's PATH (`venv_bin`, else the project's .venv/bin)."""
        chosen = self.venv_bin(pod) if callable(self.venv_bin) else self.venv_bin
        return chosen or VENV_BIN

    # -- nodes ---------------------------------------------------------------------------------------
    def add_node(self, spec: NodeSpec) -> None:
        self.rest.post("/api/v1/nodes", spec.manifest())
        self.rest.patch(f"/api/v1/nodes/{spec.name}/status", {"status": spec.status()})
        # The TaintNodesByCondition admission plugin puts node.kubernetes.io/not-ready:NoSchedule on every
        # new Node; the node-lifecycle controller (disabled: no real kubelet leases) would lift it once the
        # Ready condition is True. We lift it ourselves, keeping the node group's own taints.
        self.rest.patch(
            f"/api/v1/nodes/{spec.name}", {"spec": {"taints": [dict(t) for t in spec.taints] or None}}
        )
        self.node_specs[spec.name] = spec

    def remove_node(self, name: str) -> None:
        """Delete the Node object (its pods, if any, are force-deleted as PodGC would)."""
        self.node_specs.pop(name, None)
        self.rest.delete(f"/api/v1/nodes/{name}")
        with self._lock:
            for r in list(self._runners.values()):
                if r.pod["spec"].get("nodeName") == name:
                    r.terminate(0)

    def _heartbeat(self) -> None:
        for name, spec in list(self.node_specs.items()):
            try:
                self.rest.patch(f"/api/v1/nodes/{name}/status", {"status": spec.status()})
            except ApiError as exc:
                if exc.status == 404:
                    self.node_specs.pop(name, None)

    # -- sync loop -----------------------------------------------------------------------------------
    def _list_pods(self) -> list[dict[str, Any]]:
        if self.namespaces is None:
            return self.rest.items("/api/v1/pods")
        pods: list[dict[str, Any]] = []
        for ns in sorted(self.namespaces):
            pods.extend(self.rest.items(f"/api/v1/namespaces/{ns}/pods"))
        return pods

    def _loop(self) -> None:
        last_beat = time.monotonic()
        while not self.stopping:
            try:
                pods = self._list_pods()
                self._sync(pods)
                if self.provisioner is not None:
                    self.provisioner.step(pods)
                if time.monotonic() - last_beat > self.heartbeat_interval:
                    self._heartbeat()
                    last_beat = time.monotonic()
            except Exception as exc:  # the loop must survive apiserver hiccups
                self.errors.append(repr(exc))
                log.warning("kubelet sync failed: %r", exc)
            time.sleep(self.sync_interval)

    def _sync(self, pods: list[dict[str, Any]]) -> None:
        seen = set()
        with self._lock:
            for pod in pods:
                node = pod["spec"].get("nodeName")
                if node not in self.node_specs:
                    continue
                uid = pod["metadata"]["uid"]
                seen.add(uid)
                runner = self._runners.get(uid)
                if runner is None:
                    if pod["metadata"].get("deletionTimestamp"):
                        # Never started here: finalise at once.
                        with contextlib.suppress(ApiError):
                            self.rest.delete(
                                f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/{pod['metadata']['name']}",
                                {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}},
                            )
                        continue
                    if pod["status"].get("phase") in ("Succeeded", "Failed"):
                        continue
                    runner = PodRunner(self, pod)
                    self._runners[uid] = runner
                    runner.thread.start()
                else:
                    runner.update(pod)
            for uid, runner in list(self._runners.items()):
                if uid not in seen and not runner.terminating:
                    runner.terminate(runner.grace, gone=True)
                if runner.done.is_set():
                    self._finished.append(self._runners.pop(uid))

    # -- services ------------------------------------------------------------------------------------
    def service_address(self, namespace: str, service: str, port: int) -> str:
        """`127.0.0.1:<port>` reaching `service:port` from the test process (like a ClusterIP)."""
        return self.services.address(namespace, service, port)

    # -- queries for tests ---------------------------------------------------------------------------
    def runners(self) -> list[PodRunner]:
        with self._lock:
            return list(self._runners.values())

    def runner(self, namespace: str, name: str, timeout: float = 60.0) -> PodRunner:
        """The live runner of pod `namespace/name` (waits until the pod runs here)."""

        def find() -> PodRunner | None:
            for r in self.runners():
                if r.namespace == namespace and r.name == name and not r.terminating:
                    return r
            return None

        return wait_for(find, timeout, message=f"pod {namespace}/{name} running on the harness")

    def wait_pods(
        self,
        namespace: str,
        count: int,
        *,
        label_selector: str | None = None,
        ready: bool = True,
        timeout: float = 60.0,
    ) -> list[dict[str, Any]]:
        """Wait until exactly `count` live (not deleting) pods match, all Ready if `ready`; return them
        oldest first. The usual first wait of a test after creating or scaling a Deployment."""

        def check() -> list[dict[str, Any]] | None:
            pods = [
                p
                for p in self.rest.items(f"/api/v1/namespaces/{namespace}/pods", labelSelector=label_selector)
                if not p["metadata"].get("deletionTimestamp")
            ]
            if len(pods) != count or (ready and not all(pod_ready(p) for p in pods)):
                return None
            return sorted(pods, key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]))

        what = f"{count} {'Ready ' if ready else ''}pods in {namespace}" + (
            f" matching {label_selector}" if label_selector else ""
        )
        return wait_for(check, timeout, message=lambda: f"{what}; pod logs: {self.log_tails(10)}") or []

    def all_runners(self) -> list[PodRunner]:
        """Live and finished runners (finished ones keep their log paths and exit states)."""
        with self._lock:
            return list(self._finished) + list(self._runners.values())

    def local_port(self, namespace: str, pod: str, container_port: int) -> int:
        port = self.runner(namespace, pod).ports.get(container_port)
        if port is None:
            raise KeyError(f"pod {namespace}/{pod} declares no containerPort {container_port}")
        return port

    def log_text(self, namespace: str, pod: str, container: str | None = None) -> str:
        for r in reversed(self.all_runners()):
            if r.namespace == namespace and r.name == pod:
                c = r.container(container)
                return c.log_path.read_text(errors="replace") if c.log_path.exists() else ""
        raise KeyError(f"no pod {namespace}/{pod} ran on this harness")

    def rotate_token(self, namespace: str, pod: str) -> tuple[str, str]:
        """Replace the pod's SA token file with a new real token; returns (old, new)."""
        return self.runner(namespace, pod).rotate_token()

    def log_tails(self, lines: int = 20) -> dict[str, str]:
        out = {}
        for r in self.all_runners():
            for c in r.containers:
                head = f"[waiting: {c.waiting_reason}: {c.waiting_message}]\n" if c.waiting_reason else ""
                body = log_tail(c.log_path, lines) if c.log_path.exists() else "<no output yet>"
                out[f"{r.namespace}/{r.name}/{c.name}"] = head + body
        return out


def pod_ready(pod: dict[str, Any] | None) -> bool:
    if not pod:
        return False
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])
