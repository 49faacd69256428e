"""Processes the suite starts (control plane, pods) die with the process that started them, so a test
run killed hard leaves no apiserver or pod behind for the next run."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from testbed.kube.control_plane import die_with_parent

PARENT = (
    "import subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:], start_new_session=True)\n"
    "print(p.pid, flush=True)\n"
    "import os; os._exit(0)\n"  # a hard exit: no cleanup code runs
)


def test_children_die_when_the_parent_is_killed():
    out = subprocess.run(
        [sys.executable, "-c", PARENT, *die_with_parent(["sleep", "300"])],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.05)
    alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    assert not alive, f"pid {pid} ({psutil.Process(pid).cmdline()}) outlived its parent"


def test_the_shim_reports_a_missing_executable():
    res = subprocess.run(die_with_parent(["/nonexistent/dask"]), capture_output=True, text=True, check=False)
    assert res.returncode == 127 and "exec '/nonexistent/dask' failed" in res.stderr
