"""Print the stacks CI previews, as a JSON list for the workflow's matrix (`fromJSON`).

Why a script: the matrix must be derived from the committed `stacks/Pulumi.<stack>.yaml` files (never
typed twice), and tests/ci runs this same file to prove every stack file is covered. Stacks with
`adaptive-dask:target: local` are left out (and named on stderr): they deploy into a developer's own
kubeconfig context, which a CI runner does not have, and they touch no cloud to preview against.
Usage: python3 .github/scripts/list_stacks.py [stacks-dir]   ->   stacks=["dev","prod"]
Standard library only: it runs on the bare runner before any virtualenv exists.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# Pulumi looks for Pulumi.<stack>.yaml (and .yml) in stackConfigDir.
STACK_FILE = re.compile(r"^Pulumi\.(?P<stack>[A-Za-z0-9_.-]+)\.ya?ml$")
LOCAL_TARGET = re.compile(r"""^\s+adaptive-dask:target:\s*["']?local["']?\s*(#.*)?$""", re.MULTILINE)


def stack_files(stacks_dir: Path) -> dict[str, Path]:
    """Stack name -> its config file."""
    found: dict[str, Path] = {}
    for p in sorted(stacks_dir.iterdir()):
        m = STACK_FILE.match(p.name)
        if p.is_file() and m:
            found.setdefault(m["stack"], p)
    return found


def is_local(path: Path) -> bool:
    return bool(LOCAL_TARGET.search(path.read_text()))


def list_stacks(stacks_dir: Path) -> tuple[list[str], list[str]]:
    """(stacks CI previews, local-target stacks it leaves out), each sorted."""
    files = stack_files(stacks_dir)
    local = sorted(s for s, p in files.items() if is_local(p))
    return sorted(set(files) - set(local)), local


def main(argv: list[str]) -> int:
    stacks_dir = Path(argv[1] if len(argv) > 1 else "stacks")
    stacks, local = list_stacks(stacks_dir) if stacks_dir.is_dir() else ([], [])
    if local:
        print(f"list_stacks: not previewed in CI (target local): {', '.join(local)}", file=sys.stderr)
    if not stacks:
        # An empty matrix would silently skip every preview; fail loudly instead.
        print(f"list_stacks: no cloud Pulumi.<stack>.yaml in {stacks_dir}", file=sys.stderr)
        return 1
    print(f"stacks={json.dumps(stacks, separators=(',', ':'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
