"""Every workflow validates against GitHub's workflow schema (check-jsonschema's vendored copy, offline).

zizmor audits security; this catches a misspelt key or a wrong type that GitHub would reject at push.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.ci.workflows import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))


def check(*paths: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "check-jsonschema"
    assert exe.is_file(), "check-jsonschema is pinned in requirements-dev.txt (bash .ci/bootstrap)"
    command = [str(exe), "--builtin-schema", "vendor.github-workflows", *map(str, paths)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_every_workflow_matches_githubs_schema():
    assert len(WORKFLOWS) >= 4
    result = check(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_fires_on_a_misspelt_key(tmp_path: Path):
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\non: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    stepz: []\n")
    result = check(bad)
    assert result.returncode != 0 and "stepz" in result.stdout
