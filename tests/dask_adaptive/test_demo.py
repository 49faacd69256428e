"""A fast smoke run of the demo, non-interactively (no TTY), as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from testbed.dask.procs import env


def test_demo_smoke(tmp_path: Path):
    png = tmp_path / "demo.png"
    cmd = [
        sys.executable,
        "-m",
        "dask_adaptive",
        "demo",
        "--tasks",
        "6",
        "--sleep",
        "0.2",
        "--max-workers",
        "2",
    ]
    cmd += ["--scale-down-delay", "1s", "--interval", "200ms", "--output", str(png), "--timeout", "150"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=tmp_path, timeout=200)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    expected = sum(i * i for i in range(6))
    assert f"answer {expected} (expected {expected}) fetched from the last worker" in result.stdout
    assert "recomputed 0" in result.stdout
    assert f"plot written to {png}" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
