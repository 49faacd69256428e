"""Run a benchmark script as its user would (a fresh interpreter, from the repository root, no DASK_* settings
inherited) and return what it printed; the smoke tests of tests/benchmarks share it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(script: str, *args: str, timeout: float = 240) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )
    tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{tail}"
    return proc.stdout
