"""Matching versions: the scheduler refuses a worker whose Python minor or core packages differ from its
own, and a client can compare itself with the cluster (`python -m dask_adaptive check-versions`).

distributed only warns on a mismatch, and the warning is easy to miss; mismatched client, scheduler and
workers are among the most common Dask failures (distributed#1376), and they fail late and obscurely
(a task pickled with one cloudpickle, unpickled by another). A refused worker names the package and
both versions in the scheduler's log and as a Kubernetes Event on the worker Deployment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

logger = logging.getLogger("dask_adaptive")

# What must match for pickled tasks and results to travel: the language minor and the packages that
# (de)serialise or schedule them. Numpy and friends may differ (the worker's image decides them).
MATCHED_PACKAGES = ("dask", "distributed", "cloudpickle", "msgpack", "toolz")
PLUGIN_NAME = "dask-adaptive-versions"

Mismatch = tuple[str, str, str]  # (package, scheduler's version, worker's version)


def _python_minor(version: str | None) -> str | None:
    return None if version is None else ".".join(str(version).split(".")[:2])


def mismatches(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[Mismatch]:
    """The packages (and Python minor) whose versions differ between two `get_versions()["packages"]`."""
    found: list[Mismatch] = []
    mine, other = _python_minor(ours.get("python")), _python_minor(theirs.get("python"))
    if mine != other:
        found.append(("python", str(mine), str(other)))
    for package in MATCHED_PACKAGES:
        if ours.get(package) != theirs.get(package):
            found.append((package, str(ours.get(package)), str(theirs.get(package))))
    return found


def describe(found: list[Mismatch], here: str, there: str) -> str:
    return "; ".join(f"{p} {a} on the {here}, {b} on the {there}" for p, a, b in found)


def pip_line(cluster: list[Mismatch]) -> str:
    """The install that makes a client match the cluster (the Python minor cannot be pip-installed)."""
    pins = [f"{p}=={theirs}" for p, theirs, _ in cluster if p != "python" and theirs != "None"]
    return f"pip install {' '.join(pins)}" if pins else ""


class VersionGate(SchedulerPlugin):
    """Removes (and closes) a worker that registers with mismatched versions, and reports it."""

    name = PLUGIN_NAME

    def __init__(
        self, ours: Mapping[str, Any], report: Callable[[str], Awaitable[None]] | None = None
    ) -> None:
        self.ours = dict(ours)
        self.report = report
        self.refused: list[str] = []  # messages, newest last (the tests and the log read them)
        self._tasks: set[asyncio.Task[None]] = set()

    def add_worker(self, scheduler: Any, worker: str) -> None:
        ws = scheduler.workers.get(worker)
        theirs = ((ws.versions or {}).get("packages") or {}) if ws is not None else {}
        found = mismatches(self.ours, theirs)
        if not found:
            return
        message = (
            f"refused worker {ws.name} ({worker}): {describe(found, 'scheduler', 'worker')}; build the "
            "workers' image from the same pins as the scheduler's"
        )
        logger.error("dask-adaptive: %s", message)
        self.refused.append(message)
        task = asyncio.ensure_future(self._refuse(scheduler, worker, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refuse(self, scheduler: Any, worker: str, message: str) -> None:
        try:
            await scheduler.remove_worker(worker, stimulus_id="dask-adaptive-version-mismatch", close=True)
            if self.report is not None:
                await self.report(message)
        except Exception:  # a failed report must not take the scheduler down; the log line stands
            logger.exception("dask-adaptive: reporting a refused worker failed")


def check_client(address: str | None, timeout: float = 30.0) -> tuple[int, str]:
    """(exit code, report) for `check-versions`: this interpreter against the cluster's scheduler and
    workers. Connects like any client (dask config: the TLS files `client-config` wrote)."""
    import dask.config
    from distributed import Client
    from distributed.versions import get_versions

    address = address or dask.config.get("scheduler-address", None)
    if not address:
        return 2, "no scheduler address: pass one (e.g. tls://localhost:8786) or set dask's scheduler-address"
    ours = get_versions()["packages"]
    with Client(address, timeout=timeout) as client:
        cluster = client.get_versions(check=False)
    scheduler = (cluster.get("scheduler") or {}).get("packages") or {}
    found = mismatches(scheduler, ours)
    lines = [
        f"scheduler {address}: " + ", ".join(f"{p} {scheduler.get(p)}" for p in ("python", *MATCHED_PACKAGES))
    ]
    for name, versions in sorted((cluster.get("workers") or {}).items()):
        differ = mismatches(scheduler, (versions or {}).get("packages") or {})
        if differ:
            lines.append(f"worker {name}: {describe(differ, 'scheduler', 'worker')}")
    if not found:
        lines.append("this client matches the scheduler")
        return 0, "\n".join(lines)
    lines.append(f"this client differs: {describe(found, 'cluster', 'client')}")
    install = pip_line(found)
    if install:
        lines.append(f"to match: {install}")
    if any(p == "python" for p, _, _ in found):
        lines.append("and use Python " + next(a for p, a, _ in found if p == "python"))
    return 1, "\n".join(lines)
