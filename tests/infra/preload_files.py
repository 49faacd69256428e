"""The dask_adaptive package's files as they are on disk, listed independently of infra/k8s/preload.py."""

from __future__ import annotations

import os
from pathlib import Path

from testbed.infra.harness import REPO_ROOT

PACKAGE = REPO_ROOT / "dask_adaptive"


def on_disk(root: Path) -> dict[str, str]:
    """Independent listing: every .py / .yaml file of the package, by path relative to its parent."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if name.endswith((".py", ".yaml")):
                path = Path(dirpath) / name
                out[f"dask_adaptive/{path.relative_to(root).as_posix()}"] = path.read_text("utf-8")
    return out
