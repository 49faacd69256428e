"""Real-process helpers: a `dask scheduler --preload dask_adaptive.preload` subprocess and friends.

Ports are always 0 (other engineers run tests concurrently on this machine); addresses are read
back from the scheduler file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# the exact worker flags the Kubernetes Deployment uses (see dask_adaptive/worker.py)
K8S_WORKER_FLAGS = ["--preload", "dask_adaptive.worker", "--preload-nanny", "dask_adaptive.worker"]


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    out.update(extra)
    return out


def wait_for(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.1) -> object:
    """Poll until `predicate()` is truthy; generous timeouts, never a timing assertion."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


@dataclass
class Scheduler:
    process: subprocess.Popen[bytes]
    address: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def scheduler_command(scheduler_file: Path, options: list[str], preload: bool = True) -> list[str]:
    return [
        sys.executable,
        "-m",
        "distributed.cli.dask_scheduler",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--dashboard-address",
        "127.0.0.1:0",
        "--scheduler-file",
        str(scheduler_file),
        *(["--preload", "dask_adaptive.preload"] if preload else []),
        *options,
    ]


def stop(process: subprocess.Popen[bytes], timeout: float = 60.0, sig: int = signal.SIGTERM) -> int:
    """SIGTERM (the scheduler's teardown stops its local workers), then SIGKILL if it hangs.

    Clean-up of a test worker uses SIGINT: distributed's quick close, not the graceful retirement.
    """
    if process.poll() is None:
        process.send_signal(sig)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


@contextlib.contextmanager
def scheduler(
    tmp_path: Path, *options: str, extra_env: dict[str, str] | None = None, preload: bool = True
) -> Iterator[Scheduler]:
    sfile = tmp_path / "scheduler.json"
    log = tmp_path / "scheduler.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            scheduler_command(sfile, list(options), preload),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env(**(extra_env or {})),
            cwd=tmp_path,
        )
    try:
        wait_for(lambda: sfile.exists() or process.poll() is not None, 60, "the scheduler file")
        if process.poll() is not None:
            raise AssertionError(f"scheduler exited {process.returncode}:\n{log.read_text()[-3000:]}")
        address = wait_for(lambda: _read_address(sfile), 30, "the scheduler address")
        yield Scheduler(process, str(address), log)
    finally:
        stop(process)


def _read_address(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True


def count_executions(directory: Path) -> dict[str, int]:
    """Tasks write one file per execution named <key>.<uuid>; count them per key."""
    counts: dict[str, int] = {}
    for f in directory.iterdir():
        key = f.name.rsplit(".", 1)[0]
        counts[key] = counts.get(key, 0) + 1
    return counts


def mark_and_sleep(key: str, directory: str, seconds: float) -> str:
    """The test workload: record this execution, sleep, return something small."""
    import uuid as _uuid

    Path(directory, f"{key}.{_uuid.uuid4().hex}").touch()
    time.sleep(seconds)
    return f"result-{key}"
