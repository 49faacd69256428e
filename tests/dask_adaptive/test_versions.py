"""Issue 22 §2: matching versions, with real processes.

A real scheduler with the preload refuses a real worker that reports another cloudpickle (the worker
preload in tests/dask_adaptive/fake_versions.py rewrites what it registers with, as a worker built from
other pins would), names the package and both versions in its log, and keeps working with a worker that
matches. `python -m dask_adaptive check-versions` compares a client with that scheduler.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from distributed import Client
from distributed.versions import get_versions

from dask_adaptive.versions import MATCHED_PACKAGES, describe, mismatches, pip_line
from testbed.dask.procs import env, scheduler, stop, wait_for

HERE = Path(__file__).resolve().parent
FAKE = "0.0.1"


def test_mismatches_name_the_package_and_both_versions():
    ours = {"python": "3.11.7", "dask": "2026.8.0", "distributed": "2026.8.0", "cloudpickle": "3.1.1"}
    ours |= {"msgpack": "1.1.0", "toolz": "1.0.0", "numpy": "2.0"}
    theirs = {**ours, "python": "3.11.2", "numpy": "1.26"}
    assert mismatches(ours, theirs) == []  # the patch release and numpy may differ
    theirs = {**theirs, "python": "3.12.1", "cloudpickle": "3.0.0"}
    found = mismatches(ours, theirs)
    assert found == [("python", "3.11", "3.12"), ("cloudpickle", "3.1.1", "3.0.0")]
    assert describe(found, "cluster", "client") == (
        "python 3.11 on the cluster, 3.12 on the client; "
        "cloudpickle 3.1.1 on the cluster, 3.0.0 on the client"
    )
    assert pip_line(found) == "pip install cloudpickle==3.1.1"
    assert set(MATCHED_PACKAGES) == {"dask", "distributed", "cloudpickle", "msgpack", "toolz"}


def worker(address: str, name: str, log: Path, *preloads: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--name", name, "--no-nanny"]
    command += ["--nthreads", "1", "--dashboard-address", "127.0.0.1:0", "--host", "127.0.0.1"]
    for preload in preloads:
        command += ["--preload", preload]
    with open(log, "wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env(), cwd=HERE)


def test_a_worker_with_other_versions_is_refused_and_the_cluster_keeps_working(tmp_path: Path):
    options = ["--backend", "local", "--min-workers", "0", "--max-workers", "1", "--interval", "200ms"]
    with scheduler(tmp_path, *options) as s, Client(s.address, timeout=30) as client:
        bad = worker(s.address, "mismatched", tmp_path / "bad.log", str(HERE / "fake_versions.py"))
        try:
            refused = wait_for(
                lambda: "refused worker mismatched" in s.log_text(), 60, "the scheduler to refuse the worker"
            )
            assert refused
            real = get_versions()["packages"]["cloudpickle"]
            assert f"cloudpickle {real} on the scheduler, {FAKE} on the worker" in s.log_text()
            wait_for(lambda: bad.poll() is not None, 60, "the refused worker to be closed")
            assert "mismatched" not in {w["name"] for w in client.scheduler_info()["workers"].values()}
        finally:
            stop(bad, sig=2)
        good = worker(s.address, "matching", tmp_path / "good.log")
        try:
            wait_for(
                lambda: "matching" in {w["name"] for w in client.scheduler_info()["workers"].values()},
                60,
                "the matching worker to join",
            )
            assert client.submit(sum, [1, 2, 3], workers=["matching"]).result(timeout=60) == 6
        finally:
            stop(good, sig=2)

        # the client side: this venv matches; a client reporting another cloudpickle gets the pip line
        same = subprocess.run(
            [sys.executable, "-m", "dask_adaptive", "check-versions", s.address],
            capture_output=True, text=True, env=env(), timeout=120,
        )  # fmt: skip
        assert same.returncode == 0 and "this client matches the scheduler" in same.stdout, same.stderr
        code = (
            "import sys, distributed.versions as v; real = v.get_versions\n"
            "def fake(*a, **k):\n"
            "    out = real(*a, **k); out['packages']['cloudpickle'] = '0.0.1'; return out\n"
            "v.get_versions = fake\n"
            "from dask_adaptive.versions import check_client\n"
            f"code, report = check_client({s.address!r}); print(report); sys.exit(code)\n"
        )
        other = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=120
        )
        assert other.returncode == 1, other.stdout + other.stderr
        assert f"to match: pip install cloudpickle=={real}" in other.stdout
