"""The pod runner of the test kubelet: one thread per pod that materialises it (testbed/kube/pod_files.py),
runs init containers then containers as local process groups, probes them (testbed/kube/probes.py),
restarts them per restartPolicy with backoff, reports the pod status, and on deletion runs preStop,
SIGTERM, the grace period and SIGKILL before finalising the pod object, as a kubelet does."""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

from testbed.kube.containers import Container, exited, signal_group
from testbed.kube.control_plane import die_with_parent, free_port
from testbed.kube.nodes import now_iso
from testbed.kube.pod_files import PodFiles
from testbed.kube.probes import ProbeState, advance, run_probe
from testbed.kube.rest import ApiError

if TYPE_CHECKING:
    from pathlib import Path

    from testbed.kube.kubelet import Kubelet

log = logging.getLogger("testbed.kube.kubelet")


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
        self.ready = False
        self._last_status: dict[str, Any] | None = None
        self._transitions: dict[str, tuple[str, str]] = {}
        self.prepare_error = ""
        self.files = PodFiles(self)
        self.thread = threading.Thread(
            target=self._run, name=f"pod-{self.namespace}/{self.name}", daemon=True
        )

    # -- public helpers ------------------------------------------------------------------------------
    def container(self, name: str | None = None) -> Container:
        for c in self.containers:
            if name is None or c.name == name:
                return c
        raise KeyError(f"no container {name!r} in pod {self.namespace}/{self.name}")

    @property
    def sa_dir(self) -> Path:
        """The per-pod ServiceAccount folder (token, ca.crt, namespace)."""
        return self.files.sa_dir

    @property
    def token(self) -> str:
        """The ServiceAccount token the pod has now (rotated by `rotate_token`)."""
        return self.files.token

    def resolve_port(self, port: int | str) -> int | None:
        """Local port for a declared port number or name (undeclared numbers pass through)."""
        if isinstance(port, str) and not port.isdigit():
            declared = self.named_ports.get(port)
            return self.ports.get(declared) if declared else None
        return self.ports.get(int(port), int(port))

    def rotate_token(self) -> tuple[str, str]:
        """Write a fresh token to the SA folder, as the kubelet does before expiry; returns (old, new)."""
        old = self.files.token
        self.files.write_token()
        return old, self.files.token

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
                self.files.prepare()
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
        try:
            self.files.refresh_token(now)
        except Exception as exc:  # the apiserver may be briefly away: the next step retries, as kubelet does
            log.warning("token refresh for %s/%s failed: %r", self.namespace, self.name, exc)
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
            self.files.materialise(c)
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

        def run(p: dict[str, Any]) -> bool:
            return run_probe(
                p, port=self.resolve_port, command=lambda argv: self.files.command(argv, c.env),
                env=c.env, cwd=c.cwd,
            )  # fmt: skip

        if advance(st, now, self.kubelet.probe_period_scale, kind, run) and c.proc:
            with c.log_path.open("ab") as fh:
                fh.write(f"=== {now_iso()} {kind} probe failed {st.failures} times, killing\n".encode())
            self._stop_container(c, float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)))

    # -- termination ---------------------------------------------------------------------------------
    def _stop_container(self, c: Container, grace: float) -> None:
        if c.proc is None:
            return
        pre = ((c.spec.get("lifecycle") or {}).get("preStop") or {}).get("exec")
        deadline = time.monotonic() + grace
        if pre and c.running():
            argv = self.files.command(list(pre.get("command", [])), c.env)
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
