"""Workers as real `dask worker` processes on this machine: the embedded default, demo and tests.

Each unit is one `dask worker --name <unit> --preload dask_adaptive.worker --preload-nanny
dask_adaptive.worker` process (with its nanny, exactly as a pod runs it), in its own process group.
Removal sends SIGTERM to the whole group, as Kubernetes does to a container whose entrypoint is
`tini -g`, so the worker preload's graceful SIGTERM path is exercised on every scale-down.
All process handling is asyncio (spawn, wait, signal): nothing blocks the scheduler's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass

import dask_adaptive
from dask_adaptive.backends.base import (
    BackendError,
    BackendUnavailable,
    Observation,
    Phase,
    RemovalReport,
    Unit,
)

logger = logging.getLogger(__name__)

WORKER_PRELOAD = "dask_adaptive.worker"
STOP_TIMEOUT = 40.0  # SIGKILL after this; above the worker preload's SIGTERM budget (25s)


@dataclass
class _Proc:
    process: asyncio.subprocess.Process
    terminating: bool = False


def worker_command(
    scheduler_address: str, name: str, nthreads: int, memory_limit: str, workdir: str
) -> list[str]:
    """The command line of one local worker; the same flags the Kubernetes pods use."""
    return [
        sys.executable,
        "-m",
        "distributed.cli.dask_worker",
        scheduler_address,
        "--name",
        name,
        "--nthreads",
        str(nthreads),
        "--memory-limit",
        memory_limit,
        "--dashboard-address",
        ":0",
        "--local-directory",
        os.path.join(workdir, name),
        "--preload",
        WORKER_PRELOAD,
        "--preload-nanny",
        WORKER_PRELOAD,
    ]


class LocalBackend:
    def __init__(
        self,
        scheduler_address: str,
        nthreads: int = 1,
        memory_limit: str = "1GiB",
        name_prefix: str | None = None,
    ) -> None:
        self.scheduler_address = scheduler_address
        self.nthreads = nthreads
        self.memory_limit = memory_limit
        self.prefix = name_prefix or f"local-{secrets.token_hex(3)}"
        self._procs: dict[str, _Proc] = {}
        self._counter = 0
        self._workdir: str | None = None
        self._reapers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if not self.scheduler_address:
            raise BackendUnavailable("local backend: the scheduler has no address to give to workers")
        self._workdir = tempfile.mkdtemp(prefix="dask-adaptive-")

    async def close(self) -> None:
        # SIGINT to the nanny alone takes distributed's quick close path: at shutdown there is nowhere
        # to move data to, so the graceful SIGTERM path would only wait for its timeout
        for proc in self._procs.values():
            self._signal(proc.process, signal.SIGINT, group=False)
        waits = [self._stop(name, proc, grace=10.0) for name, proc in self._procs.items()]
        await asyncio.gather(*waits, *self._reapers, return_exceptions=True)
        self._procs.clear()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

    async def observe(self) -> Observation:
        units = []
        for name, proc in list(self._procs.items()):
            if proc.process.returncode is not None:
                if not proc.terminating:
                    logger.warning(
                        "local worker %s exited by itself (code %s)", name, proc.process.returncode
                    )
                del self._procs[name]
                continue
            phase = Phase.TERMINATING if proc.terminating else Phase.RUNNING
            units.append(Unit(name=name, phase=phase, ready=not proc.terminating))
        requested = sum(1 for u in units if u.phase is not Phase.TERMINATING)
        return Observation(requested=requested, units=tuple(units))

    async def scale_up(self, n: int) -> None:
        current = sum(1 for p in self._procs.values() if not p.terminating)
        for _ in range(n - current):
            await self._spawn()

    async def _spawn(self) -> None:
        assert self._workdir is not None, "start() first"
        self._counter += 1
        name = f"{self.prefix}-{self._counter}"
        log = open(os.path.join(self._workdir, f"{name}.log"), "ab")  # noqa: SIM115 - owned by the child
        env = dict(os.environ)
        # the package must be importable by the worker even when it is run from a source tree
        root = os.path.dirname(os.path.dirname(os.path.abspath(dask_adaptive.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        cmd = worker_command(self.scheduler_address, name, self.nthreads, self.memory_limit, self._workdir)
        try:
            process = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        except OSError as e:
            raise BackendError(f"cannot start local worker {name}: {e}") from e
        finally:
            log.close()
        self._procs[name] = _Proc(process)
        logger.info("local worker %s started (pid %d)", name, process.pid)

    async def remove(self, names: list[str]) -> RemovalReport:
        removed = []
        for name in names:
            proc = self._procs.get(name)
            if proc is None or proc.terminating:
                continue
            proc.terminating = True
            self._signal(proc.process, signal.SIGTERM, group=True)
            task = asyncio.create_task(self._stop(name, proc, grace=STOP_TIMEOUT))
            self._reapers.add(task)
            task.add_done_callback(self._reapers.discard)
            removed.append(name)
        return RemovalReport(removed=tuple(removed))

    async def record(self, reason: str, message: str) -> None:
        logger.info("local backend record: %s %s", reason, message)

    def pid(self, name: str) -> int | None:
        proc = self._procs.get(name)
        return proc.process.pid if proc else None

    @staticmethod
    def _signal(process: asyncio.subprocess.Process, sig: signal.Signals, group: bool) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(process.pid, sig)  # the group id is the pid: start_new_session=True
            else:
                process.send_signal(sig)

    async def _stop(self, name: str, proc: _Proc, grace: float) -> None:
        try:
            await asyncio.wait_for(proc.process.wait(), grace)
        except TimeoutError:
            logger.warning("local worker %s did not exit within %.0fs; killing it", name, grace)
            self._signal(proc.process, signal.SIGKILL, group=True)
            await proc.process.wait()
        # also reap a worker child left behind by a killed nanny
        self._signal(proc.process, signal.SIGKILL, group=True)
