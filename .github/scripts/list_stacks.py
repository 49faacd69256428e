"""Print the stack names found in stacks/ as a JSON list, for the workflow's preview matrix.

Why a script: the matrix must be derived from the committed `stacks/Pulumi.<stack>.yaml` files (never
typed twice), and tests/ci runs this same file to prove every stack file is covered.
Usage: python3 .github/scripts/list_stacks.py [stacks-dir]   ->   stacks=["dev","prod"]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# Pulumi looks for Pulumi.<stack>.yaml (and .yml) in stackConfigDir.
STACK_FILE = re.compile(r"^Pulumi\.(?P<stack>[A-Za-z0-9_.-]+)\.ya?ml$")


def list_stacks(stacks_dir: Path) -> list[str]:
    """Return the sorted, de-duplicated stack names whose config files live in `stacks_dir`."""
    names = {m["stack"] for p in stacks_dir.iterdir() if p.is_file() and (m := STACK_FILE.match(p.name))}
    return sorted(names)


def main(argv: list[str]) -> int:
    stacks_dir = Path(argv[1] if len(argv) > 1 else "stacks")
    stacks = list_stacks(stacks_dir) if stacks_dir.is_dir() else []
    if not stacks:
        # An empty matrix would silently skip every preview; fail loudly instead.
        print(f"list_stacks: no Pulumi.<stack>.yaml in {stacks_dir}", file=sys.stderr)
        return 1
    print(f"stacks={json.dumps(stacks, separators=(',', ':'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
