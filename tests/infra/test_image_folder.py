"""Issue 22 §2: the team's image folder (image/) stays one fact with the program's pins, and lints clean."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from infra.config.kubernetes import DEFAULT_IMAGE
from infra.config.settings import DASK_VERSION
from testbed.infra.harness import REPO_ROOT

IMAGE = REPO_ROOT / "image"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;#]+)$")
HELD = {"dask", "distributed", "cloudpickle", "msgpack", "toolz"}  # dask_adaptive/versions.py's set


def requirement_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def test_the_image_starts_from_the_programs_default_image():
    [base] = [
        ln.split()[1] for ln in (IMAGE / "Dockerfile").read_text().splitlines() if ln.startswith("FROM")
    ]
    assert base == DEFAULT_IMAGE


def test_team_packages_are_pinned_and_never_the_ones_the_scheduler_checks():
    lines = requirement_lines(IMAGE / "requirements.txt")
    assert lines, "an example set at least"
    for line in lines:
        match = PIN.match(line)
        assert match, f"pin exactly: {line}"
        assert match["name"].lower() not in HELD, f"{line}: the stock image decides it"
    constraints = {
        PIN.match(ln)["name"]: PIN.match(ln)["version"] for ln in requirement_lines(IMAGE / "constraints.txt")
    }
    assert constraints == {"dask": DASK_VERSION, "distributed": DASK_VERSION}


def test_hadolint_finds_nothing():
    exe = Path(sys.executable).parent / "hadolint"
    hadolint = str(exe) if exe.is_file() else shutil.which("hadolint")
    assert hadolint, "hadolint is not installed: it is pinned in requirements-dev.txt (bash .ci/bootstrap)"
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(IMAGE / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fires_on_a_broken_dockerfile(tmp_path: Path):
    """The same invocation flags an unpinned base and a cached, unpinned pip install."""
    exe = Path(sys.executable).parent / "hadolint"
    hadolint = str(exe) if exe.is_file() else shutil.which("hadolint")
    assert hadolint
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM ghcr.io/dask/dask\nRUN pip install s3fs\n")
    result = subprocess.run([hadolint, "--no-color", str(broken)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3006" in result.stdout and "DL3013" in result.stdout
