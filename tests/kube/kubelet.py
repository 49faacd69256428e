"""A test kubelet: plays the cluster's nodes and turns every pod bound to them into local processes.

Why: our machines have no container runtime, but the behaviour we must test (the preload scaling a
worker Deployment, the ReplicaSet choosing which pod to delete, graceful retirement racing SIGTERM)
needs pods that are real Dask processes whose readiness Kubernetes actually sees. So the control plane
is real (tests/kube/control_plane.py) and only the node agent is ours.

What is faithful and what is not (documented in tests/kube/README.md):
- The container image is ignored; the command (or, with no command, the args) runs on this machine
  with `.venv/bin` first on PATH, so `dask`, `python` resolve to the project's venv.
- Every declared containerPort gets its own free local port, and occurrences of the port in args, env
  and probes are rewritten; pod IP is 127.0.0.1 for every pod.
- Volume mountPaths (ConfigMap, Secret, emptyDir, projected, downwardAPI) become per-pod folders and
  every occurrence of a mountPath in args/env/workingDir is rewritten to the folder.
- The ServiceAccount files (a real TokenRequest token bound to the pod, ca.crt, namespace) are written
  to a per-pod folder given in DASK_ADAPTIVE__KUBERNETES__SERVICE_ACCOUNT_DIR; the standard mount path
  /var/run/secrets/kubernetes.io/serviceaccount is rewritten to it too.
- Service DNS names with a port become 127.0.0.1:<port of a local TCP forwarder> that connects to a
  Ready pod matching the Service's selector (what kube-proxy does for a ClusterIP).
- Readiness/liveness probes (httpGet, tcpSocket, exec) really run against the process.
- Deletion: preStop exec hook, SIGTERM to the process group, grace period, SIGKILL, then the pod object
  is finalised (deleted with grace 0), as a kubelet does.
- restartPolicy is honoured with an exponential backoff (faster than Kubernetes' 10 s..5 min so tests
  stay short; configurable).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.kube.control_plane import ControlPlane, die_with_parent, free_port, log_tail, wait_for
from tests.kube.rest import ApiError, Rest

log = logging.getLogger("tests.kube.kubelet")

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
POOL_LABEL = "adaptive-dask/pool"
WORKER_TAINT = {"key": "adaptive-dask/dask-worker", "value": "true", "effect": "NoSchedule"}
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
SA_DIR_ENV = "DASK_ADAPTIVE__KUBERNETES__SERVICE_ACCOUNT_DIR"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# All kubelets of this process, so the pytest plugin can print their pod logs when a test fails.
ACTIVE: list[Kubelet] = []


def exited(proc: subprocess.Popen[bytes]) -> bool:
    """Has the process exited? Checked WITHOUT reaping it.

    Why: an unreaped (zombie) leader keeps its PID — which is also its process group id — reserved,
    so signalling the group can never hit a stranger that got the PID recycled (pid_max is 32768 here
    and other engineers' suites run alongside). We reap only in `reap()`, after the last group signal.
    """
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process group led by `proc`, only while the leader is unreaped (the id is ours)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_quantity(q: str | int | float) -> Decimal:
    from kubernetes.utils.quantity import parse_quantity as pq

    return Decimal(pq(q))


# ---------------------------------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------------------------------
@dataclass
class NodeSpec:
    """A node to register: capacity, labels and taints (our node groups: POOL_LABEL and WORKER_TAINT)."""

    name: str
    cpu: str = "4"
    memory: str = "16Gi"
    pods: int = 110
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def pool(cls, name: str, group: str, *, worker: bool = False, **kw: Any) -> NodeSpec:
        """A node of node group `group`; `worker=True` adds the dask-worker NoSchedule taint."""
        labels = {POOL_LABEL: group, **kw.pop("labels", {})}
        taints = [dict(WORKER_TAINT)] if worker else []
        return cls(name=name, labels=labels, taints=taints + list(kw.pop("taints", [])), **kw)

    def manifest(self) -> dict[str, Any]:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": "test.harness",
            **self.labels,
        }
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels},
            "spec": {"taints": [dict(t) for t in self.taints]} if self.taints else {},
        }

    def status(self) -> dict[str, Any]:
        cap = {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods), "ephemeral-storage": "100Gi"}
        ts = now_iso()
        since = self.__dict__.setdefault("_since", ts)  # conditions keep their first transition time
        conditions = [
            {"type": t, "status": "False", "reason": f"Kubelet{r}", "lastHeartbeatTime": ts,
             "lastTransitionTime": since, "message": "test harness"}
            for t, r in (("MemoryPressure", "HasSufficientMemory"), ("DiskPressure", "HasNoDiskPressure"),
                         ("PIDPressure", "HasSufficientPID"))
        ]  # fmt: skip
        conditions.append(
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": ts,
             "lastTransitionTime": since, "message": "test harness kubelet is posting ready status"}
        )  # fmt: skip
        return {
            "capacity": cap,
            "allocatable": cap,
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.name},
            ],
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": os.uname().release,
                "osImage": "tests/kube harness", "containerRuntimeVersion": "local-process://0",
                "kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2", "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }  # fmt: skip


@dataclass
class NodeGroup:
    """A node group for the provisioner (a stand-in for cluster-autoscaler + an Auto Scaling Group)."""

    group: str
    worker: bool = True
    cpu: str = "4"
    memory: str = "16Gi"
    pods: int = 110
    min_size: int = 0
    max_size: int = 3
    scale_up_delay: float = 1.0
    scale_down_delay: float = 5.0

    def spec(self, index: int) -> NodeSpec:
        return NodeSpec.pool(
            f"{self.group}-{uuid.uuid4().hex[:5]}-{index}",
            self.group,
            worker=self.worker,
            cpu=self.cpu,
            memory=self.memory,
            pods=self.pods,
        )


# ---------------------------------------------------------------------------------------------------
# String rewriting (what makes cluster-shaped command lines work on one machine)
# ---------------------------------------------------------------------------------------------------
_CLUSTER_DNS = re.compile(
    r"(?<![\w.\-])[a-z0-9]([a-z0-9\-]*[a-z0-9])?\.[a-z0-9\-]+\.svc(\.cluster\.local)?(?![\w\-])"
)
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand_vars(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names replaced, unknown kept verbatim, `$$` → `$`."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR_REF.sub(sub, text)


@dataclass
class Rewriter:
    """Ordered (regex, literal replacement) rules applied in ONE left-to-right pass.

    One pass matters: a mountPath `/tmp` must not rewrite the `/tmp/...` folder that `/opt/x` was just
    rewritten to. At each position the first rule (in order added) that matches wins.
    """

    rules: list[tuple[str, str]] = field(default_factory=list)
    _compiled: re.Pattern[str] | None = None

    def add(self, pattern: str, repl: str) -> None:
        self.rules.append((pattern, repl))
        self._compiled = None

    def extend(self, other: Rewriter | ServiceRules) -> None:
        for pattern, repl in other.rules:
            self.add(pattern, repl)

    def path(self, mount_path: str, folder: str) -> None:
        mp = mount_path.rstrip("/") or "/"
        self.add(re.escape(mp) + r"(?=$|[/:;,\s'\"=])", folder)

    def __call__(self, text: str) -> str:
        if not self.rules:
            return text
        if self._compiled is None:
            self._compiled = re.compile("|".join(f"(?P<r{i}>{p})" for i, (p, _) in enumerate(self.rules)))

        def repl(m: re.Match[str]) -> str:
            name = next(k for k, v in m.groupdict().items() if v is not None)
            return self.rules[int(name[1:])][1]

        return self._compiled.sub(repl, text)


def port_rules(ports: dict[int, int]) -> Rewriter:
    """Rewrite declared container ports: `8786` as a whole word after `=`/`:`/start, e.g. `--port 8786`,
    `--port=8786`, `:8787`, `tcp://0.0.0.0:8786`, `http://localhost:8787/health`."""
    rw = Rewriter()
    for declared, local in sorted(ports.items(), key=lambda kv: -len(str(kv[0]))):
        rw.add(rf"(?:(?<=^)|(?<=[=:\s])){declared}(?=$|[/\s,;\"'])", str(local))
    return rw


# ---------------------------------------------------------------------------------------------------
# Service forwarding (our kube-proxy)
# ---------------------------------------------------------------------------------------------------
class ServiceForwarder:
    """A loopback TCP listener standing for one Service port; each connection goes to a Ready pod.

    Resolving at connect time (not at pod start) means a client started before its server, or a server
    restarted on another local port, behaves as with a ClusterIP: connections fail until a backend is
    Ready, then succeed.
    """

    def __init__(
        self, kubelet: Kubelet, namespace: str, service: dict[str, Any], port: dict[str, Any]
    ) -> None:
        self.kubelet = kubelet
        self.namespace = namespace
        self.service_name = service["metadata"]["name"]
        self.selector: dict[str, str] = dict(service["spec"].get("selector") or {})
        self.port_spec = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port: int = self.sock.getsockname()[1]
        self._rr = 0
        self._closed = False
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(
            target=self._accept, name=f"svc-{self.service_name}-{port['port']}", daemon=True
        ).start()

    def backend(self) -> int | None:
        """Local port of a Ready pod matching the selector (round robin), or None."""
        target = self.port_spec.get("targetPort", self.port_spec["port"])
        candidates = []
        for runner in self.kubelet.runners():
            labels = runner.pod["metadata"].get("labels") or {}
            if (
                runner.namespace != self.namespace
                or not self.selector
                or not runner.ready
                or runner.terminating
            ):
                continue
            if all(labels.get(k) == v for k, v in self.selector.items()):
                local = runner.resolve_port(target)
                if local:
                    candidates.append(local)
        if not candidates:
            return None
        self._rr += 1
        return sorted(candidates)[self._rr % len(candidates)]

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        port = self.backend()
        if port is None:
            client.close()  # like a ClusterIP with no ready endpoints: the connection fails
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._conns.update((client, upstream))
        t = threading.Thread(target=self._pipe, args=(upstream, client), daemon=True)
        t.start()
        self._pipe(client, upstream)
        t.join()
        with self._lock:
            self._conns.difference_update((client, upstream))
        for s in (client, upstream):
            with contextlib.suppress(OSError):
                s.close()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.close()
        with self._lock:
            for s in list(self._conns):
                with contextlib.suppress(OSError):
                    s.close()


# ---------------------------------------------------------------------------------------------------
# Containers and pods
# ---------------------------------------------------------------------------------------------------
@dataclass
class ProbeState:
    spec: dict[str, Any] | None
    started: float = 0.0
    next_at: float = 0.0
    successes: int = 0
    failures: int = 0
    ok: bool = False


@dataclass
class Container:
    """One container of a pod: its resolved command, env and process, restart and probe state."""

    spec: dict[str, Any]
    log_path: Path
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    proc: subprocess.Popen[bytes] | None = None
    started_at: str | None = None
    started_mono: float = 0.0
    restart_count: int = 0
    last_terminated: dict[str, Any] | None = None
    waiting_reason: str | None = "ContainerCreating"
    waiting_message: str = ""
    next_start: float = 0.0
    backoff: float = 0.0
    readiness: ProbeState = field(default_factory=lambda: ProbeState(None))
    liveness: ProbeState = field(default_factory=lambda: ProbeState(None))
    startup: ProbeState = field(default_factory=lambda: ProbeState(None))
    finished: bool = False  # exited and not to be restarted (restartPolicy Never/OnFailure success)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def running(self) -> bool:
        return self.proc is not None and not exited(self.proc)

    def ready(self) -> bool:
        if not self.running():
            return False
        if self.startup.spec and not self.startup.ok:
            return False
        return self.readiness.ok if self.readiness.spec else True

    def started(self) -> bool:
        """Kubernetes' `started`: running and past its startupProbe (if any)."""
        return self.running() and (not self.startup.spec or self.startup.ok)


class PodRunner:
    """Runs one pod: materialises files, starts containers, probes, reports status, terminates."""

    def __init__(self, kubelet: Kubelet, pod: dict[str, Any]) -> None:
        self.kubelet = kubelet
        self.pod = pod
        meta = pod["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.dir = kubelet.logs_dir / "pods" / f"{self.namespace}.{self.name}.{self.uid[:8]}"
        self.sa_dir = self.dir / "serviceaccount"
        self.ports: dict[int, int] = {}
        self.named_ports: dict[str, int] = {}
        self.containers: list[Container] = []
        self.init_done = False
        self.start_time = now_iso()
        self.terminating = False
        self.grace: float = float(pod["spec"].get("terminationGracePeriodSeconds", 30))
        self.gone = False  # the pod object no longer exists (force-deleted)
        self.done = threading.Event()
        self.wake = threading.Event()
        self.token: str = ""
        self.token_history: list[str] = []
        self.ready = False
        self._last_status: dict[str, Any] | None = None
        self._transitions: dict[str, tuple[str, str]] = {}
        self.prepare_error = ""
        self.thread = threading.Thread(
            target=self._run, name=f"pod-{self.namespace}/{self.name}", daemon=True
        )

    # -- public helpers ------------------------------------------------------------------------------
    def container(self, name: str | None = None) -> Container:
        for c in self.containers:
            if name is None or c.name == name:
                return c
        raise KeyError(f"no container {name!r} in pod {self.namespace}/{self.name}")

    def resolve_port(self, port: int | str) -> int | None:
        """Local port for a declared port number or name (undeclared numbers pass through)."""
        if isinstance(port, str) and not port.isdigit():
            declared = self.named_ports.get(port)
            return self.ports.get(declared) if declared else None
        return self.ports.get(int(port), int(port))

    def rotate_token(self) -> tuple[str, str]:
        """Write a fresh token to the SA folder, as the kubelet does before expiry; returns (old, new)."""
        old = self.token
        self._write_token()
        return old, self.token

    # -- lifecycle -----------------------------------------------------------------------------------
    def update(self, pod: dict[str, Any]) -> None:
        """Called by the sync loop with the latest pod object."""
        self.pod = pod
        meta = pod["metadata"]
        if meta.get("deletionTimestamp") and not self.terminating:
            grace = meta.get("deletionGracePeriodSeconds")
            self.terminate(float(grace) if grace is not None else self.grace)

    def terminate(self, grace: float, gone: bool = False) -> None:
        self.grace = grace
        self.gone = self.gone or gone
        self.terminating = True
        self.wake.set()

    def _run(self) -> None:
        try:
            self._main()
        except Exception as exc:  # a harness bug: recorded so the failing test's report shows it
            log.exception("pod runner %s/%s crashed", self.namespace, self.name)
            self.kubelet.errors.append(f"pod runner {self.namespace}/{self.name} crashed: {exc!r}")
        finally:
            self._kill_all(0)
            self.done.set()

    def _main(self) -> None:
        spec = self.pod["spec"]
        self.dir.mkdir(parents=True, exist_ok=True)
        self.containers = [Container(c, self.dir / f"{c['name']}.log") for c in spec.get("containers", [])]
        for c in spec.get("containers", []):
            for p in c.get("ports") or []:
                declared = int(p["containerPort"])
                if declared not in self.ports:
                    self.ports[declared] = free_port()
                if p.get("name"):
                    self.named_ports[p["name"]] = declared
        self._report()
        while not self.terminating and not self.kubelet.stopping:
            try:
                self._prepare()
                self.prepare_error = ""
                break
            except Exception as exc:
                self.prepare_error = f"{type(exc).__name__}: {exc}"
                for c in self.containers:
                    c.waiting_reason, c.waiting_message = "CreateContainerConfigError", self.prepare_error
                self._report()
                self.wake.wait(1.0)
                self.wake.clear()
        if not self.terminating and not self.kubelet.stopping:
            self._run_init_containers()
        while not self.terminating and not self.kubelet.stopping:
            self._step()
            self._report()
            self.wake.wait(0.1)
            self.wake.clear()
        if self.kubelet.stopping and not self.terminating:
            return  # harness shutdown: _run's finally kills everything at once
        self._shutdown()

    def _step(self) -> None:
        now = time.monotonic()
        policy = self.pod["spec"].get("restartPolicy", "Always")
        for c in self.containers:
            if c.finished:
                continue
            if c.proc is not None and exited(c.proc):
                self._on_exit(c, policy)
            if c.proc is None and now >= c.next_start and not c.finished:
                self._start(c)
            if c.running():
                if c.startup.spec and not c.startup.ok:
                    self._probe(c, c.startup, now, kind="startup")  # the others wait for it
                else:
                    self._probe(c, c.readiness, now, kind="readiness")
                    self._probe(c, c.liveness, now, kind="liveness")
        self.ready = bool(self.containers) and all(c.ready() for c in self.containers)

    def _on_exit(self, c: Container, policy: str) -> None:
        assert c.proc is not None
        code = self.kubelet.reap(c.proc)  # also kills what the exited leader left in its group
        code = 128 - code if code < 0 else code  # signals as a runtime reports them (137 for SIGKILL)
        ran = time.monotonic() - c.started_mono
        c.last_terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": c.started_at,
            "finishedAt": now_iso(),
            "containerID": f"local://{c.proc.pid}",
        }
        c.proc = None
        c.readiness = ProbeState(c.spec.get("readinessProbe"))
        c.liveness = ProbeState(c.spec.get("livenessProbe"))
        c.startup = ProbeState(c.spec.get("startupProbe"))
        if policy == "Never" or (policy == "OnFailure" and code == 0):
            c.finished = True
            c.waiting_reason = None
            return
        k = self.kubelet
        c.backoff = k.restart_backoff if (c.backoff == 0 or ran > 60) else min(c.backoff * 2, k.max_backoff)
        c.next_start = time.monotonic() + c.backoff
        c.waiting_reason, c.waiting_message = (
            "CrashLoopBackOff",
            f"back-off {c.backoff:.1f}s restarting failed container",
        )
        c.restart_count += 1

    def _start(self, c: Container, wait: bool = False) -> int | None:
        """Start the container's process in its own process group; with `wait`, run it to completion."""
        if not c.argv:
            c.waiting_reason, c.waiting_message = (
                "RunContainerError",
                "no command or args (image entrypoints are ignored)",
            )
            c.next_start = time.monotonic() + max(self.kubelet.restart_backoff, 1.0)
            return None
        with c.log_path.open("ab") as fh:
            fh.write(f"=== {now_iso()} start (restart {c.restart_count}): {c.argv}\n".encode())
            fh.flush()
            try:
                c.proc = subprocess.Popen(
                    die_with_parent(c.argv), env=c.env, cwd=c.cwd, stdout=fh, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
            except OSError as exc:
                fh.write(f"=== start failed: {exc}\n".encode())
                c.proc = None
                c.waiting_reason, c.waiting_message = "RunContainerError", str(exc)
                c.restart_count += 1
                c.next_start = time.monotonic() + max(self.kubelet.restart_backoff, 1.0)
                return None
        self.kubelet.track(c.proc)
        c.started_at = now_iso()
        c.started_mono = time.monotonic()
        c.waiting_reason = None
        c.readiness = ProbeState(c.spec.get("readinessProbe"), started=c.started_mono)
        c.liveness = ProbeState(c.spec.get("livenessProbe"), started=c.started_mono)
        c.startup = ProbeState(c.spec.get("startupProbe"), started=c.started_mono)
        if wait:
            while not exited(c.proc):
                if self.terminating or self.kubelet.stopping:
                    return None
                time.sleep(0.05)
            return self.kubelet.reap(c.proc)
        return c.proc.pid

    def _run_init_containers(self) -> None:
        """Init containers run to completion in order; a failure is retried with backoff (restartPolicy)."""
        for spec in self.pod["spec"].get("initContainers") or []:
            c = Container(spec, self.dir / f"{spec['name']}.log")
            self._materialise_container(c)
            while not self.terminating and not self.kubelet.stopping:
                code = self._start(c, wait=True)
                if code == 0:
                    break
                c.proc = None
                time.sleep(self.kubelet.restart_backoff)
        self.init_done = True

    # -- probes --------------------------------------------------------------------------------------
    def _probe(self, c: Container, st: ProbeState, now: float, *, kind: str) -> None:
        """Run one probe if due; liveness/startup failures past failureThreshold kill the container."""
        p = st.spec
        if not p:
            return
        scale = self.kubelet.probe_period_scale
        if now < st.started + float(p.get("initialDelaySeconds", 0)) * scale or now < st.next_at:
            return
        st.next_at = now + float(p.get("periodSeconds", 10)) * scale
        ok = self._run_probe(c, p)
        if ok:
            st.successes += 1
            st.failures = 0
            if st.successes >= int(p.get("successThreshold", 1)):
                st.ok = True
        else:
            st.failures += 1
            st.successes = 0
            if st.failures >= int(p.get("failureThreshold", 3)) or (kind == "readiness" and not st.ok):
                st.ok = False
        if kind != "readiness" and not st.ok and st.failures >= int(p.get("failureThreshold", 3)) and c.proc:
            with c.log_path.open("ab") as fh:
                fh.write(f"=== {now_iso()} {kind} probe failed {st.failures} times, killing\n".encode())
            self._stop_container(c, float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)))

    def _run_probe(self, c: Container, p: dict[str, Any]) -> bool:
        timeout = float(p.get("timeoutSeconds", 1))
        try:
            if "httpGet" in p:
                h = p["httpGet"]
                port = self.resolve_port(h.get("port", 80))
                scheme = h.get("scheme", "HTTP").lower()
                path = h.get("path", "/")
                req = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}")
                for hdr in h.get("httpHeaders") or []:
                    req.add_header(hdr["name"], hdr["value"])
                try:
                    with urllib.request.urlopen(req, timeout=timeout) as resp:
                        return 200 <= resp.status < 400
                except urllib.error.HTTPError as exc:
                    return 200 <= exc.code < 400
            if "tcpSocket" in p:
                port = self.resolve_port(p["tcpSocket"]["port"])
                with socket.create_connection(("127.0.0.1", int(port or 0)), timeout=timeout):
                    return True
            if "exec" in p:
                argv = [self._rewrite(expand_vars(a, c.env)) for a in p["exec"].get("command") or []]
                argv = self._resolve_argv(argv, c.env)
                res = subprocess.run(
                    argv, env=c.env, cwd=c.cwd, capture_output=True, timeout=timeout, check=False
                )
                return res.returncode == 0
        except (OSError, subprocess.SubprocessError, ValueError):
            return False
        return False

    # -- termination ---------------------------------------------------------------------------------
    def _stop_container(self, c: Container, grace: float) -> None:
        if c.proc is None:
            return
        pre = ((c.spec.get("lifecycle") or {}).get("preStop") or {}).get("exec")
        deadline = time.monotonic() + grace
        if pre and c.running():
            argv = self._resolve_argv(
                [self._rewrite(expand_vars(a, c.env)) for a in pre.get("command", [])], c.env
            )
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    argv, env=c.env, cwd=c.cwd, timeout=max(grace, 0.1), capture_output=True, check=False
                )
        with c.log_path.open("ab") as fh:  # marker first: the process may answer before we write it
            fh.write(f"=== {now_iso()} SIGTERM (grace {grace:g}s)\n".encode())
        signal_group(c.proc, signal.SIGTERM)
        while not exited(c.proc) and time.monotonic() < deadline and not self.kubelet.stopping:
            time.sleep(0.05)
        if not exited(c.proc):
            with c.log_path.open("ab") as fh:
                fh.write(f"=== {now_iso()} SIGKILL after grace\n".encode())
        self.kubelet.reap(c.proc)

    def _shutdown(self) -> None:
        """Graceful deletion: preStop, SIGTERM, grace, SIGKILL for all containers; then finalise."""
        threads = [
            threading.Thread(target=self._stop_container, args=(c, self.grace), daemon=True)
            for c in self.containers
            if c.proc is not None
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.ready = False
        if not self.gone:
            with contextlib.suppress(ApiError):
                self.kubelet.rest.delete(
                    f"/api/v1/namespaces/{self.namespace}/pods/{self.name}",
                    {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
                )

    def _kill_all(self, grace: float) -> None:
        for c in self.containers:
            if c.proc is not None:
                signal_group(c.proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for c in self.containers:
            while c.proc is not None and not exited(c.proc) and time.monotonic() < deadline:
                time.sleep(0.05)
        for c in self.containers:
            if c.proc is not None:
                self.kubelet.reap(c.proc)

    # -- status --------------------------------------------------------------------------------------
    def _transition(self, key: str, value: str) -> str:
        prev = self._transitions.get(key)
        if prev is None or prev[0] != value:
            self._transitions[key] = (value, now_iso())
        return self._transitions[key][1]

    def _container_status(self, c: Container) -> dict[str, Any]:
        st: dict[str, Any] = {
            "name": c.name,
            "image": c.spec.get("image", ""),
            "imageID": "",
            "ready": c.ready(),
            "started": c.started(),
            "restartCount": c.restart_count,
        }
        if c.running() and c.proc is not None:
            st["state"] = {"running": {"startedAt": c.started_at}}
            st["containerID"] = f"local://{c.proc.pid}"
        elif c.finished and c.last_terminated:
            st["state"] = {"terminated": c.last_terminated}
        else:
            st["state"] = {
                "waiting": {"reason": c.waiting_reason or "ContainerCreating", "message": c.waiting_message}
            }
        if c.last_terminated and not c.finished:
            st["lastState"] = {"terminated": c.last_terminated}
        return st

    def _report(self) -> None:
        if self.gone:
            return
        any_running = any(c.running() for c in self.containers)
        all_finished = bool(self.containers) and all(c.finished for c in self.containers)
        if all_finished:
            failed = any((c.last_terminated or {}).get("exitCode", 0) != 0 for c in self.containers)
            phase = "Failed" if failed else "Succeeded"
        elif any_running or any(c.restart_count for c in self.containers):
            phase = "Running"
        else:
            phase = "Pending"
        ready = "True" if self.ready else "False"
        scheduled_at = self._transition("PodScheduled", "True")
        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "conditions": [
                {"type": "Initialized", "status": "True" if self.init_done else "False",
                 "lastProbeTime": None,
                 "lastTransitionTime": self._transition("Initialized", str(self.init_done))},
                {"type": "Ready", "status": ready, "lastProbeTime": None,
                 "lastTransitionTime": self._transition("Ready", ready)},
                {"type": "ContainersReady", "status": ready, "lastProbeTime": None,
                 "lastTransitionTime": self._transition("ContainersReady", ready)},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                 "lastTransitionTime": scheduled_at},
            ],
            "containerStatuses": [self._container_status(c) for c in self.containers],
        }  # fmt: skip
        if status == self._last_status:
            return
        try:
            self.kubelet.rest.patch(
                f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status", {"status": status}
            )
            self._last_status = status
        except ApiError as exc:
            if exc.status == 404:
                self.terminate(self.grace, gone=True)
            else:
                log.warning("status patch %s/%s failed: %s", self.namespace, self.name, exc)
        except Exception as exc:
            log.warning("status patch %s/%s failed: %s", self.namespace, self.name, exc)

    # -- materialisation -----------------------------------------------------------------------------
    def _write_token(self) -> None:
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        # Two TokenRequests in the same second yield byte-identical JWTs on 1.20 (no jti claim), so a
        # rotation also varies the lifetime by a second to be sure the new token differs.
        lifetime = 3600 + len(self.token_history) + (1 if self.token else 0)
        token = self.kubelet.kube.service_account_token(
            self.namespace, sa, bound_pod=self.pod, expiration_seconds=lifetime
        )
        self.sa_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.sa_dir / ".token.tmp"
        tmp.write_text(token)
        tmp.replace(self.sa_dir / "token")  # atomic: a reader never sees half a token
        if self.token:
            self.token_history.append(self.token)
        self.token = token

    def _prepare(self) -> None:
        spec = self.pod["spec"]
        rest = self.kubelet.rest
        if spec.get("automountServiceAccountToken", True):
            self._write_token()
            shutil.copyfile(self.kubelet.kube.ca_file, self.sa_dir / "ca.crt")
            (self.sa_dir / "namespace").write_text(self.namespace)
        self.volume_dirs: dict[str, Path] = {}
        for vol in spec.get("volumes") or []:
            d = self.dir / "volumes" / vol["name"]
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
            self.volume_dirs[vol["name"]] = d
            if "configMap" in vol:
                self._project_map(d, "configmaps", vol["configMap"]["name"], vol["configMap"], rest)
            elif "secret" in vol:
                self._project_map(d, "secrets", vol["secret"]["secretName"], vol["secret"], rest)
            elif "downwardAPI" in vol:
                self._project_downward(d, vol["downwardAPI"].get("items") or [])
            elif "projected" in vol:
                for src in vol["projected"].get("sources") or []:
                    if "configMap" in src:
                        self._project_map(d, "configmaps", src["configMap"]["name"], src["configMap"], rest)
                    elif "secret" in src:
                        self._project_map(d, "secrets", src["secret"]["name"], src["secret"], rest)
                    elif "downwardAPI" in src:
                        self._project_downward(d, src["downwardAPI"].get("items") or [])
                    elif "serviceAccountToken" in src:
                        sa = spec.get("serviceAccountName") or "default"
                        tok = self.kubelet.kube.service_account_token(self.namespace, sa, bound_pod=self.pod)
                        (d / src["serviceAccountToken"]["path"]).write_text(tok)
            # emptyDir, hostPath and anything else: an empty per-pod folder
        self.services = self.kubelet.service_rules(self.namespace)
        for c in self.containers:
            self._materialise_container(c)

    def _project_map(self, d: Path, kind: str, name: str, src: dict[str, Any], rest: Rest) -> None:
        obj = rest.get_or_none(f"/api/v1/namespaces/{self.namespace}/{kind}/{name}")
        if obj is None:
            if src.get("optional"):
                return
            raise RuntimeError(f"{kind[:-1]} {self.namespace}/{name} not found")
        data: dict[str, bytes] = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        if kind == "secrets":
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        items = src.get("items")
        pairs = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
        for key, rel in pairs:
            if key not in data:
                if src.get("optional"):
                    continue
                raise RuntimeError(f"key {key!r} not in {kind[:-1]} {self.namespace}/{name}")
            out = d / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data[key])

    def _project_downward(self, d: Path, items: list[dict[str, Any]]) -> None:
        for item in items:
            value = self._field_value(item["fieldRef"]["fieldPath"]) if "fieldRef" in item else ""
            if "resourceFieldRef" in item:
                value = self._resource_value(item["resourceFieldRef"], None)
            (d / item["path"]).parent.mkdir(parents=True, exist_ok=True)
            (d / item["path"]).write_text(value)

    def _field_value(self, path: str) -> str:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
        simple = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
            "status.hostIP": "127.0.0.1",
            "status.podIP": "127.0.0.1",
            "status.podIPs": "127.0.0.1",
        }
        if path in simple:
            return str(simple[path])
        if path in ("metadata.labels", "metadata.annotations"):
            return "\n".join(f'{k}="{v}"' for k, v in sorted((meta.get(path.split(".")[1]) or {}).items()))
        raise RuntimeError(f"unsupported downward API fieldPath {path!r}")

    def _resource_value(self, ref: dict[str, Any], container: Container | None) -> str:
        name = ref.get("containerName") or (container.name if container else None)
        cspec = next((c for c in self.pod["spec"]["containers"] if name is None or c["name"] == name), {})
        kind, _, res = ref["resource"].partition(".")
        resources = cspec.get("resources") or {}
        raw = (resources.get(kind) or {}).get(res)
        if raw is None and kind == "requests":
            raw = (resources.get("limits") or {}).get(res)
        if raw is None:
            node = self.kubelet.node_specs.get(self.pod["spec"].get("nodeName", ""))
            raw = (
                {"cpu": node.cpu, "memory": node.memory}.get(res, "0") if (node and kind == "limits") else "0"
            )
        value = parse_quantity(raw)
        divisor = parse_quantity(ref.get("divisor") or "1") or Decimal(1)  # the API defaults it to "0"
        return str(math.ceil(value / divisor))

    def _materialise_container(self, c: Container) -> None:
        spec = c.spec
        rw = Rewriter()
        mounts = sorted(spec.get("volumeMounts") or [], key=lambda m: -len(m["mountPath"]))
        for m in mounts:
            if m["mountPath"].rstrip("/") == SA_MOUNT:
                # The 1.20 ServiceAccount admission plugin mounts the legacy token Secret here; like
                # EKS (bound, projected tokens) we give the per-pod TokenRequest folder instead.
                continue
            folder = self.volume_dirs.get(m["name"]) if hasattr(self, "volume_dirs") else None
            if folder is None:
                continue
            rw.path(m["mountPath"], str(folder / m["subPath"]) if m.get("subPath") else str(folder))
        if self.pod["spec"].get("automountServiceAccountToken", True):
            rw.path(SA_MOUNT, str(self.sa_dir))
        rw.extend(self.services)
        rw.extend(port_rules(self.ports))
        self._rw = rw

        k = self.kubelet
        env: dict[str, str] = {
            "PATH": f"{VENV_BIN}:{SYSTEM_PATH}",
            "HOME": str(self.dir / "home"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "HOSTNAME": self.name,
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(k.api_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(k.api_port),
            "KUBERNETES_PORT": f"tcp://127.0.0.1:{k.api_port}",
        }
        (self.dir / "home").mkdir(exist_ok=True)
        if self.pod["spec"].get("automountServiceAccountToken", True):
            env[SA_DIR_ENV] = str(self.sa_dir)
        env.update(k.extra_env)
        for src in spec.get("envFrom") or []:
            prefix = src.get("prefix", "")
            if "configMapRef" in src:
                obj = k.rest.get_or_none(
                    f"/api/v1/namespaces/{self.namespace}/configmaps/{src['configMapRef']['name']}"
                )
                env.update({prefix + kk: vv for kk, vv in ((obj or {}).get("data") or {}).items()})
            if "secretRef" in src:
                obj = k.rest.get_or_none(
                    f"/api/v1/namespaces/{self.namespace}/secrets/{src['secretRef']['name']}"
                )
                env.update(
                    {
                        prefix + kk: base64.b64decode(vv).decode()
                        for kk, vv in ((obj or {}).get("data") or {}).items()
                    }
                )
        for e in spec.get("env") or []:
            if "value" in e:
                env[e["name"]] = rw(expand_vars(e["value"], env))
            elif "valueFrom" in e:
                env[e["name"]] = self._env_from(e["valueFrom"], c)
            else:
                env[e["name"]] = ""
        if "PATH" in {e["name"] for e in spec.get("env") or []}:
            env["PATH"] = f"{VENV_BIN}:{env['PATH']}"
        command = [expand_vars(a, env) for a in spec.get("command") or []]
        args = [expand_vars(a, env) for a in spec.get("args") or []]
        argv = [rw(a) for a in command + args]
        for text in [*argv, *(env[e["name"]] for e in spec.get("env") or [])]:
            m = _CLUSTER_DNS.search(text)
            if m:
                # As in a cluster, the name does not resolve until the Service exists: fail this
                # attempt (CreateContainerConfigError) and retry, rather than start a doomed process.
                raise RuntimeError(f"Service DNS name {m.group(0)!r} does not resolve (no such Service yet)")
        c.env = env
        c.argv = self._resolve_argv(argv, env) if argv else []
        workdir = spec.get("workingDir")
        c.cwd = rw(workdir) if workdir else str(self.dir / "home")
        if not os.path.isdir(c.cwd):
            c.cwd = str(self.dir / "home")

    def _env_from(self, vf: dict[str, Any], c: Container) -> str:
        rest = self.kubelet.rest
        if "fieldRef" in vf:
            return self._field_value(vf["fieldRef"]["fieldPath"])
        if "resourceFieldRef" in vf:
            return self._resource_value(vf["resourceFieldRef"], c)
        for key, kind, decode in (
            ("configMapKeyRef", "configmaps", False),
            ("secretKeyRef", "secrets", True),
        ):
            if key in vf:
                ref = vf[key]
                obj = rest.get_or_none(f"/api/v1/namespaces/{self.namespace}/{kind}/{ref['name']}")
                data = (obj or {}).get("data") or {}
                if ref["key"] not in data:
                    if ref.get("optional"):
                        return ""
                    raise RuntimeError(f"{kind[:-1]} {ref['name']} key {ref['key']} not found")
                return base64.b64decode(data[ref["key"]]).decode() if decode else str(data[ref["key"]])
        raise RuntimeError(f"unsupported valueFrom {vf}")

    def _rewrite(self, text: str) -> str:
        return self._rw(text) if hasattr(self, "_rw") else text

    @staticmethod
    def _resolve_argv(argv: list[str], env: dict[str, str]) -> list[str]:
        """The image is ignored: resolve the executable on this machine, venv first."""
        if not argv:
            return argv
        exe = argv[0]
        if "/" in exe:
            if not os.path.exists(exe):
                alt = shutil.which(os.path.basename(exe), path=env.get("PATH"))
                if alt:
                    exe = alt
        else:
            exe = shutil.which(exe, path=env.get("PATH")) or exe
        return [exe, *argv[1:]]


# ---------------------------------------------------------------------------------------------------
# The kubelet
# ---------------------------------------------------------------------------------------------------
class ServiceRules:
    """Rewrite rules for Service DNS names visible from one namespace (built at pod start)."""

    def __init__(self) -> None:
        self.rules: list[tuple[str, str]] = []


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
        self._forwarders: dict[tuple[str, str, int], ServiceForwarder] = {}
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
        for fwd in self._forwarders.values():
            fwd.close()
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
    def service_rules(self, namespace: str) -> ServiceRules:
        """Rules mapping `<svc>[.<ns>[.svc[.cluster.local]]]:<port>` to a local forwarder."""
        rules = ServiceRules()
        services = self.rest.items("/api/v1/services")
        for svc in services:
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            hosts = [f"{name}.{ns}.svc.cluster.local", f"{name}.{ns}.svc", f"{name}.{ns}"]
            if ns == namespace:
                hosts.append(name)
            for p in svc["spec"].get("ports") or []:
                if ns == "default" and name == "kubernetes":
                    local = self.api_port
                else:
                    local = self.forwarder(ns, svc, p).port
                for host in hosts:
                    rules.rules.append(
                        (
                            rf"(?<![\w.\-]){re.escape(host)}:{p['port']}(?!\d)",
                            f"127.0.0.1:{local}",
                        )
                    )
            for host in hosts[:2]:  # bare FQDNs (no port) resolve to loopback too
                rules.rules.append((rf"(?<![\w.\-]){re.escape(host)}(?![\w\-]|\.[\w])", "127.0.0.1"))
        return rules

    def forwarder(self, namespace: str, svc: dict[str, Any], port: dict[str, Any]) -> ServiceForwarder:
        key = (namespace, svc["metadata"]["name"], int(port["port"]))
        with self._lock:
            fwd = self._forwarders.get(key)
            if fwd is None:
                fwd = self._forwarders[key] = ServiceForwarder(self, namespace, svc, port)
            else:
                fwd.selector = dict(svc["spec"].get("selector") or {})
                fwd.port_spec = port
            return fwd

    def service_address(self, namespace: str, service: str, port: int) -> str:
        """`127.0.0.1:<port>` reaching `service:port` from the test process (like a ClusterIP)."""
        svc = self.rest.get(f"/api/v1/namespaces/{namespace}/services/{service}")
        p = next(p for p in svc["spec"]["ports"] if int(p["port"]) == port)
        return f"127.0.0.1:{self.forwarder(namespace, svc, p).port}"

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


# ---------------------------------------------------------------------------------------------------
# Node provisioner
# ---------------------------------------------------------------------------------------------------
def _tolerates(pod: dict[str, Any], taint: dict[str, str]) -> bool:
    for t in pod["spec"].get("tolerations") or []:
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint["key"]):
            return True
        if t.get("key") == taint["key"] and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def pod_fits_group(pod: dict[str, Any], group: NodeGroup) -> bool:
    """Would a fresh node of `group` accept this pod (nodeSelector, taints, requests)?"""
    spec = group.spec(0)
    labels = spec.manifest()["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in (pod["spec"].get("nodeSelector") or {}).items()):
        return False
    if any(not _tolerates(pod, t) for t in spec.taints if t["effect"] in ("NoSchedule", "NoExecute")):
        return False
    cpu = sum(pod_request(pod, "cpu"))
    mem = sum(pod_request(pod, "memory"))
    return cpu <= parse_quantity(group.cpu) and mem <= parse_quantity(group.memory)


def pod_request(pod: dict[str, Any], res: str) -> list[Decimal]:
    return [
        parse_quantity(((c.get("resources") or {}).get("requests") or {}).get(res, "0"))
        for c in pod["spec"].get("containers", [])
    ]


class NodeProvisioner:
    """Adds a node to a group when pods stay Unschedulable for `scale_up_delay`, removes empty
    provisioned nodes after `scale_down_delay` — so Dask → pods → nodes scale together in tests."""

    def __init__(self, kubelet: Kubelet, groups: Sequence[NodeGroup]) -> None:
        self.kubelet = kubelet
        self.groups = list(groups)
        self.nodes: dict[str, list[str]] = {g.group: [] for g in groups}
        self.pending_since: dict[str, float] = {}
        self.empty_since: dict[str, float] = {}
        self.events: list[tuple[float, str, str]] = []  # (monotonic time, "add"/"remove", node name)
        self._count = 0
        for g in self.groups:
            for _ in range(g.min_size):
                self._add(g)

    def _add(self, g: NodeGroup) -> None:
        self._count += 1
        spec = g.spec(self._count)
        self.kubelet.add_node(spec)
        self.empty_since[spec.name] = time.monotonic()  # a new node gets the full delay before removal
        self.events.append((time.monotonic(), "add", spec.name))
        self.nodes[g.group].append(spec.name)

    def step(self, pods: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        unscheduled = [
            p for p in pods if not p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")
        ]
        unschedulable = []
        for pod in unscheduled:
            conds = {c["type"]: c for c in pod["status"].get("conditions") or []}
            sched = conds.get("PodScheduled")
            if sched and sched.get("status") == "False" and sched.get("reason") == "Unschedulable":
                unschedulable.append(pod)
        current = {p["metadata"]["uid"] for p in unschedulable}
        self.pending_since = {k: v for k, v in self.pending_since.items() if k in current}
        busy = {
            p["spec"].get("nodeName")
            for p in pods
            if p["spec"].get("nodeName") and p["status"].get("phase") not in ("Succeeded", "Failed")
        }
        for g in self.groups:
            empty = [n for n in self.nodes[g.group] if n not in busy]
            waiting = [p for p in unschedulable if pod_fits_group(p, g)]
            for p in waiting:
                self.pending_since.setdefault(p["metadata"]["uid"], now)
            ripe = [p for p in waiting if now - self.pending_since[p["metadata"]["uid"]] >= g.scale_up_delay]
            if ripe and len(self.nodes[g.group]) < g.max_size:
                cpu = sum(sum(pod_request(p, "cpu")) for p in ripe)
                mem = sum(sum(pod_request(p, "memory")) for p in ripe)
                need = max(
                    math.ceil(cpu / parse_quantity(g.cpu)),
                    math.ceil(mem / parse_quantity(g.memory)),
                    math.ceil(len(ripe) / g.pods),
                    1,
                )
                # Nodes added but still empty are capacity on its way (the scheduler backs off
                # Unschedulable pods for a few seconds): count them, as cluster-autoscaler does.
                need -= len(empty)
                for _ in range(max(0, min(need, g.max_size - len(self.nodes[g.group])))):
                    self._add(g)
                for p in ripe:
                    self.pending_since[p["metadata"]["uid"]] = now  # give the scheduler time
            # Scale down: provisioned nodes beyond min_size that stayed empty for scale_down_delay, and
            # never while pods that would fit the group still wait for a node.
            if any(pod_fits_group(p, g) for p in unscheduled):
                for name in self.nodes[g.group]:
                    self.empty_since[name] = now
                continue
            for name in list(self.nodes[g.group]):
                if name in busy:
                    self.empty_since.pop(name, None)
                    continue
                since = self.empty_since.setdefault(name, now)
                if now - since >= g.scale_down_delay and len(self.nodes[g.group]) > g.min_size:
                    # Delete first and update our lists last: a test waiting for `nodes` to shrink then
                    # finds the Node object gone and the event recorded.
                    self.kubelet.remove_node(name)
                    self.events.append((now, "remove", name))
                    self.empty_since.pop(name, None)
                    self.nodes[g.group].remove(name)


# ---------------------------------------------------------------------------------------------------
# Small helpers for tests
# ---------------------------------------------------------------------------------------------------
def group_alive(pgid: int, born_after: float = 0.0, born_before: float | None = None) -> bool:
    """Does process group `pgid` have a non-zombie member created in [born_after, born_before]?"""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    import psutil

    for proc in psutil.process_iter(["status", "create_time"]):
        try:
            if os.getpgid(proc.pid) != pgid or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
        except (ProcessLookupError, psutil.Error):
            continue
        created = proc.info["create_time"] or 0.0
        if created >= born_after - 1.0 and (born_before is None or created <= born_before + 1.0):
            return True
    return False


def pod_ready(pod: dict[str, Any] | None) -> bool:
    if not pod:
        return False
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])
