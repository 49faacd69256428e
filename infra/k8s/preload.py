"""Ship the `dask_adaptive` package to the pods as a ConfigMap, so no image has to be built.

The stock Dask image runs unchanged; the package's source files are mounted at `/opt/dask-adaptive`
and put on PYTHONPATH. ConfigMap keys cannot contain '/', so `backends/base.py` travels under the key
`backends__base.py` and `items[].path` puts it back at `dask_adaptive/backends/base.py`. A hash of
the contents goes into the pod templates, so changing the package rolls the pods.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "dask_adaptive"
MOUNT_PATH = "/opt/dask-adaptive"
HASH_ANNOTATION = "adaptive-dask/preload-sha256"
# Python sources plus the package data declared in pyproject.toml (the dask config defaults).
PATTERNS = ("*.py", "*.yaml")
# The API server refuses ConfigMaps over 1 MiB (data plus metadata); leave room for the metadata.
MAX_CONFIGMAP_BYTES = 1_000_000
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


@dataclass(frozen=True)
class PreloadFile:
    key: str  # ConfigMap key
    path: str  # path under the mount, e.g. dask_adaptive/backends/base.py
    content: str


def package_dir() -> Path:
    """Located from this file, never the working directory (`pulumi up` runs from anywhere)."""
    return Path(__file__).resolve().parents[2] / PACKAGE  # infra/k8s/preload.py -> the repository root


def configmap_key(relative: str) -> str:
    """`backends/base.py` -> `backends__base.py` (ConfigMap keys allow only [-._a-zA-Z0-9])."""
    key = relative.replace("/", "__")
    if not _KEY.match(key) or len(key) > 253:
        raise ValueError(f"{relative!r} cannot be a ConfigMap key")
    return key


def collect(root: Path | None = None) -> tuple[PreloadFile, ...]:
    """Every source file of the package, sorted by path; refuses name clashes and oversize."""
    root = root or package_dir()
    found: dict[str, PreloadFile] = {}
    paths = sorted({p for pattern in PATTERNS for p in root.rglob(pattern)})
    for path in paths:
        relative = path.relative_to(root).as_posix()
        if "__pycache__" in relative.split("/") or not path.is_file():
            continue
        key = configmap_key(relative)
        if key in found:
            raise ValueError(f"{relative!r} and {found[key].path!r} map to the same ConfigMap key {key!r}")
        found[key] = PreloadFile(key=key, path=f"{PACKAGE}/{relative}", content=path.read_text("utf-8"))
    if "__init__.py" not in found:
        raise ValueError(f"{root} does not look like the {PACKAGE} package (no __init__.py)")
    size = sum(len(f.key) + len(f.content.encode("utf-8")) for f in found.values())
    if size > MAX_CONFIGMAP_BYTES:
        raise ValueError(f"{PACKAGE} is {size} bytes, over the ConfigMap limit; ship it in an image instead")
    return tuple(sorted(found.values(), key=lambda f: f.path))


def content_hash(files: tuple[PreloadFile, ...]) -> str:
    """Changes whenever any file's path or content changes (length-prefixed, so no ambiguity)."""
    digest = hashlib.sha256()
    for f in files:
        for part in (f.path.encode(), f.content.encode("utf-8")):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()


def configmap_data(files: tuple[PreloadFile, ...]) -> dict[str, str]:
    return {f.key: f.content for f in files}


def volume(name: str, configmap_name: str, files: tuple[PreloadFile, ...]) -> dict:
    """Pod volume placing each key back at its package path, read-only for everyone."""
    return {
        "name": name,
        "configMap": {
            "name": configmap_name,
            "defaultMode": 0o444,
            "items": [{"key": f.key, "path": f.path} for f in files],
        },
    }
