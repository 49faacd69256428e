"""Workers as real `dask worker` processes on this machine: the embedded default, demo and tests.

Each unit is one `dask worker --name <unit> --preload dask_adaptive.worker` process (the pods' own
command line, from command.py), in its own process group. By default it runs `--no-nanny`: one
interpreter per worker, like LocalCluster's worker processes, and this backend is the supervisor that
replaces a worker that exits. `nanny=True` (`local.worker-nanny`) runs the pods' layout, a nanny that
hosts the worker (`--preload-nanny dask_adaptive.worker`), at two interpreters' start-up per worker.
Removal sends SIGTERM to the whole group, as Kubernetes does to a container whose entrypoint is
`tini -g`, so the worker preload's graceful SIGTERM path is exercised on every scale-down.
All process handling is asyncio (spawn, wait, signal): nothing blocks the scheduler's event loop.

At most `max_starting` workers start at once (default: one per CPU); the others wait as PENDING
units, like pods waiting for a node. Starting a worker costs an interpreter's imports (two with a
nanny), so on a small machine starting them all together delays the first by the sum of all;
staggered, the first workers arrive in well under a second and the rest follow, and pending units
can be cancelled for free.

Under a TLS scheduler (`tls://` address) the workers inherit its security: the environment is
passed on whole (so `DASK_DISTRIBUTED__COMM__TLS__*` set for the scheduler reaches them), and the
CA, certificate and key the scheduler's `Security` holds are put on their command line too, because
a scheduler started with `--tls-ca-file/--tls-cert/--tls-key` alone has them in no environment. The
worker role's certificate is used if set, else the scheduler's (any certificate of the cluster's CA
with the clientAuth and serverAuth usages will do: distributed checks the chain, not the hostname).
Certificates held in memory (`Security.temporary()`) are written to the backend's folder, mode 0600.
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dask_adaptive
from dask_adaptive.backends.base import (
    BackendError,
    BackendUnavailable,
    Observation,
    Phase,
    RemovalReport,
    Unit,
)
from dask_adaptive.backends.departures import Departures
from dask_adaptive.command import WorkerTls, worker_command

logger = logging.getLogger(__name__)

STOP_TIMEOUT = 40.0  # SIGKILL after this; above the worker preload's SIGTERM budget (25s)


def worker_tls(scheduler_address: str, security: Any) -> WorkerTls | None:
    """The TLS material a worker of this scheduler needs, from its `distributed.Security`; pure.

    None unless the address is `tls://`: TLS flags make `dask worker` require encryption, which
    would refuse a `tcp://` scheduler. Values may be file paths or PEM text (in-memory certificates).
    """
    if not scheduler_address.startswith("tls://") or security is None:
        return None
    ca = getattr(security, "tls_ca_file", None)
    for role in ("worker", "scheduler"):
        cert = getattr(security, f"tls_{role}_cert", None)
        if cert:
            key = getattr(security, f"tls_{role}_key", None)
            break
    else:
        cert = key = None
    if not ca or not cert:
        raise BackendUnavailable(
            f"local backend: the scheduler listens on {scheduler_address} but its security has no "
            "CA file and certificate to give to workers (distributed.comm.tls.ca-file, "
            "distributed.comm.tls.worker.cert or .scheduler.cert)"
        )
    return WorkerTls(ca_file=ca, cert=cert, key=key or None)


def _write_private(path: str, text: str) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def materialize(tls: WorkerTls, folder: str) -> WorkerTls:
    """Write in-memory PEM values (they contain a newline; paths do not) to files in `folder`."""

    def to_file(value: str, name: str) -> str:
        return _write_private(os.path.join(folder, name), value) if "\n" in value else value

    key = to_file(tls.key, "tls.key") if tls.key else None
    return WorkerTls(to_file(tls.ca_file, "ca.crt"), to_file(tls.cert, "tls.crt"), key)


@dataclass
class _Proc:
    process: asyncio.subprocess.Process | None = None  # None: pending, not spawned yet
    terminating: bool = False


class LocalBackend:
    def __init__(
        self,
        scheduler_address: str,
        nthreads: int = 1,
        memory_limit: str = "1GiB",
        name_prefix: str | None = None,
        registered: Callable[[], set[str]] | None = None,
        max_starting: int | None = None,
        security: Any = None,
        nanny: bool = False,
    ) -> None:
        self.scheduler_address = scheduler_address
        self.nthreads = nthreads
        self.memory_limit = memory_limit
        self.prefix = name_prefix or f"local-{secrets.token_hex(3)}"
        # names of the workers connected to the scheduler; tells STARTING from RUNNING
        self.registered = registered or (lambda: set())
        self.max_starting = max_starting or max(1, os.cpu_count() or 1)
        self._procs: dict[str, _Proc] = {}
        self._counter = 0
        self._workdir: str | None = None
        self._reapers: set[asyncio.Task[None]] = set()
        # the scheduler's distributed.Security (None: plain TCP); see worker_tls
        self.security = security
        self.tls: WorkerTls | None = None
        self.nanny = nanny  # the pods' layout (nanny + worker) or `--no-nanny` (one process)
        # lent by the executor (Backend.departures); never moved here: remove() returns without an
        # await, so its decrement and its return are one step and no unit is ever LOWERED
        self.departures = Departures()

    async def start(self) -> None:
        if not self.scheduler_address:
            raise BackendUnavailable("local backend: the scheduler has no address to give to workers")
        tls = worker_tls(self.scheduler_address, self.security)
        self._workdir = tempfile.mkdtemp(prefix="dask-adaptive-")
        self.tls = materialize(tls, self._workdir) if tls else None

    async def close(self) -> None:
        # SIGINT to the CLI process alone (the nanny, or the worker itself) takes distributed's quick
        # close path: at shutdown there is nowhere to move data to, so the graceful SIGTERM path
        # would only wait for its timeout
        spawned = {name: proc for name, proc in self._procs.items() if proc.process is not None}
        for proc in spawned.values():
            self._signal(proc.process, signal.SIGINT, group=False)
        waits = [self._stop(name, proc, grace=10.0) for name, proc in spawned.items()]
        await asyncio.gather(*waits, *self._reapers, return_exceptions=True)
        self._procs.clear()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

    async def observe(self) -> Observation:
        registered = self.registered()
        self._reap()
        await self._pump(registered)
        units = []
        for name, proc in self._procs.items():
            if proc.terminating:
                phase = Phase.TERMINATING
            elif proc.process is None:
                phase = Phase.PENDING
            elif name in registered:
                phase = Phase.RUNNING
            else:
                phase = Phase.STARTING
            # a spawned process holds this machine until it is reaped
            units.append(
                Unit(name=name, phase=phase, ready=phase is Phase.RUNNING, placed=proc.process is not None)
            )
        requested = sum(1 for u in units if u.phase is not Phase.TERMINATING)
        return Observation(requested=requested, units=tuple(units))

    def _reap(self) -> None:
        for name, proc in list(self._procs.items()):
            if proc.process is None or proc.process.returncode is None:
                continue
            if not proc.terminating:
                code = proc.process.returncode
                logger.warning("local worker %s exited by itself (code %s)", name, code)
            del self._procs[name]

    async def scale_up(self, n: int) -> None:
        current = sum(1 for p in self._procs.values() if not p.terminating)
        for _ in range(n - current):
            self._counter += 1
            self._procs[f"{self.prefix}-{self._counter}"] = _Proc()
        await self._pump(self.registered())

    async def _pump(self, registered: set[str]) -> None:
        """Spawn pending units while fewer than `max_starting` workers are still starting."""
        starting = sum(
            1
            for name, p in self._procs.items()
            if p.process is not None and not p.terminating and name not in registered
        )
        for name, proc in list(self._procs.items()):
            if starting >= self.max_starting:
                break
            if proc.process is None and not proc.terminating:
                proc.process = await self._spawn(name)
                starting += 1

    async def _spawn(self, name: str) -> asyncio.subprocess.Process:
        assert self._workdir is not None, "start() first"
        log = open(os.path.join(self._workdir, f"{name}.log"), "ab")  # noqa: SIM115 - owned by the child
        env = dict(os.environ)
        # the package must be importable by the worker even when it is run from a source tree
        root = os.path.dirname(os.path.dirname(os.path.abspath(dask_adaptive.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        cmd = worker_command(
            self.scheduler_address,
            name=name,
            nthreads=self.nthreads,
            memory_limit=self.memory_limit,
            dashboard_address=":0",
            local_directory=os.path.join(self._workdir, name),
            program=(sys.executable, "-m", "distributed.cli.dask_worker"),
            tls=self.tls,
            nanny=self.nanny,
        )
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
        logger.info("local worker %s started (pid %d)", name, process.pid)
        return process

    async def remove(self, names: list[str]) -> RemovalReport:
        removed = []
        for name in names:
            proc = self._procs.get(name)
            if proc is None or proc.terminating:
                continue
            if proc.process is None:  # pending: cancelling costs nothing
                del self._procs[name]
                removed.append(name)
                continue
            proc.terminating = True
            self._signal(proc.process, signal.SIGTERM, group=True)
            task = asyncio.create_task(self._stop(name, proc, grace=STOP_TIMEOUT))
            self._reapers.add(task)
            task.add_done_callback(self._reapers.discard)
            removed.append(name)
        return RemovalReport(removed=tuple(removed))

    async def record(self, reason: str, message: str) -> None:
        logger.debug("local backend record: %s %s", reason, message)  # the controller logs it already

    def pid(self, name: str) -> int | None:
        proc = self._procs.get(name)
        return proc.process.pid if proc and proc.process else None

    @staticmethod
    def _signal(process: asyncio.subprocess.Process, sig: signal.Signals, group: bool) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(process.pid, sig)  # the group id is the pid: start_new_session=True
            else:
                process.send_signal(sig)

    async def _stop(self, name: str, proc: _Proc, grace: float) -> None:
        assert proc.process is not None
        try:
            await asyncio.wait_for(proc.process.wait(), grace)
        except TimeoutError:
            logger.warning("local worker %s did not exit within %.0fs; killing it", name, grace)
            self._signal(proc.process, signal.SIGKILL, group=True)
            await proc.process.wait()
        # also reap a worker child left behind by a killed nanny
        self._signal(proc.process, signal.SIGKILL, group=True)
