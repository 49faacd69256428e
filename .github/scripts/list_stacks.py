"""Print the stacks CI previews, as JSON lists for the workflow's matrices (`fromJSON`).

Why a script: the matrices must be derived from the committed `stacks/Pulumi.<stack>.yaml` files (never
typed twice), and tests/ci runs this same file to prove every stack file is covered. Two lists, because a
strict (production) stack's secrets must never reach a job that a branch pusher controls:
  stacks=[...]  non-strict stacks: previewed on pull requests (environment `preview`)
  strict=[...]  strict stacks: previewed only on push to main, each in its own `<stack>-preview` environment
A stack is strict by the policy pack's rule (policy/adaptive_dask_policy `is_strict`): its name is prod or
production, or starts with prod-/prod_/production-/production_ (any case), or its file sets
`adaptive-dask:production: true`. This file may not import project code, so it restates that rule; a test
(tests/ci/test_workflow_strict.py) holds the two to the same answers. Where the file is ambiguous it fails
closed: any value of the production key other than a plain false counts as strict.
Stacks with `adaptive-dask:target: local` are left out of both (and named on stderr): they deploy into a
developer's own kubeconfig context, which a CI runner does not have, and they touch no cloud.
Usage: python3 .github/scripts/list_stacks.py [stacks-dir]
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
# Same names as policy/adaptive_dask_policy STRICT_STACK_NAMES.
STRICT_STACK_NAMES = ("prod", "production")
# Every mention of the production key outside a comment, with whatever follows it on the line.
PRODUCTION_KEY = re.compile(
    r"""^[^#\n]*?["']?adaptive-dask:production["']?\s*:(?P<rest>[^\n]*)$""", re.MULTILINE
)
# The plain YAML spellings of false (YAML 1.1 included); anything else, an empty value included, is strict.
QUOTED_FALSE = re.compile(r"""^\s*(?:"false"|'false'|false|no|off)\s*(?:#.*)?$""", re.IGNORECASE)


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


def strict_name(stack: str) -> bool:
    """The name half of is_strict: prod / production, or either followed by - or _ (case-insensitive)."""
    name = stack.rsplit("/", 1)[-1].lower()
    return not name or any(name == s or name.startswith((f"{s}-", f"{s}_")) for s in STRICT_STACK_NAMES)


def strict_config(text: str) -> bool:
    """The config half: the stack file sets `adaptive-dask:production` to anything but a plain false."""
    return any(not QUOTED_FALSE.match(m["rest"]) for m in PRODUCTION_KEY.finditer(text))


def is_strict(stack: str, text: str) -> bool:
    return strict_name(stack) or strict_config(text)


def list_stacks(stacks_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """(non-strict stacks, strict stacks, local-target stacks left out), each sorted."""
    files = stack_files(stacks_dir)
    local = sorted(s for s, p in files.items() if is_local(p))
    cloud = sorted(set(files) - set(local))
    strict = [s for s in cloud if is_strict(s, files[s].read_text())]
    return [s for s in cloud if s not in strict], strict, local


def main(argv: list[str]) -> int:
    stacks_dir = Path(argv[1] if len(argv) > 1 else "stacks")
    stacks, strict, local = list_stacks(stacks_dir) if stacks_dir.is_dir() else ([], [], [])
    if local:
        print(f"list_stacks: not previewed in CI (target local): {', '.join(local)}", file=sys.stderr)
    if not stacks and not strict:
        # An empty matrix would silently skip every preview; fail loudly instead.
        print(f"list_stacks: no cloud Pulumi.<stack>.yaml in {stacks_dir}", file=sys.stderr)
        return 1
    if strict:
        print(
            f"list_stacks: strict, previewed only on main in <stack>-preview: {', '.join(strict)}",
            file=sys.stderr,
        )
    print(f"stacks={json.dumps(stacks, separators=(',', ':'))}")
    print(f"strict={json.dumps(strict, separators=(',', ':'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
