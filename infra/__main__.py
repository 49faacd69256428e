"""Pulumi entry point. The CLI runs this directory with runpy, with infra/ (not the repository root) on
sys.path, so the root is added here to make `from infra.x import ...` work under the real CLI too."""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from infra.program import build  # noqa: E402

build()
