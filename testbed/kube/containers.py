"""Processes of the test kubelet: a container's resolved command and state, and the process-group
helpers that keep a recycled PID from ever being signalled (other engineers' suites run alongside)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.kube.probes import ProbeState


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
