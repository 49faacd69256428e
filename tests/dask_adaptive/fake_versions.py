"""Worker preload for tests/dask_adaptive/test_versions.py: the worker registers as if its image had
another cloudpickle. Preloads start before the worker registers (distributed's Worker.start_unsafe), and
the worker sends what `distributed.worker.get_versions` returns, so patching that name is enough."""

from __future__ import annotations

from typing import Any

import distributed.worker

_real = distributed.worker.get_versions


def _other_cloudpickle(*args: Any, **kwargs: Any) -> dict[str, Any]:
    versions = _real(*args, **kwargs)
    versions["packages"] = {**versions["packages"], "cloudpickle": "0.0.1"}
    return versions


def dask_setup(worker: Any) -> None:
    distributed.worker.get_versions = _other_cloudpickle
