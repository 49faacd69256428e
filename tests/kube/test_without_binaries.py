"""Without control-plane binaries, kube tests are skipped with the remedy, or fail under CI=true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGET = "tests/kube/test_control_plane.py::test_apiserver_is_1_20_and_serves_what_we_rely_on"


def run_without_binaries(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("KUBEBUILDER_ASSETS", "ADAPTIVE_DASK_KUBE_BIN", "CI")
    }
    env["HOME"] = str(tmp_path)  # no ~/.cache/adaptive-dask there
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", TARGET, "-q", "-rs", "-p", "no:cacheprovider"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("ci", [False, True])
def test_missing_binaries_skip_locally_and_fail_in_ci(tmp_path, ci):
    res = run_without_binaries(tmp_path, ci)
    out = res.stdout + res.stderr
    assert "binaries not found" in out and "tests/kube/build.sh" in out and "KUBEBUILDER_ASSETS" in out
    if ci:
        assert res.returncode == 1 and "CI=true" in out and "1 error" in out
    else:
        assert res.returncode == 0 and "1 skipped" in out
